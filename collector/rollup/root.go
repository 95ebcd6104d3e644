package rollup

import (
	"cmp"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/DataDog/sketches-go/ddsketch/mapping"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

// Engine rolls flow records up into per-tick rows. It is a flow.Sink (the
// collector writes it after enrichment) and a lifecycle component: Start
// ticks on the wall clock. A replay drives it by event time instead:
// Write the records in time order and call Tick(t) as t advances, without
// Start.
type Engine struct {
	r   *reporter.Reporter
	cfg Configuration

	tickNs      int64
	tickSeconds float64
	ringLen     int
	decayFast   float64 // per tick: exp(-tick/SmoothingWindow)
	decayBase   float64 // exp(-tick/BaselineWindow)
	decayTalker float64 // exp(-tick/TalkerWindow)
	rttTicks    int
	idleTicks   int

	subs []Subscriber

	tickMu sync.Mutex // serialises ticks and the subscribers' calls
	mu     sync.Mutex // guards everything below

	started bool  // a bucket origin is set
	closed  int64 // index of the last closed bucket (time / tick)
	maxEnd  int64 // latest record end seen (ns), for event time

	lines     map[lineKey]*series
	projects  map[string]*series
	vms       map[string]*series
	services  map[serviceKey]*series
	exporters map[netip.Addr]*series
	other     [numScopes]*series
	counts    [numScopes]int // series per scope, other left out
	all       []*series
	// layout changes whenever a series joins or leaves all or is
	// relabelled (Snapshot.Layout); never 0.
	layout uint64

	rttMapping mapping.IndexMapping // of every RTT sketch
	rttBins    *binIndex            // its Index, faster (rttbins.go)
	// Its indexable range, read once: two interface calls a record were
	// 3 % of BenchmarkFlows/rollups+100rules.
	rttMinMs, rttMaxMs float64
	talkerScale        float64        // decay so far; stored talker counts are divided by it
	sampling           talkerSampling // which records feed the talker sketches (sampling.go)
	rttTick            int

	pre     preAggs       // records summed between folds (preagg.go)
	rttPend []*rttPending // handshake RTTs of each open bucket, by ring position (rttpend.go)
	rttFree []*rttPending
	// rttCompactFrom is rttCompactFrom, smaller in tests.
	rttCompactFrom int
	seriesIDs      uint64 // the last series.id given
	topBuf         []talkerCounter
	rttScratch     [rttReadSpan]float64 // the bins of an RTT quantile read
	snap           Snapshot

	viewOn   bool  // Provisional has been called: closing buckets carry what it did not read
	viewRead int64 // the last bucket Provisional read
	prov     Snapshot

	stats counters
	m     *metrics

	done chan struct{}
	wg   sync.WaitGroup
}

// counters are the engine's own counts, guarded by mu.
type counters struct {
	records, lateRecords, futureRecords, untimed uint64
	implausible                                  uint64 // records over the plausible counts, not added
	lateBytes, futureBytes                       float64
	overflow                                     [numScopes]uint64
	evicted                                      uint64
}

// New builds an engine; it holds no state until records arrive.
func New(r *reporter.Reporter, cfg Configuration) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ts := cfg.Tick.Seconds()
	e := &Engine{
		r: r, cfg: cfg,
		tickNs: int64(cfg.Tick), tickSeconds: ts, ringLen: cfg.ringLen(),
		decayFast:   math.Exp(-ts / cfg.SmoothingWindow.Seconds()),
		decayBase:   math.Exp(-ts / cfg.BaselineWindow.Seconds()),
		decayTalker: math.Exp(-ts / cfg.TalkerWindow.Seconds()),
		rttTicks:    int(cfg.RTTWindow / cfg.Tick),
		idleTicks:   int(cfg.IdleTimeout / cfg.Tick),
		lines:       map[lineKey]*series{},
		projects:    map[string]*series{},
		vms:         map[string]*series{},
		services:    map[serviceKey]*series{},
		exporters:   map[netip.Addr]*series{},
		talkerScale: 1,
		layout:      1,
		sampling:    newTalkerSampling(cfg.TalkerBudget, cfg.Tick),
	}
	if cfg.EventTime {
		// The records' own time says how far into its tick a flood is, as
		// the wall clock does live (Start).
		e.sampling.clock = func() time.Time { return time.Unix(0, e.maxEnd) }
	}
	e.pre = newPreAggs(e.ringLen)
	e.rttPend = make([]*rttPending, e.ringLen)
	e.rttCompactFrom = rttCompactFrom
	e.rttMapping = newRTTState(cfg.RTTAccuracy).cur.IndexMapping
	e.rttBins = newBinIndex(e.rttMapping)
	e.rttMinMs, e.rttMaxMs = e.rttMapping.MinIndexableValue(), e.rttMapping.MaxIndexableValue()
	e.m = newMetrics(r, e)
	return e, nil
}

// Name names the engine in lifecycle errors.
func (e *Engine) Name() string { return "rollups" }

// Configuration is the engine's configuration.
func (e *Engine) Configuration() Configuration { return e.cfg }

// Subscribe adds a subscriber; call it before Start (or before the first
// Tick of a replay).
func (e *Engine) Subscribe(s Subscriber) {
	e.tickMu.Lock()
	e.subs = append(e.subs, s)
	e.tickMu.Unlock()
}

// Start ticks on the wall clock every Tick, aligned on whole ticks; with
// EventTime it runs nothing (Write ticks).
func (e *Engine) Start() error {
	if e.cfg.EventTime {
		return nil
	}
	e.mu.Lock()
	if !e.started {
		e.origin(time.Now())
	}
	e.sampling.clock, e.sampling.since = time.Now, time.Now()
	e.mu.Unlock()
	e.done = make(chan struct{})
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			now := time.Now()
			next := now.Truncate(e.cfg.Tick).Add(e.cfg.Tick)
			t := time.NewTimer(next.Sub(now))
			select {
			case <-e.done:
				t.Stop()
				return
			case <-t.C:
			}
			e.Tick(time.Now())
		}
	}()
	return nil
}

// Stop ends the clock. With EventTime it publishes the ticks still open
// up to the last record's end.
func (e *Engine) Stop() error {
	if e.done != nil {
		close(e.done)
		e.wg.Wait()
		e.done = nil
	}
	if e.cfg.EventTime {
		e.mu.Lock()
		end, ok := e.maxEnd, e.started
		e.mu.Unlock()
		if ok {
			e.tick(time.Unix(0, end).Add(e.cfg.Delay+e.cfg.Tick), false)
		}
	}
	return nil
}

// origin sets the first open bucket: the one holding now-Delay.
func (e *Engine) origin(now time.Time) {
	e.started = true
	e.closed = floorDiv(now.Add(-e.cfg.Delay).UnixNano(), e.tickNs) - 1
	if e.cfg.EventTime {
		e.sampling.since = now // the first tick's start on the event clock
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Write adds records: each record's bytes and packets are spread evenly
// over its span: [Start, End] when the collector did not set Received, or
// when End is no later than Received and at most Delay before it (the
// exporter's clock agrees with ours); else [Received-duration, Received]
// (the exporter's clock is wrong; in a capture replay Received is the
// capture's time). Its other counts go to the tick its span ends in. Records that are not flows (interface counters,
// exporter statistics) are skipped. Safe for concurrent use.
func (e *Engine) Write(recs []flow.Record) error {
	e.mu.Lock()
	for i := range recs {
		e.add(&recs[i])
	}
	advance := e.cfg.EventTime && e.started && e.targetOf(e.maxEnd) > e.closed
	end := e.maxEnd
	e.mu.Unlock()
	if advance {
		e.tick(time.Unix(0, end), false)
	}
	return nil
}

// targetOf is the last bucket that may close at time now (ns).
func (e *Engine) targetOf(now int64) int64 {
	return floorDiv(now-int64(e.cfg.Delay), e.tickNs) - 1
}

// A flow record counting more than this many bytes or packets comes from
// a broken or hostile exporter (a 400 Gb/s line carries 2^53 bytes in two
// days): added, it made a line's rate about 10^19 bytes a second, firing
// every line-load rule of it for as long as the rule's window held it.
const (
	plausibleBytes   = 1 << 53
	plausiblePackets = 1 << 50
)

func (e *Engine) add(r *flow.Record) {
	if r.Counters != nil || r.Exporter != nil {
		return
	}
	if r.Bytes > plausibleBytes || r.Packets > plausiblePackets {
		e.stats.implausible++
		return
	}
	// Each time read once, as nanoseconds: time.Time's methods decode its
	// representation at every call, and comparing and subtracting them
	// was a fifth of this function. A time outside the years 1825-2115
	// counts as absent: nanoseconds since 1970 hold any difference of two
	// times within them, and a span is cut at 146 years, so that no sum
	// below overflows.
	recv, hasRecv := unixNano(r.Received)
	endNs, hasEnd := unixNano(r.End)
	startNs, hasStart := unixNano(r.Start)
	var dur int64 // r.Duration()
	if hasStart && hasEnd && endNs >= startNs {
		dur = min(endNs-startNs, 1<<62)
	}
	var start, end int64
	switch {
	case hasRecv && hasEnd && endNs <= recv && recv-endNs <= int64(e.cfg.Delay):
		// The exporter's clock agrees with ours (the record ended before it
		// arrived, within the delay): its own seconds. Anchoring it on its
		// receipt would move a fresh counter's bytes up to an active
		// timeout later.
		end = endNs
		start = end - dur
	case hasRecv:
		end = recv
		start = end - dur
	case hasEnd:
		end = endNs
		start = end
		if hasStart && startNs <= endNs {
			start = startNs
		}
	default:
		e.stats.untimed++
		return
	}
	e.stats.records++
	if !e.started {
		e.origin(time.Unix(0, end))
	}
	if end > e.maxEnd {
		e.maxEnd = end
	}
	bytes, packets := float64(r.Bytes), float64(r.Packets)
	lo, hi := e.closed+1, e.closed+int64(e.ringLen)
	sIdx, eIdx := floorDiv(start, e.tickNs), floorDiv(end, e.tickNs)
	if eIdx < lo {
		e.stats.lateRecords++
		e.stats.lateBytes += bytes
		return
	}
	if sIdx > hi {
		e.stats.futureRecords++
		e.stats.futureBytes += bytes
		return
	}
	first, last := max(sIdx, lo), min(eIdx, hi)
	events := eIdx <= hi // the record's own tick is open
	if !events {
		e.stats.futureRecords++
	}

	// The record's pre-aggregate: one lookup (see preagg.go).
	k := aggKey{exporter: r.ObserverIP, inName: r.InIfName, outName: r.OutIfName,
		srcVS: r.Src.VSphere, dstVS: r.Dst.VSphere, srcNet: r.Src.Network, dstNet: r.Dst.Network,
		last: last, inIf: r.InIf, outIf: r.OutIf, proto: r.Proto, events: events}
	if hasPorts(r.Proto) {
		k.port = serverPortOf(r)
	}
	p := &e.pre
	idx, slot := p.find(&k)
	if idx < 0 {
		idx = e.newAgg(&k, slot, r)
	}
	a := &p.aggs[idx]
	a.records++

	// Spread bytes and packets over the open buckets of the span, stored
	// by offset back from last.
	sp := p.spread[idx*p.stride : idx*p.stride+2*int(last-first+1)]
	inside := 1.0
	if end == start {
		sp[0] += bytes
		sp[1] += packets
	} else {
		dur := float64(end - start)
		inside = 0
		off := 2 * int(last-first)
		for b := first; b <= last; b++ {
			bs, be := max(b*e.tickNs, start), min((b+1)*e.tickNs, end)
			f := float64(be-bs) / dur
			sp[off] += bytes * f
			sp[off+1] += packets * f
			off -= 2
			inside += f
		}
		if sIdx < lo {
			e.stats.lateBytes += bytes * float64(lo*e.tickNs-start) / dur
		}
		if eIdx > hi {
			e.stats.futureBytes += bytes * float64(end-(hi+1)*e.tickNs) / dur
		}
	}
	a.maxOff = max(a.maxOff, int(last-first))

	// What the record says of TCP.
	if events {
		a.ev.flows++
	}
	if r.Proto == 6 {
		const syn, ack = 0x02, 0x10
		if events {
			a.ev.tcpPackets += uint32(min(r.Packets, math.MaxUint32))
			a.ev.retrans += r.TCP.Retransmissions
			a.ev.zeroWins += r.TCP.ZeroWindows
			// A biflow's SYN without ACK may be its reverse direction's.
			if r.TCPFlags&(syn|ack) == syn || len(r.Extra) > 0 && reverseFlags(r)&(syn|ack) == syn {
				a.ev.syns++
			}
		}
		if rtt := r.TCP.RTTClient + r.TCP.RTTServer; rtt > 0 {
			// The quantiles take every record's RTT: those of the
			// connections active in the window (a connection weighs by its
			// records); the count, each handshake once.
			if events && countsHandshake(r, k.port) {
				a.ev.handshakes++
			}
			a.rttSeen = true
			// The sketches share one mapping: the bin is worked out once.
			rttMs := float64(rtt) / float64(time.Millisecond)
			if rttMs > e.rttMinMs && rttMs < e.rttMaxMs {
				if bin := int32(e.rttBins.index(rttMs)); !a.addRTT(bin) {
					if p.rtt.full() {
						e.foldRTT()
					}
					p.rtt.add(uint64(idx)<<32 | uint64(uint32(bin)))
				}
			} else {
				p.rttOther = append(p.rttOther, rttOther{agg: int32(idx), ms: rttMs})
			}
		}
	}

	if b := bytes * inside; a.nTalk > 0 && r.SrcAddr.IsValid() && b > 0 {
		if w := e.sampling.weight(b) / e.talkerScale; w > 0 {
			addr := r.SrcAddr.Unmap()
			if len(p.talkers.entries) < pendingTalkersFrom {
				// A table this small stays in the caches: straight in.
				if p.talkers.full(a.nTalk) {
					e.foldTalkers()
				}
				p.talkers.add(a.talk[:a.nTalk], addr, addrHash(addr), w)
			} else {
				p.pending = append(p.pending, pendingTalker{agg: int32(idx), addr: addr, w: w})
				if len(p.pending) == pendingTalkers {
					e.flushTalkers()
				}
			}
		}
	}
}

// countsHandshake says whether r, whose server port is port, is the
// record that counts its connection's handshake. spanflow's meter
// puts a connection's RTT on every record of both its directions, every
// active timeout, and each counted as a handshake: three connections of
// 20 s exported every 5 s made 27 (TestHandshakesOnce). The records that
// saw the handshake have SYN in their flags (the meter clears them at each
// export); of the two directions', the one towards the server port counts
// (both directions have the same server port). A record without flags
// counts.
func countsHandshake(r *flow.Record, port uint16) bool {
	if r.NoTCPFlags || r.TCPFlags == 0 {
		return true
	}
	if r.TCPFlags&0x02 == 0 {
		return false
	}
	if r.SrcPort == r.DstPort {
		return r.SrcAddr.Compare(r.DstAddr) <= 0
	}
	return r.DstPort == port
}

// Bounds of the Unix seconds of a record's times (1825-2115): the
// difference of two of them in nanoseconds fits an int64.
const minUnixSec, maxUnixSec = -4_600_000_000, 4_600_000_000

// unixNano is t's Unix time in nanoseconds; false for the zero time and
// times nanoseconds cannot hold.
func unixNano(t time.Time) (int64, bool) {
	s := t.Unix()
	if s < minUnixSec || s > maxUnixSec {
		return 0, false
	}
	return s*1e9 + int64(t.Nanosecond()), true
}

// project is an end's project: vCenter's, else the networks file's.
func project(ep *flow.Endpoint) string {
	if ep.VSphere != nil && ep.VSphere.Project != "" {
		return ep.VSphere.Project
	}
	if ep.Network != nil {
		return ep.Network.Project
	}
	return ""
}

// lookup finds or makes a series of a scope; a full scope answers with its
// "other" series and counts the record.
func lookup[K comparable](e *Engine, m map[K]*series, k K, scope int, name func() (string, map[string]string)) *series {
	if s, ok := m[k]; ok {
		return s
	}
	if e.counts[scope] >= e.cfg.MaxSeries {
		e.stats.overflow[scope]++
		if e.other[scope] == nil {
			e.other[scope] = e.newSeries(scope, OtherKey, map[string]string{"overflow": "true"})
		}
		return e.other[scope]
	}
	key, labels := name()
	s := e.newSeries(scope, key, labels)
	s.mapKey = k
	m[k] = s
	e.counts[scope]++
	return s
}

func (e *Engine) line(exp netip.Addr, name string, index uint32) *series {
	if name != "" {
		index = 0
	}
	return lookup(e, e.lines, lineKey{exp, name, index}, scopeLine, func() (string, map[string]string) {
		ifc := name
		if ifc == "" {
			ifc = strconv.FormatUint(uint64(index), 10)
		}
		return exp.String() + " " + ifc, map[string]string{"exporter": exp.String(), "interface": ifc}
	})
}

func (e *Engine) project(p string) *series {
	return lookup(e, e.projects, p, scopeProject, func() (string, map[string]string) {
		return p, map[string]string{"project": p}
	})
}

// vm is the series of VM v, whose project is p ("" when unknown): its row
// carries the project, so that rules narrowed to a project (`project:`
// with `vm:`) judge its VMs. A VM moved to another project is relabelled
// (a new labels map: snapshots already handed out keep theirs).
func (e *Engine) vm(v, p string) *series {
	s := lookup(e, e.vms, v, scopeVM, func() (string, map[string]string) {
		return v, vmLabels(v, p)
	})
	if p != s.project && p != "" && s.key != OtherKey {
		if s.row.Labels["project"] != p {
			s.row.Labels = vmLabels(v, p)
			e.layout++
		}
		s.project = p
	}
	return s
}

func vmLabels(v, p string) map[string]string {
	if p == "" {
		return map[string]string{"vm": v}
	}
	return map[string]string{"vm": v, "project": p}
}

func (e *Engine) service(k serviceKey) *series {
	return lookup(e, e.services, k, scopeService, func() (string, map[string]string) {
		p, port := protoName(k.proto), strconv.Itoa(int(k.port))
		return p + "/" + port, map[string]string{"protocol": p, "port": port}
	})
}

func (e *Engine) exporter(a netip.Addr) *series {
	return lookup(e, e.exporters, a, scopeExporter, func() (string, map[string]string) {
		return a.String(), map[string]string{"exporter": a.String()}
	})
}

func (e *Engine) newSeries(scope int, key string, labels map[string]string) *series {
	e.seriesIDs++
	s := &series{scope: scope, key: key, ring: make([]bucket, e.ringLen), born: e.closed + 1, pos: len(e.all), id: e.seriesIDs}
	s.row = Row{Scope: scopeNames[scope], Key: key, Labels: labels}
	if (scope == scopeLine || scope == scopeProject) && e.cfg.TopTalkers > 0 {
		s.talkers = newSpaceSaving(e.cfg.TalkerCounters)
	}
	e.all = append(e.all, s)
	e.layout++
	return s
}

// Tick closes every bucket that ends at or before now-Delay, hands the
// snapshot of each to every subscriber, in order, and returns the last.
// The snapshot (its rows, their maps and talkers) is the engine's: it is
// valid until the next one. Snapshot.Time is the end of the last closed
// bucket. A jump past the ring (seconds that can hold no traffic) closes
// its empty seconds at once: they age the smoothed values, and one
// snapshot stands for them.
func (e *Engine) Tick(now time.Time) *Snapshot {
	return e.tick(now, true)
}

func (e *Engine) tick(now time.Time, always bool) *Snapshot {
	e.tickMu.Lock()
	defer e.tickMu.Unlock()
	e.mu.Lock()
	if !e.started {
		e.origin(now)
	}
	target := e.targetOf(now.UnixNano())
	steps := max(target-e.closed, 0)
	if steps == 0 && !always {
		e.mu.Unlock()
		return nil
	}
	// Every second that may hold traffic is published on its own, as the
	// wall clock publishes one a second: a replay whose records end
	// seconds apart (a 5 s active timeout), or a late tick, judged the
	// rules on the last second only and missed what the others held.
	for n := 0; e.closed+1 < target && n < e.ringLen; n++ {
		e.fold() // the bucket about to close holds every record written
		e.advance(e.closed + 1)
		e.publish()
	}
	if target > e.closed {
		e.fold()
	}
	e.advance(target)
	e.sampling.tick(steps, now)
	e.publish()
	e.mu.Unlock()
	return &e.snap
}

// publish hands the snapshot of the last closed bucket to every
// subscriber; e.mu is held, and held again on return.
func (e *Engine) publish() {
	e.buildSnapshot()
	e.mu.Unlock()
	for _, s := range e.subs {
		s.Rollup(&e.snap)
	}
	e.m.ticks.Inc()
	e.mu.Lock()
}

// advance closes buckets up to target and returns how many it closed.
func (e *Engine) advance(target int64) int64 {
	steps := target - e.closed
	if steps <= 0 {
		return 0
	}
	n := min(steps, int64(e.ringLen))
	for range n {
		e.closeBucket(e.closed + 1)
		e.closed++
	}
	if rest := steps - n; rest > 0 {
		e.skip(rest)
		e.closed += rest
	}
	e.evict()
	return steps
}

// closeBucket ends bucket b in every series.
func (e *Engine) closeBucket(b int64) {
	p := int(b % int64(e.ringLen))
	ts := e.tickSeconds
	for _, s := range e.all {
		bk := s.ring[p]
		s.ring[p] = bucket{}
		s.last = bk
		if e.viewOn {
			s.carry[0] += bk.bytes - bk.shownBytes
			s.carry[1] += bk.packets - bk.shownPackets
		}
		raw := [3]float64{bk.bytes / ts, bk.packets / ts, float64(bk.flows) / ts}
		if !s.primed {
			s.smooth, s.baseline, s.primed = raw, raw[0], true
		} else {
			// FastNetMon's form: new + exp(-tick/tau) * (old - new).
			for i := range raw {
				s.smooth[i] = raw[i] + e.decayFast*(s.smooth[i]-raw[i])
			}
			s.baseline = raw[0] + e.decayBase*(s.baseline-raw[0])
		}
		if bk.empty() {
			s.idle++
		} else {
			s.idle = 0
		}
	}
	e.releaseRTT(p)
	e.decayTalkers(e.decayTalker)
	if e.rttTick++; e.rttTick >= e.rttTicks {
		e.rttTick = 0
		for _, s := range e.all {
			if s.rtt != nil {
				s.rtt.rotate()
			}
		}
	}
}

// skip closes n empty buckets at once (a jump in time past the ring).
func (e *Engine) skip(n int64) {
	df, db := math.Pow(e.decayFast, float64(n)), math.Pow(e.decayBase, float64(n))
	for _, s := range e.all {
		s.last = bucket{}
		for i := range s.smooth {
			s.smooth[i] *= df
		}
		s.baseline *= db
		s.idle += int(min(n, math.MaxInt32))
		if s.rtt != nil && n >= int64(e.rttTicks) {
			s.rtt.cur.Clear()
			s.rtt.prev.Clear()
			s.rtt.dirty = true
		}
	}
	e.decayTalkers(math.Pow(e.decayTalker, float64(n)))
}

func (e *Engine) decayTalkers(f float64) {
	e.talkerScale *= f
	if e.talkerScale > 1e-100 {
		return
	}
	// Renormalise before the stored counts overflow.
	for _, s := range e.all {
		if s.talkers != nil {
			s.talkers.scale(e.talkerScale)
		}
	}
	e.talkerScale = 1
}

// evict forgets series idle for IdleTimeout.
func (e *Engine) evict() {
	for i := 0; i < len(e.all); {
		s := e.all[i]
		if s.idle < e.idleTicks {
			i++
			continue
		}
		e.removeSeries(s)
		e.stats.evicted++
	}
}

func (e *Engine) removeSeries(s *series) {
	e.layout++
	last := len(e.all) - 1
	e.all[s.pos] = e.all[last]
	e.all[s.pos].pos = s.pos
	e.all[last] = nil
	e.all = e.all[:last]
	if s.key == OtherKey && e.other[s.scope] == s {
		e.other[s.scope] = nil
		return
	}
	e.counts[s.scope]--
	switch s.scope {
	case scopeLine:
		delete(e.lines, s.mapKey.(lineKey))
	case scopeProject:
		delete(e.projects, s.mapKey.(string))
	case scopeVM:
		delete(e.vms, s.mapKey.(string))
	case scopeService:
		delete(e.services, s.mapKey.(serviceKey))
	case scopeExporter:
		delete(e.exporters, s.mapKey.(netip.Addr))
	}
}

// buildSnapshot fills e.snap with one row per series, sorted by scope and
// key.
func (e *Engine) buildSnapshot() {
	e.snap.Time = time.Unix(0, (e.closed+1)*e.tickNs).UTC()
	e.snap.Rows = e.snap.Rows[:0]
	e.snap.Layout = e.layout
	e.sortSeries()
	for _, s := range e.all {
		e.fillRow(s, &s.row, &s.last, e.tickSeconds)
		e.snap.Rows = append(e.snap.Rows, s.row)
	}
}

// sortSeries orders e.all by scope and key.
func (e *Engine) sortSeries() {
	slices.SortFunc(e.all, func(a, b *series) int {
		if c := cmp.Compare(a.scope, b.scope); c != 0 {
			return c
		}
		return cmp.Compare(a.key, b.key)
	})
	for i, s := range e.all {
		s.pos = i
	}
}

// fillRow sets a row's values from bucket bk, which covers secs seconds,
// and the series' smoothed values, RTT sketches and talkers.
func (e *Engine) fillRow(s *series, row *Row, bk *bucket, secs float64) {
	v := &row.Values // the same values every tick: overwritten, not cleared
	v.set(vBytes, bk.bytes/secs)
	v.set(vBits, 8*bk.bytes/secs)
	v.set(vPackets, bk.packets/secs)
	v.set(vFlows, float64(bk.flows)/secs)
	v.set(vBytesSmoothed, s.smooth[0])
	v.set(vBitsSmoothed, 8*s.smooth[0])
	v.set(vPacketsSmoothed, s.smooth[1])
	v.set(vFlowsSmoothed, s.smooth[2])
	v.set(vBaseline, s.baseline)
	v.set(vRetrans, float64(bk.retrans)/secs)
	v.set(vZeroWindows, float64(bk.zeroWins)/secs)
	v.set(vHandshakes, float64(bk.handshakes)/secs)
	v.set(vSYNs, float64(bk.syns)/secs)
	v.set(vAge, float64(e.closed+1-s.born)*e.tickSeconds)
	if bk.tcpPackets > 0 {
		v.set(vRetransRatio, float64(bk.retrans)/float64(bk.tcpPackets))
	} else {
		v.del(vRetransRatio)
	}
	if q, ok := s.rtt.quantilesOf(e.rttScratch[:]); ok {
		v.set(vRTTp50, q[0])
		v.set(vRTTp95, q[1])
		v.set(vRTTp99, q[2])
	} else {
		v.del(vRTTp50)
		v.del(vRTTp95)
		v.del(vRTTp99)
	}
	row.Top = row.Top[:0]
	if s.talkers != nil {
		// A steady sender of r bytes a tick holds r d / (1 - d) once the
		// tick's decay d is applied: its rate is the count (1 - d) / d.
		talkerRate := e.talkerScale * (1 - e.decayTalker) / (e.decayTalker * e.tickSeconds)
		e.topBuf = s.talkers.top(e.topBuf, e.cfg.TopTalkers)
		for _, t := range e.topBuf {
			row.Top = append(row.Top, Talker{Addr: t.addr, BytesPerSecond: t.count * talkerRate})
		}
	}
}

// Provisional is for a live view that cannot wait for Delay: it reads the
// seconds that ended by now-lag and that the engine has not closed yet
// (it closes each Delay after its end), and hands fn their snapshot. Its
// rates count what arrived since the previous call: the bytes and packets
// of the seconds read now, plus those that came later for seconds read
// before (so the bytes of successive reads add up to every byte the engine
// counted, none twice); flows and TCP counts are those of the seconds read
// now, as they stand; smoothed values, baselines, RTT quantiles and
// talkers are those of the engine (the first two as of its last closed
// second). Snapshot.Time is the end of the last second read. fn is not
// called when no second ended since the previous call (or lag >= Delay:
// the engine's own ticks are then as fresh). fn must not keep the
// snapshot; ticks wait while it runs. Call it from one goroutine.
func (e *Engine) Provisional(now time.Time, lag time.Duration, fn func(*Snapshot)) {
	e.tickMu.Lock()
	defer e.tickMu.Unlock()
	e.mu.Lock()
	if !e.started {
		e.origin(now)
	}
	vb := min(floorDiv(now.UnixNano()-int64(lag), e.tickNs)-1, e.closed+int64(e.ringLen))
	if !e.viewOn { // the first read is of one second (with what came before it)
		e.viewOn, e.viewRead = true, vb-1
	}
	if lag >= e.cfg.Delay || vb <= e.viewRead {
		e.mu.Unlock()
		return
	}
	e.fold()
	rl := int64(e.ringLen)
	n := vb - e.viewRead // seconds since the last read
	from := max(e.viewRead, e.closed)
	e.sortSeries()
	e.prov.Time = time.Unix(0, (vb+1)*e.tickNs).UTC()
	e.prov.Rows = e.prov.Rows[:0]
	e.prov.Layout = e.layout
	for _, s := range e.all {
		var pb bucket
		pb.bytes, pb.packets = s.carry[0], s.carry[1]
		s.carry = [2]float64{}
		for b := e.closed + 1; b <= vb; b++ {
			bk := &s.ring[b%rl]
			pb.bytes += bk.bytes - bk.shownBytes
			pb.packets += bk.packets - bk.shownPackets
			bk.shownBytes, bk.shownPackets = bk.bytes, bk.packets
			if b > from {
				pb.flows += bk.flows
				pb.handshakes += bk.handshakes
				pb.syns += bk.syns
				pb.retrans += bk.retrans
				pb.tcpPackets += bk.tcpPackets
				pb.zeroWins += bk.zeroWins
			}
		}
		if s.prow.Scope == "" {
			s.prow = Row{Scope: s.row.Scope, Key: s.row.Key}
		}
		s.prow.Labels = s.row.Labels
		e.fillRow(s, &s.prow, &pb, float64(n)*e.tickSeconds)
		e.prov.Rows = append(e.prov.Rows, s.prow)
	}
	e.viewRead = vb
	e.mu.Unlock()
	fn(&e.prov)
}

// Late is how many records ended before the open ticks and were not
// rolled up (spanflow_rollup_late_records_total): a replay not in time
// order, or a delay shorter than the exporters' active timeout.
func (e *Engine) Late() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stats.lateRecords
}

// State is what the engine holds, counted: the memory bound in numbers.
type State struct {
	Series         map[string]int // by scope, the overflow series included
	TalkerCounters int            // Space-Saving counters held, all rows together
	RTTSketches    int            // series holding RTT sketches (three each)
	RingBuckets    int            // buckets held, all series together
}

// State counts what the engine holds now.
func (e *Engine) State() State {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fold()
	st := State{Series: map[string]int{}}
	for _, s := range e.all {
		st.Series[scopeNames[s.scope]]++
		st.RingBuckets += len(s.ring)
		if s.talkers != nil {
			st.TalkerCounters += len(s.talkers.slots)
		}
		if s.rtt != nil {
			st.RTTSketches++
		}
	}
	return st
}
