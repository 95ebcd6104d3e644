package rollup

import (
	"math"
	"net/netip"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/store"

	"github.com/spanflow/spanflow/internal/flow"
)

// Scope indexes, in the order rows are listed.
const (
	scopeLine = iota
	scopeProject
	scopeVM
	scopeService
	scopeExporter
	numScopes
)

var scopeNames = [numScopes]string{ScopeLine, ScopeProject, ScopeVM, ScopeService, ScopeExporter}

// OtherKey is the key of a scope's overflow series: the traffic of every
// key that found the scope full (MaxSeries).
const OtherKey = "other"

// SeriesAgeSeconds is how long a row's series has existed (since its
// first record, or since it was forgotten for being idle): detectors that
// compare with a baseline wait for it to be learnt.
const SeriesAgeSeconds = "series_age_seconds"

// bucket is one tick of one series. Bytes and packets are spread over the
// records' spans; the other counts belong to the tick a record ends in.
type bucket struct {
	bytes, packets                float64
	flows, handshakes, syns       uint32
	retrans, tcpPackets, zeroWins uint32
	// shownBytes and shownPackets are what Provisional has read of the
	// bucket so far.
	shownBytes, shownPackets float64
}

func (b *bucket) empty() bool { return b.bytes == 0 && b.packets == 0 && b.flows == 0 }

// series is the state of one row.
type series struct {
	scope int
	key   string
	// mapKey is its key in its scope's map (a lineKey, serviceKey, string
	// or netip.Addr), for removal in one step: an idle sweep after a scan
	// of ten thousand ports searched the services' map for each series
	// and held the engine for a second (BenchmarkEvictAfterScan).
	mapKey  any
	pos     int    // in Engine.all
	project string // a VM's project, as its row's labels say

	ring     []bucket // ring[i % len] holds bucket i while it is open
	last     bucket   // the bucket closed last
	smooth   [3]float64
	baseline float64
	primed   bool // smooth and baseline hold a value
	idle     int  // ticks closed without traffic
	born     int64

	rtt     *rttState    // nil until a handshake is seen; its handshakes wait in Engine.rttPend until their bucket closes
	talkers *spaceSaving // line and project series only
	id      uint64       // unique in its engine (rttSums's hash)

	row Row // reused every tick

	// For Provisional: bytes and packets of closed buckets it had not
	// read, and its own row (nil Values until the first read).
	carry [2]float64
	prow  Row
}

// rttState keeps two DDSketches of handshake RTTs (milliseconds): the
// current RTT window and the one before; quantiles are read from both
// merged, so they cover between one and two windows.
type rttState struct {
	cur, prev, merged *ddsketch.DDSketch
	// q holds the quantiles last read, valid while dirty is false: most
	// series see no handshake in most ticks.
	q, qBuf []float64
	qOK     bool
	dirty   bool
	qRead   []float64 // readStores's
}

func newRTTState(accuracy float64) *rttState {
	mk := func() *ddsketch.DDSketch {
		// 2048 bins at 1 % cover 1e-6 ms to far beyond any RTT; collapsing
		// the lowest bins keeps memory bounded should values spread wider.
		s, err := ddsketch.LogCollapsingLowestDenseDDSketch(accuracy, 2048)
		if err != nil {
			panic(err) // accuracy is validated
		}
		return s
	}
	return &rttState{cur: mk(), prev: mk(), merged: mk(), dirty: true}
}

func (r *rttState) rotate() {
	r.prev, r.cur = r.cur, r.prev
	r.cur.Clear()
	r.dirty = true
}

var quantiles = []float64{0.5, 0.95, 0.99}

// quantiles returns p50, p95, p99 and whether there was any handshake.
// quantilesOf is quantiles, for a series that may have no RTT state.
// scratch is the caller's, for the bins (rttReadSpan values).
func (r *rttState) quantilesOf(scratch []float64) ([]float64, bool) {
	if r == nil {
		return nil, false
	}
	return r.quantiles(scratch)
}

func (r *rttState) quantiles(scratch []float64) ([]float64, bool) {
	if !r.dirty {
		return r.q, r.qOK
	}
	r.q, r.qOK = r.read(scratch)
	if r.q != nil {
		r.qBuf = append(r.qBuf[:0], r.q...)
		r.q = r.qBuf
	}
	r.dirty = false
	return r.q, r.qOK
}

func (r *rttState) read(scratch []float64) ([]float64, bool) {
	if q, ok, done := r.readStores(scratch); done {
		return q, ok
	}
	r.merged.Clear()
	if err := r.merged.MergeWith(r.prev); err != nil {
		return nil, false
	}
	if err := r.merged.MergeWith(r.cur); err != nil {
		return nil, false
	}
	if r.merged.IsEmpty() {
		return nil, false
	}
	q, err := r.merged.GetValuesAtQuantiles(quantiles)
	return q, err == nil
}

// rttReadSpan bounds the bins readStores adds up (2048, as the sketches).
const rttReadSpan = 2048

// readStores reads the quantiles of prev and cur together without merging
// them into a third sketch (which re-extended its range every read): both
// positive stores' bins are summed into a scratch array, which is walked
// as DDSketch.GetValueAtQuantile walks a merged store, with the same sums
// in the same order (so the same values). done is false when it cannot
// (zero or negative values, a span wider than a sketch keeps): read then
// merges.
func (r *rttState) readStores(scratch []float64) (q []float64, ok, done bool) {
	if r.prev.GetZeroCount() != 0 || r.cur.GetZeroCount() != 0 ||
		!r.prev.GetNegativeValueStore().IsEmpty() || !r.cur.GetNegativeValueStore().IsEmpty() {
		return nil, false, false
	}
	ps, cs := r.prev.GetPositiveValueStore(), r.cur.GetPositiveValueStore()
	lo, hi := math.MaxInt, math.MinInt
	for _, st := range [2]store.Store{ps, cs} {
		if st.IsEmpty() {
			continue
		}
		mn, err1 := st.MinIndex()
		mx, err2 := st.MaxIndex()
		if err1 != nil || err2 != nil {
			return nil, false, false
		}
		lo, hi = min(lo, mn), max(hi, mx)
	}
	if lo > hi {
		return nil, false, true // both empty
	}
	if hi-lo >= rttReadSpan {
		return nil, false, false
	}
	bins := scratch[:hi-lo+1]
	clear(bins)
	for _, st := range [2]store.Store{ps, cs} {
		st.ForEach(func(i int, c float64) bool {
			bins[i-lo] += c
			return false
		})
	}
	count := r.prev.GetCount() + r.cur.GetCount()
	m := r.prev.IndexMapping
	q = r.qRead[:0]
	i, n := 0, bins[0]
	for _, qt := range quantiles {
		rank := float64(qt * (count - 1))
		for n <= rank && i < len(bins)-1 {
			i++
			n += bins[i]
		}
		q = append(q, m.Value(lo+i))
	}
	r.qRead = q
	return q, true, true
}

// lineKey names a line: an exporter's interface, by name when the
// exporter or the interface-names file gave one, else by ifIndex.
type lineKey struct {
	exporter netip.Addr
	name     string
	index    uint32
}

type serviceKey struct {
	proto uint8
	port  uint16
}

// protoName is the protocol of a service key: the flow documents'
// network.transport, so that the alert's Discover query finds its flows
// (its own list named OSPF, PIM, VRRP, IGMP "89", "103", ...).
func protoName(p uint8) string { return flow.TransportName(p) }

// serverPort is the port of the serving end: the one port below 32768 (the
// well-known and registered ranges, below every system's ephemeral range)
// when only one is, else the lower of two below 32768, else the
// destination port.
// serverPortOf is a record's server port: the destination's when the
// record shows that its source opened the connection, the source's when
// it shows the destination did, else serverPort's guess from the ports,
// which takes a server on a port above 32768 (DB2's 50000) answering a
// client on a lower one for a service on the client's port. What shows
// it: the exporter's biflowDirection (RFC 5103: 1, the source initiated;
// 2, the destination did), a SYN without ACK (only a client sends one; in
// a biflow's reverse flags when its source sent neither), or a SYN-ACK
// alone in a record of one packet (the server's; over more packets flags
// are ORed, and both directions of a connection show SYN and ACK).
func serverPortOf(r *flow.Record) uint16 {
	switch initiator(r) {
	case biflowInitiator:
		return r.DstPort
	case biflowReverseInitiator:
		return r.SrcPort
	}
	return serverPort(r.SrcPort, r.DstPort)
}

// reverseFlags are the TCP flags of a biflow's reverse direction
// (netflow.reverse_tcp_control_bits, RFC 5103); 0 when absent.
func reverseFlags(r *flow.Record) uint64 {
	for i := range r.Extra {
		if x := &r.Extra[i]; x.Name == "reverse_tcp_control_bits" && !x.IsStr && x.Raw == nil {
			return x.Num
		}
	}
	return 0
}

// Values of IPFIX biflowDirection (RFC 5103), netflow.biflow_direction.
const (
	biflowInitiator        = 1 // the source opened the connection
	biflowReverseInitiator = 2 // the destination did
)

// initiator is which end of r opened its connection, as
// biflowDirection numbers it (0: it does not show).
func initiator(r *flow.Record) uint64 {
	const syn, ack = 0x02, 0x10
	reverseSYN := false // a biflow whose reverse direction sent a SYN without ACK
	for i := range r.Extra {
		x := &r.Extra[i]
		if x.IsStr || x.Raw != nil {
			continue
		}
		switch {
		case x.Name == "biflow_direction" && (x.Num == biflowInitiator || x.Num == biflowReverseInitiator):
			return x.Num
		case x.Name == "reverse_tcp_control_bits" && x.Num&(syn|ack) == syn:
			reverseSYN = true // reverseFlags' element
		}
	}
	if r.Proto != 6 || r.NoTCPFlags {
		return 0
	}
	switch r.TCPFlags & (syn | ack) {
	case syn:
		return biflowInitiator
	case syn | ack:
		// One packet: sFlow samples one each; a NetFlow or IPFIX
		// record one, or one sampled (its count scaled by the rate).
		if r.Kind == flow.KindSFlow || r.Packets == 1 || r.SamplingRate > 1 && r.Packets == uint64(r.SamplingRate) {
			return biflowReverseInitiator
		}
	case 0:
		if reverseSYN {
			return biflowReverseInitiator
		}
	}
	return 0
}

func serverPort(src, dst uint16) uint16 {
	const ephemeral = 32768
	switch {
	case src < ephemeral && dst >= ephemeral:
		return src
	case dst < ephemeral && src >= ephemeral:
		return dst
	case src < ephemeral && dst < ephemeral:
		return min(src, dst)
	}
	return dst
}

func hasPorts(proto uint8) bool {
	switch proto {
	case 6, 17, 132, 33, 136:
		return true
	}
	return false
}
