package rollup

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"slices"
	"unsafe"

	"github.com/spanflow/spanflow/internal/addrhash"
	"github.com/spanflow/spanflow/internal/flow"
)

// The pre-aggregation keeps the per-flow path short. A record touches up
// to eight series (two lines, two projects, two VMs, a service, an
// exporter); updating each of them per record (their rings, RTT sketches
// and talker sketches) cost about 1 µs a flow. Instead, a record is added
// once to a pre-aggregate: the records that would touch the same series
// and end in the same bucket, found with one hash lookup on what decides
// the series (the exporter, the interfaces, the enrichment values by
// identity, the service). The pre-aggregates are folded into the series
// before a bucket closes (every tick), when State is read, and whenever a
// table is full, so what the series hold at a tick is the same sums as
// before, added in another order. Handshake RTTs are counted per
// (pre-aggregate, sketch bin) and talkers' bytes per (talker sketches,
// source address), so a sketch is updated once per distinct bin or source
// between folds instead of once per record.

// aggKey is what decides the series a record touches and the bucket its
// events go to. The enrichment values are compared by identity, which the
// enrichers share between records (they must not be modified): the table
// holds them, so an address cannot be reused for another value before the
// next fold. Equal values at different addresses only make two
// pre-aggregates of the same series.
type aggKey struct {
	exporter        netip.Addr
	inName, outName string
	srcVS, dstVS    *flow.VSphere
	srcNet, dstNet  *flow.NetworkInfo
	last            int64 // the last open bucket the record reaches
	inIf, outIf     uint32
	port            uint16 // the server port; 0 for protocols without ports
	proto           uint8
	events          bool // last is the bucket the record ends in
}

// addrWords are words of a for hashing (an IPv4 address and its
// IPv4-mapped IPv6 form differ).
func addrWords(a netip.Addr) (uint64, uint64) {
	if a.Is4() {
		b := a.As4()
		return uint64(binary.BigEndian.Uint32(b[:])), 0
	}
	b := a.As16()
	return binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])
}

func ptrWord[T any](p *T) uint64 { return uint64(uintptr(unsafe.Pointer(p))) }

func strWord(s string) uint64 {
	return uint64(uintptr(unsafe.Pointer(unsafe.StringData(s)))) ^ uint64(len(s))<<48
}

func (k *aggKey) hash() uint64 {
	// Each field times an odd constant of its own, summed: the products are
	// independent (a chain of mixes waited on each multiplication in
	// turn), and fmix brings their high bits, where the fields' own high
	// bits went, down to the low ones that index the table.
	a, b := addrWords(k.exporter)
	var ev uint64
	if k.events {
		ev = 1
	}
	h := a*0x9e3779b97f4a7c15 + b*0xc2b2ae3d27d4eb4f +
		(strWord(k.inName)^strWord(k.outName)<<1)*0x165667b19e3779f9 +
		ptrWord(k.srcVS)*0xd6e8feb86659fd93 + ptrWord(k.dstVS)*0xff51afd7ed558ccd +
		(ptrWord(k.srcNet)^ptrWord(k.dstNet)<<1)*0xc4ceb9fe1a85ec53 +
		uint64(k.last)*0x27d4eb2f165667c5 + (uint64(k.inIf)|uint64(k.outIf)<<32)*0x94d049bb133111eb +
		(uint64(k.port)|uint64(k.proto)<<16|ev<<24)*0xbf58476d1ce4e5b9
	return addrhash.Fmix(h)
}

// equal is k == o, the cheap fields first, and interned strings (the
// interface names) compared by address before their bytes.
func (k *aggKey) equal(o *aggKey) bool {
	return k.last == o.last && k.inIf == o.inIf && k.outIf == o.outIf && k.port == o.port &&
		k.proto == o.proto && k.events == o.events && k.srcVS == o.srcVS && k.dstVS == o.dstVS &&
		k.srcNet == o.srcNet && k.dstNet == o.dstNet && k.exporter == o.exporter &&
		sameString(k.inName, o.inName) && sameString(k.outName, o.outName)
}

func sameString(a, b string) bool {
	return len(a) == len(b) && (unsafe.StringData(a) == unsafe.StringData(b) || a == b)
}

// preAgg is the sum of the records of one key since the last fold.
type preAgg struct {
	key     aggKey
	touched [8]*series // the series, as Engine.add used to touch them
	n       int
	over    [numScopes]uint32 // lookups of this key that found their scope full
	talk    [4]*series        // the touched series that keep talkers
	nTalk   int
	records uint32
	ev      bucket // event counts (flows, TCP), when key.events
	maxOff  int    // spread holds offsets 0..maxOff back from key.last
	rttSeen bool
	held    int32 // 1 + where touched is in its bucket's rttPending; 0 before
	// The first rttInline distinct RTT bins of the key and their
	// handshakes, kept in the pre-aggregate (in the cache already) and
	// added to its series in the fold's pass over them (in the cache
	// then too); more bins go to the preAggs.rtt table.
	nRTT      int
	rttBin    [rttInline]int32
	rttCounts [rttInline]uint32
}

// rttInline is how many RTT bins a pre-aggregate holds itself: in
// BenchmarkRollup/mix a pre-aggregate sees 3 handshakes, most in distinct
// bins.
const rttInline = 4

// addRTT counts a handshake in bin; false when the pre-aggregate holds
// rttInline other bins.
func (a *preAgg) addRTT(bin int32) bool {
	for i := range a.nRTT {
		if a.rttBin[i] == bin {
			a.rttCounts[i]++
			return true
		}
	}
	if a.nRTT == rttInline {
		return false
	}
	a.rttBin[a.nRTT], a.rttCounts[a.nRTT] = bin, 1
	a.nRTT++
	return true
}

// rttCount is a sketch bin's count for one pre-aggregate.
type rttOther struct {
	agg int32
	ms  float64
}

// preAggs are the pre-aggregation tables; every size is fixed at New.
type preAggs struct {
	slots  []uint64 // open addressing on aggKey.hash: slotOf, 0 empty
	aggs   []preAgg
	max    int
	stride int       // 2 × ringLen: bytes and packets per bucket offset
	spread []float64 // per pre-aggregate: stride values

	rtt      countTable // (pre-aggregate, bin) → handshakes
	rttOther []rttOther // RTTs outside the mapping's range, rare
	talkers  talkerTable
	batch    uint64 // talker folds so far
	// Records' talker weights not yet in the table (flushTalkers).
	pending []pendingTalker
	touched uint64 // what flushTalkers's first pass read, so that it reads
	// the sketches the current talker fold fed
	batchSketches []*spaceSaving
}

// Bounds of the tables. They start small and double, up to their bound,
// when they fill between two ticks; a full table at its bound is folded.
// The spread arena holds at most spreadBudget values (4 MiB), so at most
// maxAggs pre-aggregates (fewer with a long Delay+Ahead).
const (
	maxAggs        = 16384
	minAggs        = 16
	spreadBudget   = 1 << 19
	rttSlots       = 1 << 16 // 768 KiB
	talkerSlots    = 1 << 17
	firstSlots     = 1 << 10
	tableLoadShift = 1 // a table is full at half its slots
)

func newPreAggs(ringLen int) preAggs {
	n := max(minAggs, min(maxAggs, spreadBudget/(2*ringLen)))
	p := preAggs{max: n, stride: 2 * ringLen}
	p.slots = make([]uint64, min(firstSlots, 2*pow2(n)))
	p.rtt = newCountTable(firstSlots, rttSlots)
	p.talkers = newTalkerTable(firstSlots, talkerSlots)
	return p
}

func pow2(n int) int { return 1 << bits.Len(uint(n-1)) }

// A slot holds the high half of its key's hash above index+1 (0: empty):
// a probe compares the hashes before it reads the pre-aggregate's key,
// which is in an array of megabytes.
func slotOf(h uint64, idx int) uint64 { return h&^0xffffffff | uint64(idx+1) }

// find returns the index of k's pre-aggregate, or -1 and the slot where
// it would go.
func (p *preAggs) find(k *aggKey) (int, int) {
	h := k.hash()
	mask := len(p.slots) - 1
	i := int(h) & mask
	for {
		v := p.slots[i]
		if v == 0 {
			return -1, i
		}
		if (v^h)>>32 == 0 {
			if j := int(uint32(v)) - 1; p.aggs[j].key.equal(k) {
				return j, i
			}
		}
		i = (i + 1) & mask
	}
}

// growSlots doubles the slots of the pre-aggregates.
func (p *preAggs) growSlots() {
	p.slots = make([]uint64, 2*len(p.slots))
	mask := len(p.slots) - 1
	for j := range p.aggs {
		h := p.aggs[j].key.hash()
		i := int(h) & mask
		for p.slots[i] != 0 {
			i = (i + 1) & mask
		}
		p.slots[i] = slotOf(h, j)
	}
}

// newAgg makes the pre-aggregate of k (in slot) for record r: the series
// lookups Engine.add used to make for every record.
func (e *Engine) newAgg(k *aggKey, slot int, r *flow.Record) int {
	p := &e.pre
	if len(p.aggs) >= len(p.slots)>>tableLoadShift {
		if len(p.slots) < 2*pow2(p.max) {
			p.growSlots()
		} else {
			e.fold()
		}
		_, slot = p.find(k)
	}
	over := e.stats.overflow
	p.aggs = append(p.aggs, preAgg{key: *k})
	idx := len(p.aggs) - 1
	if len(p.spread) < len(p.aggs)*p.stride {
		// Never used before: zero.
		p.spread = slices.Grow(p.spread, p.stride)[:len(p.aggs)*p.stride]
	}
	a := &p.aggs[idx]
	touch := func(s *series) { a.touched[a.n] = s; a.n++ }
	if r.InIf != 0 || r.InIfName != "" {
		touch(e.line(r.ObserverIP, r.InIfName, r.InIf))
	}
	if (r.OutIf != 0 || r.OutIfName != "") && (r.OutIf != r.InIf || r.OutIfName != r.InIfName) {
		touch(e.line(r.ObserverIP, r.OutIfName, r.OutIf))
	}
	sp, dp := project(&r.Src), project(&r.Dst)
	if sp != "" {
		touch(e.project(sp))
	}
	if dp != "" && dp != sp {
		touch(e.project(dp))
	}
	var sv, dv string
	if r.Src.VSphere != nil {
		sv = r.Src.VSphere.VMName
	}
	if r.Dst.VSphere != nil {
		dv = r.Dst.VSphere.VMName
	}
	if sv != "" {
		touch(e.vm(sv, sp))
	}
	if dv != "" && dv != sv {
		touch(e.vm(dv, dp))
	}
	touch(e.service(serviceKey{k.proto, k.port}))
	if r.ObserverIP.IsValid() {
		touch(e.exporter(r.ObserverIP))
	}
	// Overflow is counted per record: at the fold, for every record of
	// the key.
	for s := range numScopes {
		a.over[s] = uint32(e.stats.overflow[s] - over[s])
	}
	e.stats.overflow = over
	for _, s := range a.touched[:a.n] {
		if s.talkers != nil {
			a.talk[a.nTalk] = s
			a.nTalk++
		}
	}
	p.slots[slot] = slotOf(k.hash(), idx)
	return idx
}

// fold adds the pre-aggregates into their series and empties the tables.
func (e *Engine) fold() {
	p := &e.pre
	if len(p.aggs) == 0 {
		return
	}
	e.flushTalkers()
	rl := e.ringLen
	for i := range p.aggs {
		a := &p.aggs[i]
		sp := p.spread[i*p.stride : i*p.stride+2*(a.maxOff+1)]
		lastPos := int(a.key.last % int64(rl))
		for _, s := range a.touched[:a.n] {
			pos := lastPos
			for off := 0; off < len(sp); off += 2 {
				b := &s.ring[pos]
				b.bytes += sp[off]
				b.packets += sp[off+1]
				if pos--; pos < 0 {
					pos = rl - 1
				}
			}
			if a.key.events {
				b := &s.ring[lastPos]
				b.flows += a.ev.flows
				b.tcpPackets += a.ev.tcpPackets
				b.retrans += a.ev.retrans
				b.zeroWins += a.ev.zeroWins
				b.syns += a.ev.syns
				b.handshakes += a.ev.handshakes
			}
			if a.rttSeen && s.rtt == nil {
				s.rtt = newRTTState(e.cfg.RTTAccuracy)
			}
		}
		for j := range a.nRTT {
			e.holdRTT(a, a.rttBin[j], a.rttCounts[j])
		}
		for s, n := range a.over {
			e.stats.overflow[s] += uint64(n) * uint64(a.records)
		}
		clear(sp)
	}
	e.foldRTT()
	e.foldTalkers()
	clear(p.slots)
	p.aggs = p.aggs[:0]
	e.compactRTT()
}

// foldRTT adds the handshakes counted per bin to the series, held until
// their bucket closes (rttPending).
func (e *Engine) foldRTT() {
	p := &e.pre
	p.rtt.each(func(k uint64, n uint32) {
		e.holdRTT(&p.aggs[k>>32], int32(uint32(k)), n)
	})
	for _, o := range p.rttOther {
		e.holdRTTOutside(&p.aggs[o.agg], o.ms)
	}
	p.rttOther = p.rttOther[:0]
}

// foldTalkers adds each source's bytes into the talker sketch of each
// series, as one batch per sketch (spaceSaving.addBatch).
func (e *Engine) foldTalkers() {
	p := &e.pre
	if p.talkers.used == 0 {
		return
	}
	p.batch++
	fold := func(s *series, addr netip.Addr, w float64) {
		if s.talkers.addBatch(addr, addrHash(addr), w, p.batch) {
			p.batchSketches = append(p.batchSketches, s.talkers)
		}
	}
	if e.counts[scopeLine]+e.counts[scopeProject] > groupTalkersAbove {
		p.talkers.eachBySeries(fold)
	} else {
		p.talkers.each(fold)
	}
	for _, ss := range p.batchSketches {
		ss.endBatch()
	}
	clear(p.batchSketches)
	p.batchSketches = p.batchSketches[:0]
}

// pendingTalker is a record's weight for the talker sketches of its
// pre-aggregate's series, on its way to the talker table.
type pendingTalker struct {
	agg  int32
	h    uint64
	addr netip.Addr
	w    float64
}

// pendingTalkers is how many records' talker weights are put into the
// table together, once it has pendingTalkersFrom slots (640 KiB): below,
// it stays in the caches, and the list only costs (BenchmarkFlows's
// table, 4,096 slots, spent 17 % of its time in flushTalkers). The table
// never shrinks, so records are never added out of order.
const (
	pendingTalkers     = 32
	pendingTalkersFrom = 1 << 14
)

// flushTalkers puts the pending talker weights into the talker table. The
// table is megabytes, and a probe of it nearly always misses the caches:
// made one record at a time, each miss waited for the last, since the rest
// of a record's path lies between them. The first pass reads the slot of
// every pending (series, address), the loads independent of one another
// and all in flight at once; the second adds them, in record order, from
// the caches. Pending weights wait across writes; fold flushes them first,
// while their pre-aggregates are there, and nothing reads the talker
// table but a fold.
func (e *Engine) flushTalkers() {
	p := &e.pre
	if len(p.pending) == 0 {
		return
	}
	t := &p.talkers
	mask := len(t.entries) - 1
	var sum uint64
	for i := range p.pending {
		pt := &p.pending[i]
		pt.h = addrHash(pt.addr)
		a := &p.aggs[pt.agg]
		for _, s := range a.talk[:a.nTalk] {
			sum += uint64(t.entries[int(talkerSlot(pt.h, s))&mask].w)
		}
	}
	p.touched += sum
	for i := range p.pending {
		pt := &p.pending[i]
		a := &p.aggs[pt.agg]
		if t.full(a.nTalk) {
			e.foldTalkers()
		}
		t.add(a.talk[:a.nTalk], pt.addr, pt.h, pt.w)
	}
	p.pending = p.pending[:0]
}

// countTable counts per uint64 key, in fixed memory (open addressing).
type countTable struct {
	limit  int // slots at most
	keys   []uint64
	counts []uint32 // 0: empty slot
	used   int
}

func newCountTable(slots, limit int) countTable {
	return countTable{keys: make([]uint64, slots), counts: make([]uint32, slots), limit: limit}
}

// full says the table must be folded before it counts another key; below
// its bound it grows instead.
func (t *countTable) full() bool {
	if t.used < len(t.keys)>>tableLoadShift {
		return false
	}
	if len(t.keys) >= t.limit {
		return true
	}
	old := *t
	*t = newCountTable(2*len(old.keys), old.limit)
	for i, n := range old.counts {
		if n != 0 {
			t.put(old.keys[i], n)
		}
	}
	return false
}

func (t *countTable) put(k uint64, n uint32) {
	mask := len(t.keys) - 1
	i := int(addrhash.Fmix(k)) & mask
	for t.counts[i] != 0 {
		i = (i + 1) & mask
	}
	t.keys[i], t.counts[i] = k, n
	t.used++
}

// add counts k once; the caller folds the table when it is full first.
func (t *countTable) add(k uint64) {
	mask := len(t.keys) - 1
	i := int(addrhash.Fmix(k)) & mask
	for {
		switch {
		case t.counts[i] == 0:
			t.keys[i], t.counts[i] = k, 1
			t.used++
			return
		case t.keys[i] == k:
			t.counts[i]++
			return
		}
		i = (i + 1) & mask
	}
}

// each calls fn on every key and empties the table.
func (t *countTable) each(fn func(k uint64, n uint32)) {
	if t.used == 0 {
		return
	}
	for i, n := range t.counts {
		if n != 0 {
			fn(t.keys[i], n)
			t.counts[i] = 0
		}
	}
	t.used = 0
}

// talkerTable sums weights per (series, source address): open
// addressing, growing up to talkerSlots.
type talkerTable struct {
	limit   int // slots at most
	entries []talkerEntry
	used    int

	// eachBySeries's scratch: the entries grouped, and a count per series.
	grouped []talkerEntry
	starts  []int32
}

type talkerEntry struct {
	addr netip.Addr
	w    float64
	s    *series // nil: empty slot
}

func newTalkerTable(slots, limit int) talkerTable {
	return talkerTable{entries: make([]talkerEntry, slots), limit: limit}
}

func talkerSlot(h uint64, s *series) uint64 {
	return addrhash.Fmix(h ^ ptrWord(s))
}

// full says the table must be folded before it takes n more entries;
// below its bound it grows instead.
func (t *talkerTable) full(n int) bool {
	if t.used+n <= len(t.entries)>>tableLoadShift {
		return false
	}
	if len(t.entries) >= t.limit {
		return true
	}
	old := t.entries
	*t = newTalkerTable(2*len(old), t.limit)
	mask := len(t.entries) - 1
	for _, en := range old {
		if en.s == nil {
			continue
		}
		i := int(talkerSlot(addrHash(en.addr), en.s)) & mask
		for t.entries[i].s != nil {
			i = (i + 1) & mask
		}
		t.entries[i] = en
		t.used++
	}
	return false
}

// add adds w to the address's weight (h its addrHash) in each series of
// ss (which may repeat one).
func (t *talkerTable) add(ss []*series, addr netip.Addr, h uint64, w float64) {
	mask := len(t.entries) - 1
	for _, s := range ss {
		i := int(talkerSlot(h, s)) & mask
		for {
			en := &t.entries[i]
			if en.s == nil {
				en.addr, en.w, en.s = addr, w, s
				t.used++
				break
			}
			if en.s == s && en.addr == addr {
				en.w += w
				break
			}
			i = (i + 1) & mask
		}
	}
}

// groupTalkersAbove is the number of talker sketches (line and project
// series) above which a fold groups the talker entries by series: with few
// sketches they all stay in the caches and grouping only adds its passes
// (the realistic mix, about 100 sketches: 2-14 % slower grouped); with a
// thousand lines (500 exporters) nearly every entry probed a sketch out of
// the caches (the sketches were 40 % of the collector's CPU).
const groupTalkersAbove = 128

// each calls fn on every entry, in slot order, and empties the table.
func (t *talkerTable) each(fn func(s *series, addr netip.Addr, w float64)) {
	for i := range t.entries {
		en := &t.entries[i]
		if en.s != nil {
			fn(en.s, en.addr, en.w)
			*en = talkerEntry{}
		}
	}
	t.used = 0
}

// eachBySeries calls fn on every entry, the entries of one series
// together (series in the order of their pos, each one's entries in slot
// order, as each would give them), and empties the table. A sketch is then
// worked on in one go while its index and heap are in the cache, instead
// of one probe into a different sketch for nearly every entry.
func (t *talkerTable) eachBySeries(fn func(s *series, addr netip.Addr, w float64)) {
	starts := t.starts
	clear(starts)
	for i := range t.entries {
		s := t.entries[i].s
		if s == nil {
			continue
		}
		if s.pos+2 > len(starts) {
			starts = append(starts, make([]int32, s.pos+2-len(starts))...)
		}
		starts[s.pos+1]++
	}
	t.starts = starts
	if len(starts) == 0 {
		t.used = 0
		return
	}
	for i := 1; i < len(starts); i++ {
		starts[i] += starts[i-1]
	}
	n := int(starts[len(starts)-1])
	if cap(t.grouped) < n {
		t.grouped = make([]talkerEntry, n)
	}
	g := t.grouped[:n]
	for i := range t.entries {
		en := &t.entries[i]
		if en.s != nil {
			g[starts[en.s.pos]] = *en
			starts[en.s.pos]++
			*en = talkerEntry{}
		}
	}
	t.used = 0
	for i := range g {
		fn(g[i].s, g[i].addr, g[i].w)
		g[i] = talkerEntry{} // no series kept alive by the scratch
	}
}
