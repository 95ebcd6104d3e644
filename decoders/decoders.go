// Package decoders turns flow datagrams (NetFlow v5, v9, IPFIX, sFlow v5)
// into flow records. It keeps the per-exporter state the protocols need
// (templates per observation domain, options, data held for templates,
// sequence numbers) and bounds it. It sits between the collector's listeners
// and its pipeline: listen → decoders.Decoder → enrich → outputs.
package decoders

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spanflow/spanflow/decoders/netflow"
	"github.com/spanflow/spanflow/decoders/netflowv5"
	"github.com/spanflow/spanflow/decoders/reason"
	"github.com/spanflow/spanflow/decoders/sflow"
	"github.com/spanflow/spanflow/internal/flow"
)

// Datagram is one flow protocol payload and where it came from.
type Datagram struct {
	Source   netip.AddrPort // the exporter's address and port
	Payload  []byte
	Received time.Time
}

// Configuration bounds the state exporters can make the decoder keep.
// What a limit refuses is counted (Result.Refused) and the rest of the
// datagram decoded.
type Configuration struct {
	MaxExporters            int           // distinct exporter addresses; others are dropped and counted
	MaxTemplatesPerExporter int           // NetFlow v9/IPFIX templates per exporter (those that cannot describe data too)
	MaxPendingPerExporter   int           // data sets held waiting for their template, per exporter
	PendingTimeout          time.Duration // how long such a data set is held
	// MaxDomainsPerExporter bounds the observation domains (source ids)
	// in which an exporter has templates, and the sequence spaces
	// (domains, engines, sub-agents) whose losses are tracked.
	MaxDomainsPerExporter int
	// MaxInterfaceNamesPerExporter bounds the interface names options
	// records teach one exporter (all domains).
	MaxInterfaceNamesPerExporter int
	// MaxInterfaceNameBytes truncates longer interface names (between
	// UTF-8 characters).
	MaxInterfaceNameBytes int
	// MaxBytesPerExporter bounds one exporter's state in bytes (estimated
	// from what the decoder keeps): templates, domains, interface names,
	// sampler rates, held data sets.
	MaxBytesPerExporter int
	// MaxBytes bounds the same state of all exporters together.
	MaxBytes int
	// ExporterIdleTimeout forgets an exporter (templates, options, held
	// data, sequence numbers) that sent nothing for that long, at the next
	// Expire; 0 keeps exporters until restart.
	ExporterIdleTimeout time.Duration
}

// DefaultConfiguration returns the default limits.
func DefaultConfiguration() Configuration {
	l := netflow.DefaultLimits()
	return Configuration{MaxExporters: 10000, MaxTemplatesPerExporter: l.MaxTemplates,
		MaxPendingPerExporter: l.MaxPending, PendingTimeout: l.PendingTimeout,
		MaxDomainsPerExporter: l.MaxDomains, MaxInterfaceNamesPerExporter: l.MaxInterfaceNames,
		MaxInterfaceNameBytes: l.MaxInterfaceNameBytes, MaxBytesPerExporter: l.MaxBytes,
		MaxBytes: 256 << 20, ExporterIdleTimeout: 15 * time.Minute}
}

// Validate checks the configuration.
func (c Configuration) Validate() error {
	switch {
	case c.MaxExporters < 1:
		return fmt.Errorf("max exporters must be at least 1, not %d", c.MaxExporters)
	case c.MaxTemplatesPerExporter < 1:
		return fmt.Errorf("max templates per exporter must be at least 1, not %d", c.MaxTemplatesPerExporter)
	case c.MaxPendingPerExporter < 0:
		return fmt.Errorf("max pending data sets must not be negative")
	case c.PendingTimeout < 0:
		return fmt.Errorf("pending timeout must not be negative")
	case c.MaxDomainsPerExporter < 1:
		return fmt.Errorf("max observation domains per exporter must be at least 1, not %d", c.MaxDomainsPerExporter)
	case c.MaxInterfaceNamesPerExporter < 0:
		return fmt.Errorf("max interface names per exporter must not be negative")
	case c.MaxInterfaceNameBytes < 1:
		return fmt.Errorf("max interface name bytes must be at least 1, not %d", c.MaxInterfaceNameBytes)
	case c.MaxBytesPerExporter < minBytes:
		return fmt.Errorf("max bytes per exporter must be at least %d (one template of the largest datagram), not %d", minBytes, c.MaxBytesPerExporter)
	case c.MaxBytes < c.MaxBytesPerExporter:
		return fmt.Errorf("max bytes of all exporters (%d) must be at least the max bytes per exporter (%d)", c.MaxBytes, c.MaxBytesPerExporter)
	case c.ExporterIdleTimeout < 0:
		return fmt.Errorf("exporter idle timeout must not be negative")
	}
	return nil
}

// minBytes holds the largest template a datagram can carry.
const minBytes = 256 << 10

func (c Configuration) limits() netflow.Limits {
	return netflow.Limits{MaxTemplates: c.MaxTemplatesPerExporter, MaxPending: c.MaxPendingPerExporter,
		PendingTimeout: c.PendingTimeout, MaxDomains: c.MaxDomainsPerExporter,
		MaxInterfaceNames: c.MaxInterfaceNamesPerExporter, MaxInterfaceNameBytes: c.MaxInterfaceNameBytes,
		MaxBytes: c.MaxBytesPerExporter}
}

// Result says what one datagram held.
type Result struct {
	Kind           flow.Kind
	Domain         uint32 // observation domain (IPFIX), source id (NetFlow v9), sub-agent (sFlow); 0 for NetFlow v5
	Records        int    // records appended (flows and interface counters)
	OptionsRecords int    // NetFlow v9/IPFIX options records applied
	Lost           uint64 // datagrams (v9, sFlow) or records (v5, IPFIX) the sequence numbers say were lost before this one
	Held           int    // data sets held for a template
	Expired        int    // held data sets dropped because their template never came
	Templates      int    // templates the exporter has now (NetFlow v9/IPFIX)
	IgnoredSets    int    // NetFlow v9/IPFIX sets of a reserved set id, skipped
	BadHeaders     int    // sFlow sampled headers that did not decode
	Discards       int    // sFlow drop notifications decoded into records
	UnknownSamples int    // sFlow samples of a format spanflow does not read, skipped by their length
	// Observer is the address the records name as their observer: the
	// sFlow agent address, else the datagram's source.
	Observer netip.Addr
	// Refused counts the templates, data sets and options values a limit
	// refused, one per item. When the error's reason is a limit, it is the
	// first of these, not one more.
	Refused reason.Tally
}

type exporter struct {
	mu       sync.Mutex
	gone     bool // forgotten by Expire or evicted: look the exporter up again
	addr     netip.Addr
	proven   atomic.Bool // it delivered a record: never evicted for a newcomer
	lastSeen atomic.Int64
	nf       *netflow.State
	// first is the first sequence space the exporter used, and most
	// often its only one; seq has the others. A space → next expected
	// number.
	first  seqSpace
	seq    map[uint64]uint32
	maxSeq int
}

// seqSpace is a sequence space and the number expected next in it.
type seqSpace struct {
	ok    bool
	space uint64
	next  uint32
}

// Decoder decodes datagrams from many exporters; it is safe for concurrent
// use (the datagrams of one exporter are decoded one at a time).
type Decoder struct {
	cfg       Configuration
	shared    *netflow.Budget
	expired   atomic.Uint64
	evicted   atomic.Uint64
	mu        sync.RWMutex
	exporters map[netip.Addr]*exporter
	// unproven are the exporters that have not delivered a record yet, in
	// the order they came (some may have since, or be gone): when the table
	// is full, a newcomer takes the place of the oldest of them, so sources
	// that only sent garbage (spoofed ones) cannot lock real exporters out.
	unproven []*exporter
	// evictedHeld are the held data sets of evicted exporters, reported by
	// the next Expire.
	evictedHeld map[netip.Addr]int
}

// New returns a decoder.
func New(cfg Configuration) (*Decoder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Decoder{cfg: cfg, shared: netflow.NewBudget(cfg.MaxBytes), exporters: map[netip.Addr]*exporter{}}, nil
}

// exporter returns the state of a, locked.
func (d *Decoder) exporter(a netip.Addr, seen time.Time) (*exporter, error) {
	for {
		e, err := d.lookup(a, seen)
		if err != nil {
			return nil, err
		}
		e.mu.Lock()
		if !e.gone {
			if t := seen.UnixNano(); t > e.lastSeen.Load() {
				e.lastSeen.Store(t)
			}
			return e, nil
		}
		e.mu.Unlock()
	}
}

func (d *Decoder) lookup(a netip.Addr, seen time.Time) (*exporter, error) {
	d.mu.RLock()
	e := d.exporters[a]
	d.mu.RUnlock()
	if e != nil {
		return e, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if e = d.exporters[a]; e != nil {
		return e, nil
	}
	if len(d.exporters) >= d.cfg.MaxExporters && !d.evictUnproven() {
		return nil, reason.Errorf(reason.ExporterLimit, "datagram from %s: already %d exporters, each of which delivered records", a, len(d.exporters))
	}
	e = &exporter{addr: a, seq: map[uint64]uint32{}, maxSeq: d.cfg.MaxDomainsPerExporter,
		nf: netflow.NewState(a, d.cfg.limits(), d.shared)}
	e.lastSeen.Store(seen.UnixNano())
	d.exporters[a] = e
	d.unproven = append(d.unproven, e)
	return e, nil
}

// compactUnproven drops the entries of exporters proven or gone since they
// were listed; d.mu is held.
func (d *Decoder) compactUnproven() {
	live := d.unproven[:0]
	for _, e := range d.unproven {
		if !e.proven.Load() && d.exporters[e.addr] == e {
			live = append(live, e)
		}
	}
	clear(d.unproven[len(live):])
	d.unproven = live
	if cap(d.unproven) > 1024 && cap(d.unproven) > 4*len(live) {
		d.unproven = slices.Clone(live) // a flood's array, given back
	}
}

// evictUnproven forgets the oldest exporter that has delivered no record,
// to make room; d.mu is held. It reports false when every exporter has
// delivered records (or the unproven ones are busy decoding).
func (d *Decoder) evictUnproven() bool {
	if len(d.unproven) > 2*d.cfg.MaxExporters {
		d.compactUnproven()
	}
	var busy []*exporter
	defer func() { d.unproven = append(d.unproven, busy...) }()
	for i, e := range d.unproven {
		if e.proven.Load() || d.exporters[e.addr] != e {
			continue // proven or gone: its entry goes
		}
		if !e.mu.TryLock() {
			busy = append(busy, e) // decoding right now: kept for later
			continue
		}
		if e.proven.Load() {
			e.mu.Unlock()
			continue
		}
		delete(d.exporters, e.addr)
		if n := e.nf.Flush(); n > 0 {
			if d.evictedHeld == nil {
				d.evictedHeld = map[netip.Addr]int{}
			}
			d.evictedHeld[e.addr] += n
		}
		e.nf.Release()
		e.gone = true
		e.mu.Unlock()
		d.evicted.Add(1)
		d.unproven = d.unproven[i+1:]
		return true
	}
	d.unproven = d.unproven[:0]
	return false
}

// EvictedExporters is the number of exporters that had delivered no record
// and were forgotten to make room for a newcomer (the table was full).
func (d *Decoder) EvictedExporters() uint64 { return d.evicted.Load() }

// Has reports whether the decoder keeps state for a.
func (d *Decoder) Has(a netip.Addr) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.exporters[a] != nil
}

// Usage says what the decoder keeps for a (false when nothing).
func (d *Decoder) Usage(a netip.Addr) (netflow.Usage, bool) {
	d.mu.RLock()
	e := d.exporters[a]
	d.mu.RUnlock()
	if e == nil {
		return netflow.Usage{}, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gone {
		return netflow.Usage{}, false
	}
	return e.nf.Usage(), true
}

// Bytes is the estimated state of all exporters, as counted against
// MaxBytes.
func (d *Decoder) Bytes() int { return d.shared.Used() }

// ExpiredExporters is the number of exporters forgotten because they went
// silent.
func (d *Decoder) ExpiredExporters() uint64 { return d.expired.Load() }

// Exporters is the number of exporters the decoder keeps state for.
func (d *Decoder) Exporters() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.exporters)
}

// Templates returns the template count of every exporter.
func (d *Decoder) Templates() map[netip.Addr]int {
	d.mu.RLock()
	es := make(map[netip.Addr]*exporter, len(d.exporters))
	for a, e := range d.exporters {
		es[a] = e
	}
	d.mu.RUnlock()
	m := make(map[netip.Addr]int, len(es))
	for a, e := range es {
		e.mu.Lock()
		m[a] = e.nf.Templates()
		e.mu.Unlock()
	}
	return m
}

// DomainTemplates is the number of templates an exporter has for one
// observation domain of one protocol (NetFlow v9 or IPFIX); 0 for others.
func (d *Decoder) DomainTemplates(a netip.Addr, kind flow.Kind, domain uint32) int {
	var version uint16
	switch kind {
	case flow.KindNetFlowV9:
		version = 9
	case flow.KindIPFIX:
		version = 10
	default:
		return 0
	}
	d.mu.RLock()
	e := d.exporters[a]
	d.mu.RUnlock()
	if e == nil {
		return 0
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.nf.DomainTemplates(version, domain)
}

// Flush drops the data sets still held for templates (at the end of a
// capture) and returns how many there were per exporter.
func (d *Decoder) Flush() map[netip.Addr]int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	m := map[netip.Addr]int{}
	for a, e := range d.exporters {
		e.mu.Lock()
		if n := e.nf.Flush(); n > 0 {
			m[a] = n
		}
		e.mu.Unlock()
	}
	return m
}

// Expire drops the held data sets that waited longer than the pending
// timeout at now, and forgets the exporters that sent nothing for the
// idle timeout (their held sets too); it returns the held sets dropped per
// exporter.
func (d *Decoder) Expire(now time.Time) map[netip.Addr]int {
	m := map[netip.Addr]int{}
	var idle []netip.Addr
	d.mu.RLock()
	for a, e := range d.exporters {
		e.mu.Lock()
		if n := e.nf.Expire(now); n > 0 {
			m[a] = n
		}
		if d.idle(e, now) {
			idle = append(idle, a)
		}
		e.mu.Unlock()
	}
	d.mu.RUnlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	for a, n := range d.evictedHeld {
		m[a] += n
	}
	d.evictedHeld = nil
	for _, a := range idle {
		e := d.exporters[a]
		if e == nil {
			continue
		}
		e.mu.Lock()
		if d.idle(e, now) { // nothing came meanwhile
			delete(d.exporters, a)
			if n := e.nf.Flush(); n > 0 {
				m[a] += n
			}
			e.nf.Release()
			e.gone = true
			d.expired.Add(1)
		}
		e.mu.Unlock()
	}
	// The list of unproven exporters keeps every source that came, until
	// the exporter table is full: without this, rounds of new sources
	// forgotten when idle (spoofed ones, probes) grew it, and kept their
	// states reachable, without bound.
	if len(d.unproven) > 2*len(d.exporters) {
		d.compactUnproven()
	}
	return m
}

func (d *Decoder) idle(e *exporter, now time.Time) bool {
	return d.cfg.ExporterIdleTimeout > 0 && now.UnixNano()-e.lastSeen.Load() > int64(d.cfg.ExporterIdleTimeout)
}

// Protocol guesses the protocol of a payload from its first bytes.
func Protocol(p []byte) flow.Kind {
	if len(p) < 4 {
		return flow.KindUnknown
	}
	switch binary.BigEndian.Uint16(p) {
	case 5:
		return flow.KindNetFlowV5
	case 9:
		return flow.KindNetFlowV9
	case 10:
		return flow.KindIPFIX
	case 0:
		if binary.BigEndian.Uint32(p) == 5 {
			return flow.KindSFlow
		}
	}
	return flow.KindUnknown
}

// Decode decodes one datagram and appends its records to out. On error, out
// may still have gained the records decoded before the fault.
func (d *Decoder) Decode(dg Datagram, out []flow.Record) ([]flow.Record, Result, error) {
	var res Result
	src := dg.Source.Addr().Unmap()
	res.Kind = Protocol(dg.Payload)
	res.Observer = src
	// Every source gets state, even for a datagram that does not decode:
	// it is an exporter until it goes silent (and its metrics with it).
	seen := dg.Received
	if seen.IsZero() {
		seen = time.Now()
	}
	e, err := d.exporter(src, seen)
	if err != nil {
		return out, res, err
	}
	defer e.mu.Unlock()
	if res.Kind == flow.KindUnknown {
		if len(dg.Payload) < 4 {
			return out, res, reason.Errorf(reason.Short, "datagram of %d bytes from %s", len(dg.Payload), src)
		}
		return out, res, reason.Errorf(reason.Version, "datagram from %s is not NetFlow v5/v9, IPFIX or sFlow v5 (starts %x)", src, dg.Payload[:4])
	}
	n := len(out)
	switch res.Kind {
	case flow.KindNetFlowV5:
		var info netflowv5.Info
		out, info, err = netflowv5.Decode(dg.Payload, src, dg.Received, out)
		if err == nil {
			res.Lost = e.track(5<<32|uint64(info.EngineID), info.Sequence, uint32(info.Count))
		}
	case flow.KindNetFlowV9, flow.KindIPFIX:
		var info netflow.Info
		out, info, err = e.nf.Decode(dg.Payload, dg.Received, out)
		res.OptionsRecords, res.Held, res.Expired, res.Templates = info.OptionsRecords, info.Held, info.Expired, info.Templates
		res.Refused, res.IgnoredSets = info.Refused, info.IgnoredSets
		res.Domain = info.Domain
		if info.Version == 9 {
			res.Lost = e.track(9<<32|uint64(info.Domain), info.Sequence, 1)
		} else if info.Version == 10 && info.Held == 0 {
			// IPFIX counts data records; held sets leave the count unknown.
			res.Lost = e.track(10<<32|uint64(info.Domain), info.Sequence, uint32(info.MessageRecords))
		}
	case flow.KindSFlow:
		var info sflow.Info
		out, info, err = sflow.Decode(dg.Payload, src, dg.Received, out)
		res.BadHeaders, res.Discards, res.UnknownSamples = info.BadHeaders, info.Discards, info.UnknownSamples
		res.Domain = info.SubAgent
		if info.Agent.IsValid() {
			res.Observer = info.Agent.Unmap()
		}
		if err == nil {
			res.Lost = e.track(6<<32|uint64(info.SubAgent), info.Sequence, 1)
		}
	}
	res.Records = len(out) - n
	for i := n; i < len(out); i++ {
		out[i].ExporterAddr = src
	}
	if res.Records > 0 || res.OptionsRecords > 0 {
		e.proven.Store(true)
	}
	return out, res, err
}

// track checks a sequence number against the one expected in its space and
// returns how many were skipped. Numbers going backwards (a restart, or
// reordering) reset the expectation without counting a loss.
func (e *exporter) track(space uint64, seq, count uint32) uint64 {
	var next uint32
	var seen bool
	switch {
	case e.first.ok && e.first.space == space:
		next, seen = e.first.next, true
		e.first.next = seq + count
	case !e.first.ok && e.maxSeq > 0:
		e.first = seqSpace{ok: true, space: space, next: seq + count}
	default:
		next, seen = e.seq[space]
		if e.spaces() < e.maxSeq || seen {
			e.seq[space] = seq + count
		}
	}
	if !seen {
		return 0
	}
	gap := seq - next // wraps
	if gap == 0 || gap > 1<<30 {
		return 0
	}
	return uint64(gap)
}

// spaces is the number of sequence spaces the exporter has.
func (e *exporter) spaces() int {
	if e.first.ok {
		return len(e.seq) + 1
	}
	return len(e.seq)
}
