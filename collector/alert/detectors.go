package alert

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/spanflow/spanflow/collector/rollup"
	"github.com/spanflow/spanflow/internal/addrhash"
	"github.com/spanflow/spanflow/internal/flow"
)

// Detectors configures the built-in detectors (the rules file's
// detectors: key).
type Detectors struct {
	NewPeer  NewPeerDetector  `yaml:"new_peer"`
	PortScan PortScanDetector `yaml:"port_scan"`
	HalfOpen HalfOpenDetector `yaml:"half_open"`
	Drop     DropDetector     `yaml:"drop"`
}

// NewPeerDetector: a project talks to an external address it did not talk
// to during the learning period.
type NewPeerDetector struct {
	Enabled  bool          `yaml:"enabled"`
	Learning time.Duration `yaml:"learning"` // from the first flow of each project
	// Hold: the alert resolves this long after the last flow with the peer.
	Hold     time.Duration `yaml:"hold"`
	Projects []string      `yaml:"projects"`  // empty: every project
	MaxPeers int           `yaml:"max_peers"` // remembered (project, peer) pairs, all projects together
	Severity string        `yaml:"severity"`
}

// PortScanDetector: one source reaches more distinct destination ports than
// Ports within Window.
type PortScanDetector struct {
	Enabled    bool          `yaml:"enabled"`
	Ports      int           `yaml:"ports"`
	Window     time.Duration `yaml:"window"`
	MaxSources int           `yaml:"max_sources"` // sources tracked per window; more are counted
	Severity   string        `yaml:"severity"`
}

// HalfOpenDetector: SYNs without answers. From the rollups (unanswered
// SYNs per second of a scope, when SYNsPerSecond > 0) and from the flows
// (flows with SYN and no ACK towards one destination address per window,
// when Flows > 0).
type HalfOpenDetector struct {
	Enabled       bool          `yaml:"enabled"`
	SYNsPerSecond float64       `yaml:"syns_per_second"`
	Scope         string        `yaml:"scope"`
	For           time.Duration `yaml:"for"`
	Flows         int           `yaml:"flows"`
	Window        time.Duration `yaml:"window"`
	MaxTargets    int           `yaml:"max_targets"`
	Severity      string        `yaml:"severity"`
}

// DropDetector: bytes per second below Ratio of the slow baseline for For.
type DropDetector struct {
	Enabled     bool          `yaml:"enabled"`
	Ratio       float64       `yaml:"ratio"`
	Clear       float64       `yaml:"clear"`
	MinBaseline float64       `yaml:"min_baseline"` // bytes per second
	Scope       string        `yaml:"scope"`
	For         time.Duration `yaml:"for"`
	Severity    string        `yaml:"severity"`
}

// DefaultDetectors are the settings of a detector the file enables without
// saying more.
func DefaultDetectors() Detectors {
	return Detectors{
		NewPeer:  NewPeerDetector{Learning: 10 * time.Minute, Hold: 2 * time.Minute, MaxPeers: 100000, Severity: "warning"},
		PortScan: PortScanDetector{Ports: 100, Window: time.Minute, MaxSources: 10000, Severity: "warning"},
		HalfOpen: HalfOpenDetector{SYNsPerSecond: 200, Scope: rollup.ScopeProject, For: 5 * time.Second,
			Flows: 0, Window: 10 * time.Second, MaxTargets: 10000, Severity: "warning"},
		Drop: DropDetector{Ratio: 0.2, Clear: 0.5, MinBaseline: 125000, Scope: rollup.ScopeLine, For: 10 * time.Second, Severity: "warning"},
	}
}

// Names of the detectors' alerts (their rule label).
const (
	RuleNewPeer      = "new_external_peer"
	RulePortScan     = "port_scan"
	RuleHalfOpen     = "half_open_storm"
	RuleHalfOpenFlow = "half_open_storm_flows"
	RuleDrop         = "traffic_drop"
)

func (d *Detectors) validate() error {
	var errs []error
	for _, x := range []struct {
		name string
		v    float64
	}{{"half_open: syns_per_second", d.HalfOpen.SYNsPerSecond}, {"drop: ratio", d.Drop.Ratio},
		{"drop: clear", d.Drop.Clear}, {"drop: min_baseline", d.Drop.MinBaseline}} {
		if math.IsNaN(x.v) || math.IsInf(x.v, 0) {
			errs = append(errs, fmt.Errorf("%s %v: want a finite number", x.name, x.v))
		}
	}
	if d.NewPeer.Enabled && (d.NewPeer.Learning < 0 || d.NewPeer.Hold <= 0 || d.NewPeer.MaxPeers <= 0) {
		errs = append(errs, errors.New("new_peer: learning must be ≥ 0, hold and max_peers positive"))
	}
	if d.PortScan.Enabled && (d.PortScan.Ports <= 0 || d.PortScan.Window <= 0 || d.PortScan.MaxSources <= 0) {
		errs = append(errs, errors.New("port_scan: ports, window and max_sources must be positive"))
	}
	if d.HalfOpen.Enabled {
		if _, ok := scopeSelectors[d.HalfOpen.Scope]; !ok {
			errs = append(errs, fmt.Errorf("half_open: unknown scope %q", d.HalfOpen.Scope))
		}
		if d.HalfOpen.SYNsPerSecond <= 0 && d.HalfOpen.Flows <= 0 {
			errs = append(errs, errors.New("half_open: give syns_per_second or flows"))
		}
		if d.HalfOpen.Flows > 0 && (d.HalfOpen.Window <= 0 || d.HalfOpen.MaxTargets <= 0) {
			errs = append(errs, errors.New("half_open: window and max_targets must be positive"))
		}
	}
	if d.Drop.Enabled {
		if _, ok := scopeSelectors[d.Drop.Scope]; !ok {
			errs = append(errs, fmt.Errorf("drop: unknown scope %q", d.Drop.Scope))
		}
		if d.Drop.Ratio <= 0 || d.Drop.Ratio >= 1 || d.Drop.Clear < d.Drop.Ratio {
			errs = append(errs, errors.New("drop: ratio must be in (0, 1) and clear at least ratio"))
		}
	}
	return errors.Join(errs...)
}

// snapshotRules are the detectors that read snapshots, as rules.
func (d *Detectors) snapshotRules() []*Rule {
	var out []*Rule
	if h := d.HalfOpen; h.Enabled && h.SYNsPerSecond > 0 {
		thr := h.SYNsPerSecond
		out = append(out, &Rule{Name: RuleHalfOpen, Value: rollup.UnansweredSYNsPerSecond, Scope: h.Scope,
			Above: &thr, For: h.For, Severity: h.Severity})
	}
	if dr := d.Drop; dr.Enabled {
		thr, clear := dr.Ratio, dr.Clear
		out = append(out, &Rule{Name: RuleDrop, Value: BaselineRatio, Scope: dr.Scope, Below: &thr, Clear: &clear,
			For: dr.For, Severity: dr.Severity, MinBaseline: dr.MinBaseline})
	}
	return out
}

// FlowDetectors are the detectors that read flows: a flow.Sink beside the
// rollups. Time is the flows' event time (Received, else End); alerts are
// resolved as it advances (Write, or Rollup/Advance on each tick).
type FlowDetectors struct {
	mu   sync.Mutex
	cfg  Detectors
	emit func(Alert)
	// Alerts found under mu wait in pending; they are emitted (their
	// Discover links made, handed to the sinks) after mu is released,
	// under emitMu, taken before mu is released so that they leave in
	// the order they were found. A storm of 100,000 new peers resolving
	// together kept mu, and so every worker's flows, 1.5 s.
	pending []Alert
	emitMu  sync.Mutex
	kibana  string
	view    string
	now     time.Time

	// new peers
	projects map[string]*projectPeers
	last     *projectPeers // the project of the last external flow: a one-entry cache
	npeers   int
	newPeers map[peerKey]*peerAlert
	// peersLooked: when advance last looked over newPeers (event time)
	peersLooked time.Time

	scan     windowCounter
	halfOpen windowCounter

	// Overflow counts state refused for bounds (peers, sources, targets).
	Overflow func(detector string)
}

// projectPeers are the external peers a project talked to.
type projectPeers struct {
	name  string
	from  time.Time // first flow
	known peerSet
}

type peerKey struct {
	project string
	peer    netip.Addr
}

type peerAlert struct {
	a    Alert
	last time.Time
}

// NewFlowDetectors returns the flow detectors of d; nil when none is enabled.
func NewFlowDetectors(d Detectors, kibanaURL, dataView string, emit func(Alert)) *FlowDetectors {
	if !d.NewPeer.Enabled && !d.PortScan.Enabled && !(d.HalfOpen.Enabled && d.HalfOpen.Flows > 0) {
		return nil
	}
	fd := &FlowDetectors{cfg: d, emit: emit, kibana: kibanaURL, view: dataView,
		projects: map[string]*projectPeers{}, newPeers: map[peerKey]*peerAlert{}, Overflow: func(string) {}}
	fd.scan = windowCounter{window: d.PortScan.Window, limit: d.PortScan.Ports, max: d.PortScan.MaxSources, distinct: true}
	fd.halfOpen = windowCounter{window: d.HalfOpen.Window, limit: d.HalfOpen.Flows, max: d.HalfOpen.MaxTargets}
	return fd
}

func eventTime(r *flow.Record) time.Time {
	if !r.Received.IsZero() {
		return r.Received
	}
	return r.End
}

func projectOf(e *flow.Endpoint) string {
	if e.VSphere != nil && e.VSphere.Project != "" {
		return e.VSphere.Project
	}
	if e.Network != nil {
		return e.Network.Project
	}
	return ""
}

const (
	tcpSYN = 0x02
	tcpACK = 0x10
)

// Write reads flows (flow.Sink).
func (fd *FlowDetectors) Write(recs []flow.Record) error {
	fd.mu.Lock()
	defer fd.unlockAndEmit()
	for i := range recs {
		r := &recs[i]
		if r.Counters != nil || r.Exporter != nil {
			continue
		}
		t := eventTime(r)
		if t.After(fd.now) {
			fd.advance(t)
		}
		if fd.cfg.NewPeer.Enabled && r.Locality == "external" {
			fd.peer(r, t)
		}
		p := probeOf(r)
		synOnly := r.Proto == 6 && p.flags&tcpSYN != 0 && p.flags&tcpACK == 0
		if fd.cfg.PortScan.Enabled && (r.Proto == 6 || r.Proto == 17) && p.probes(r.Proto) {
			if fd.scan.add(p.src, p.dport) == crossed {
				fd.fireWindowed(RulePortScan, fd.cfg.PortScan.Severity, "source", p.src, projectOf(p.srcEnd), t, fd.cfg.PortScan.Ports+1)
			} else if fd.scan.overflowed {
				fd.scan.overflowed = false
				fd.Overflow("port_scan")
			}
		}
		if fd.cfg.HalfOpen.Enabled && fd.cfg.HalfOpen.Flows > 0 && synOnly {
			if fd.halfOpen.add(p.dst, 0) == crossed {
				fd.fireWindowed(RuleHalfOpenFlow, fd.cfg.HalfOpen.Severity, "destination", p.dst, projectOf(p.dstEnd), t, fd.cfg.HalfOpen.Flows+1)
			} else if fd.halfOpen.overflowed {
				fd.halfOpen.overflowed = false
				fd.Overflow("half_open")
			}
		}
	}
	return nil
}

// scanProbe is a flow as a scan's probe would be sent: the record itself, or
// the reverse direction of a biflow (RFC 5103, softflowd -b) when that
// direction sent a SYN without ACK (netflow.reverse_tcp_control_bits): an
// exporter that orders a biflow's ends by address puts a scanner with the
// higher address second, its SYNs in the reverse counts and the target's
// RSTs (with ACK) in the record's own flags, and neither detector saw it.
type scanProbe struct {
	src, dst       netip.Addr
	srcEnd, dstEnd *flow.Endpoint
	sport, dport   uint16
	flags          uint16
}

func probeOf(r *flow.Record) scanProbe {
	if r.Proto == 6 && len(r.Extra) > 0 && r.TCPFlags&(tcpSYN|tcpACK) != tcpSYN {
		for i := range r.Extra {
			if x := &r.Extra[i]; x.Name == "reverse_tcp_control_bits" && !x.IsStr && x.Raw == nil && x.Num&(tcpSYN|tcpACK) == tcpSYN {
				return scanProbe{src: r.DstAddr, dst: r.SrcAddr, srcEnd: &r.Dst, dstEnd: &r.Src,
					sport: r.DstPort, dport: r.SrcPort, flags: uint16(x.Num)}
			}
		}
	}
	return scanProbe{src: r.SrcAddr, dst: r.DstAddr, srcEnd: &r.Src, dstEnd: &r.Dst, sport: r.SrcPort, dport: r.DstPort, flags: r.TCPFlags}
}

// probes says whether a flow may be a scan's probe rather than an answer.
// A TCP flow with flags is one when it has no ACK (SYN, FIN, Xmas scans);
// with an ACK it belongs to a connection, either side, and its ports say
// nothing: a database on port 50000 answering 200 clients, whose ports
// were below 50000 more often than not, was a port scan by them. A UDP
// flow, or a TCP flow without flags, is one when its destination port is
// below its source port (an answer goes back to the client's higher port).
func (p *scanProbe) probes(proto uint8) bool {
	if proto == 6 && p.flags != 0 {
		return p.flags&tcpACK == 0
	}
	return p.dport < p.sport
}

func (fd *FlowDetectors) peer(r *flow.Record, t time.Time) {
	sp, dp := projectOf(&r.Src), projectOf(&r.Dst)
	var project string
	var peer netip.Addr
	switch {
	case sp != "" && dp == "":
		project, peer = sp, r.DstAddr
	case dp != "" && sp == "":
		project, peer = dp, r.SrcAddr
	default:
		return
	}
	if ps := fd.cfg.NewPeer.Projects; len(ps) > 0 && !contains(ps, project) {
		return
	}
	pp := fd.last
	if pp == nil || pp.name != project {
		if pp = fd.projects[project]; pp == nil {
			pp = &projectPeers{name: project, from: t}
			fd.projects[project] = pp
		}
		fd.last = pp
	}
	if known, alerting := pp.known.has(peer); known {
		// Its entry says whether it holds an alert: the flows of the
		// others, nearly all, skip the alerts' map.
		if alerting {
			if pa := fd.newPeers[peerKey{project, peer}]; pa != nil {
				pa.last = t
			}
		}
		return
	}
	if fd.npeers >= fd.cfg.NewPeer.MaxPeers {
		fd.Overflow("new_peer")
		return
	}
	fd.npeers++
	from := pp.from
	if t.Sub(from) < fd.cfg.NewPeer.Learning {
		pp.known.add(peer, false)
		return
	}
	pp.known.add(peer, true) // holds an alert (resolvePeers clears it)
	a := Alert{Rule: RuleNewPeer, Severity: fd.cfg.NewPeer.Severity, Scope: "peer", Key: project + " " + peer.String(),
		Labels:      map[string]string{"project": project, "peer": peer.String()},
		Annotations: map[string]string{"summary": fmt.Sprintf("project %s talks to a new external peer %s", project, peer)},
		StartsAt:    t, FiredAt: t, Value: 1}
	fd.newPeers[peerKey{project, peer}] = &peerAlert{a: a, last: t}
	fd.pending = append(fd.pending, a)
}

func (fd *FlowDetectors) fireWindowed(rule, severity, scope string, addr netip.Addr, project string, t time.Time, v int) {
	a := Alert{Rule: rule, Severity: severity, Scope: scope, Key: addr.String(),
		Labels: map[string]string{scope: addr.String()}, StartsAt: t, FiredAt: t, Value: float64(v)}
	if project != "" {
		a.Labels["project"] = project
	}
	switch rule {
	case RulePortScan:
		a.Annotations = map[string]string{"summary": fmt.Sprintf("%s reached more than %d destination ports within %s", addr, v-1, fd.cfg.PortScan.Window)}
		fd.scan.firing[addr] = &a
	default:
		a.Annotations = map[string]string{"summary": fmt.Sprintf("more than %d SYNs without answer towards %s within %s", v-1, addr, fd.cfg.HalfOpen.Window)}
		fd.halfOpen.firing[addr] = &a
	}
	fd.pending = append(fd.pending, a)
}

// unlockAndEmit releases mu and emits the alerts found meanwhile, in order,
// each with its Discover link.
func (fd *FlowDetectors) unlockAndEmit() {
	out := fd.pending
	if len(out) == 0 {
		fd.mu.Unlock()
		return
	}
	fd.pending = nil
	fd.emitMu.Lock()
	fd.mu.Unlock()
	defer fd.emitMu.Unlock()
	for i := range out {
		out[i].DiscoverURL = DiscoverURL(fd.kibana, fd.view, &out[i])
		fd.emit(out[i])
	}
}

// Rollup advances the detectors' clock to each snapshot's time
// (rollup.Subscriber), so alerts resolve while no flow comes.
func (fd *FlowDetectors) Rollup(s *rollup.Snapshot) { fd.Advance(s.Time) }

// Advance moves the detectors' clock to now (event time) and resolves what
// has ended.
func (fd *FlowDetectors) Advance(now time.Time) {
	fd.mu.Lock()
	defer fd.unlockAndEmit()
	if now.After(fd.now) {
		fd.advance(now)
	}
}

func (fd *FlowDetectors) advance(now time.Time) {
	fd.now = now
	// Held new-peer alerts are looked over once a second of event time,
	// not at every batch: after the learning period a front end's new
	// clients can hold thousands, and each datagram walked them all
	// (BenchmarkNewPeersHeld: 291 µs a flow with 200,000 held). An alert
	// resolves at most a second late; its EndsAt is exact.
	if now.Sub(fd.peersLooked) >= time.Second {
		fd.peersLooked = now
		fd.resolvePeers(now)
	}
	for _, wc := range []*windowCounter{&fd.scan, &fd.halfOpen} {
		fd.pending = append(fd.pending, wc.roll(now)...)
	}
}

// resolvePeers resolves the new-peer alerts whose peer was last seen Hold
// ago or more.
func (fd *FlowDetectors) resolvePeers(now time.Time) {
	for k, pa := range fd.newPeers {
		if now.Sub(pa.last) >= fd.cfg.NewPeer.Hold {
			a := pa.a
			a.EndsAt = pa.last.Add(fd.cfg.NewPeer.Hold)
			delete(fd.newPeers, k)
			if pp := fd.projects[k.project]; pp != nil {
				pp.known.clearAlert(k.peer)
			}
			fd.pending = append(fd.pending, a)
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// windowCounter counts per address over a sliding event-time window:
// flows, or distinct ports (keeping at most limit+1 ports per address, so
// memory is bounded by max × limit; while an address is over the limit,
// a port it had not reached marks it over for a window instead). The window is cut into subWindows
// sub-windows; the counts cover the current one and the subWindows before
// it, so whatever happens within any stretch of a window's length is
// counted whole: tumbling windows missed a scan of 150 ports in 30 s
// across their boundary (75 + 75, TestPortScanAcrossWindows). Each
// counted port keeps the sub-window it was last seen in, each address
// its flows per sub-window; at each sub-window's end the expired ones are
// dropped (the tables rebuilt, an address with nothing left forgotten).
// Addresses and (address, port) pairs live in open-addressing tables: one
// probe each per flow.
type windowCounter struct {
	window     time.Duration
	limit, max int
	distinct   bool
	sub        time.Duration // a sub-window: window / subWindows
	start      time.Time     // the current sub-window's start
	tick       uint64        // the current sub-window's number
	addrs      addrTable     // per address: its count and its first ports
	ports      stampSet      // (address index, port) pairs past an entry's first ports
	flows      []int32       // !distinct: per address index, its flows in each of subWindows+1 sub-windows
	spare      addrTable     // the tables expire rebuilds into
	sparePorts stampSet
	counts     []int32 // expire's scratch: counts by old index, then new indexes
	firing     map[netip.Addr]*Alert
	overflowed bool
}

// subWindows is how many sub-windows a window is cut into: the counts
// reach back at most a window and a sub-window (a quarter more).
const subWindows = 4

type addResult int

const (
	counted addResult = iota
	crossed
)

// live says whether a port or limit mark stamped in sub-window st is in
// the window.
func (w *windowCounter) live(st uint8) bool { return uint8(w.tick)-st <= subWindows }

func (w *windowCounter) add(a netip.Addr, port uint16) addResult {
	if w.firing == nil {
		w.firing = map[netip.Addr]*Alert{}
	}
	en := w.addrs.entry(a)
	if en == nil {
		if w.addrs.used >= w.max {
			w.overflowed = true
			return counted
		}
		en = w.addrs.put(a, int32(w.addrs.used))
		if !w.distinct {
			w.flows = append(w.flows, make([]int32, subWindows+1)...)
		}
	}
	st := uint8(w.tick)
	if w.distinct {
		// Most sources reach a few ports: they are in the entry, in the
		// cache line already read.
		for i, p := range en.ports[:en.np] {
			if p == port {
				en.stamps[i] = st
				return counted
			}
		}
		k := uint64(en.idx-1)<<16 | uint64(port)
		if w.ports.touch(k, st) {
			return counted
		}
		if int(en.n) > w.limit {
			// Over the limit: the port is not kept; the mark keeps the
			// address over it while the port would be counted.
			en.over, en.hasOver = st, true
			return counted
		}
		if int(en.np) < len(en.ports) {
			en.ports[en.np], en.stamps[en.np] = port, st
			en.np++
		} else {
			w.ports.insert(k, st)
		}
	} else {
		// Flows are counted past the limit (their count is all they
		// hold), up to where an int32 sum of the sub-windows stays exact.
		if en.n >= math.MaxInt32/(subWindows+1) {
			return counted
		}
		w.flows[int(en.idx-1)*(subWindows+1)+int(w.tick%(subWindows+1))]++
	}
	en.n++
	if int(en.n) == w.limit+1 {
		if _, ok := w.firing[a]; !ok {
			return crossed
		}
	}
	return counted
}

// count is a's count in the window (limit+1 while it was over the limit
// in it).
func (w *windowCounter) count(a netip.Addr) int {
	if en := w.addrs.entry(a); en != nil {
		if en.hasOver && int(en.n) <= w.limit {
			return w.limit + 1
		}
		return int(en.n)
	}
	return 0
}

// tracked is how many addresses the window counts.
func (w *windowCounter) tracked() int { return w.addrs.used }

func (w *windowCounter) reset() {
	w.addrs.reset()
	w.ports.reset()
	w.flows = w.flows[:0]
}

// expire drops what the sub-window that has just begun pushes out of the
// window: the tables are rebuilt with what is left, and the addresses
// with nothing left are forgotten.
func (w *windowCounter) expire() {
	old := &w.addrs
	if old.used == 0 {
		return
	}
	counts := slices.Grow(w.counts[:0], old.used)[:old.used]
	slot := int(w.tick % (subWindows + 1)) // the sub-window's slot, last used subWindows+1 ago
	for i := range old.entries {
		en := &old.entries[i]
		if en.idx == 0 {
			continue
		}
		oi := int(en.idx - 1)
		if en.hasOver && !w.live(en.over) {
			en.hasOver = false
		}
		n := 0
		if w.distinct {
			for j := range en.np {
				if w.live(en.stamps[j]) {
					en.ports[n], en.stamps[n] = en.ports[j], en.stamps[j]
					n++
				}
			}
			en.np = uint8(n)
		} else {
			row := w.flows[oi*(subWindows+1) : (oi+1)*(subWindows+1)]
			row[slot] = 0
			for _, c := range row {
				n += int(c)
			}
		}
		counts[oi] = int32(n)
	}
	for _, v := range w.ports.slots {
		if v != 0 && w.live(uint8(v>>48)) {
			counts[(v&keyMask)>>16]++
		}
	}
	// The addresses left, in new indexes (counts now holds them, -1 for
	// the forgotten).
	nw := &w.spare
	nw.reset()
	var flows []int32
	for i := range old.entries {
		en := old.entries[i]
		if en.idx == 0 {
			continue
		}
		oi := int(en.idx - 1)
		if counts[oi] == 0 && !en.hasOver {
			counts[oi] = -1
			continue
		}
		en.n = counts[oi]
		ni := int32(nw.used)
		en.idx = ni + 1
		nw.putWords(en)
		if !w.distinct {
			flows = append(flows, w.flows[oi*(subWindows+1):(oi+1)*(subWindows+1)]...)
		}
		counts[oi] = ni
	}
	np := &w.sparePorts
	np.reset()
	for _, v := range w.ports.slots {
		if v == 0 || !w.live(uint8(v>>48)) {
			continue
		}
		if ni := counts[(v&keyMask)>>16]; ni >= 0 {
			np.insert(uint64(ni)<<16|v&0xffff, uint8(v>>48))
		}
	}
	w.addrs, w.spare = w.spare, w.addrs
	w.ports, w.sparePorts = w.sparePorts, w.ports
	if !w.distinct {
		w.flows = append(w.flows[:0], flows...)
	}
	w.counts = counts
}

// roll moves the window on to now, sub-window by sub-window; addresses
// that fired and stayed under the limit for a whole window, which began
// at or after they fired, are resolved at its end.
func (w *windowCounter) roll(now time.Time) []Alert {
	if w.window <= 0 {
		return nil
	}
	if w.sub <= 0 {
		w.sub = max(w.window/subWindows, 1)
	}
	if w.start.IsZero() {
		w.start = now.Truncate(w.sub)
		return nil
	}
	var out []Alert
	for i := 0; now.Sub(w.start) >= w.sub; i++ {
		if i > subWindows {
			// Everything has expired and every alert resolved: jump to now.
			w.start = now.Truncate(w.sub)
			break
		}
		w.start = w.start.Add(w.sub)
		w.tick++
		w.expire()
		from := w.start.Add(-subWindows * w.sub)
		for a, al := range w.firing {
			if w.count(a) <= w.limit && !al.FiredAt.After(from) {
				r := *al
				r.EndsAt = w.start
				out = append(out, r)
				delete(w.firing, a)
			}
		}
	}
	return out
}

// addrTable maps addresses to indexes: open addressing with linear
// probing, doubling at half full; an entry is its address's 16 bytes and
// its index, so that a probe reads one cache line.
type addrTable struct {
	entries []addrEntry
	used    int
}

type addrEntry struct {
	a0, a1 uint64
	idx    int32 // index+1; 0: empty
	n      int32 // windowCounter: the address's count; new peers: 1 while the peer holds an alert
	ports  [4]uint16
	stamps [4]uint8 // windowCounter: the sub-window each of ports was last seen in
	np     uint8    // windowCounter: ports held in ports
	v6     bool     // not an IPv4 address (As16 maps IPv4 into IPv6)
	// windowCounter: the last sub-window in which the address went on over
	// the limit (hasOver), its ports or flows then not counted.
	over    uint8
	hasOver bool
}

func addrWords(a netip.Addr) (uint64, uint64, bool) {
	if a.Is4() { // As16's 16-byte copy, for 4 bytes, was a third of a probe
		b := a.As4()
		return uint64(binary.BigEndian.Uint32(b[:])), 0, false
	}
	b := a.As16()
	return binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:]), true
}

// hashWords hashes an address's words for the detectors' tables, keyed
// (addrhash.Words): with a public hash a sender of spoofed traffic could
// pick thousands of addresses whose hashes share the low bits these
// open-addressing tables probe by (TestDetectorHashesNeedTheSeed).
func hashWords(a0, a1 uint64) int { return int(addrhash.Words(a0, a1)) }

func (t *addrTable) get(a netip.Addr) (int32, bool) {
	if en := t.entry(a); en != nil {
		return en.idx - 1, true
	}
	return 0, false
}

// entry is a's entry, nil if a is not in the table; it is valid until the
// next put.
func (t *addrTable) entry(a netip.Addr) *addrEntry {
	if t.used == 0 {
		return nil
	}
	a0, a1, v6 := addrWords(a)
	mask := len(t.entries) - 1
	for i := hashWords(a0, a1) & mask; ; i = (i + 1) & mask {
		en := &t.entries[i]
		switch {
		case en.idx == 0:
			return nil
		case en.a0 == a0 && en.a1 == a1 && en.v6 == v6:
			return en
		}
	}
}

// put adds a, which is not in the table, and returns its entry.
func (t *addrTable) put(a netip.Addr, v int32) *addrEntry {
	a0, a1, v6 := addrWords(a)
	return t.putWords(addrEntry{a0: a0, a1: a1, idx: v + 1, v6: v6})
}

func (t *addrTable) putWords(e addrEntry) *addrEntry {
	if 2*(t.used+1) > len(t.entries) {
		old := t.entries
		t.entries, t.used = make([]addrEntry, max(64, 2*len(old))), 0
		for _, x := range old {
			if x.idx != 0 {
				t.putWords(x)
			}
		}
	}
	mask := len(t.entries) - 1
	i := hashWords(e.a0, e.a1) & mask
	for t.entries[i].idx != 0 {
		i = (i + 1) & mask
	}
	t.entries[i] = e
	t.used++
	return &t.entries[i]
}

func (t *addrTable) reset() {
	if t.used > 0 {
		clear(t.entries)
		t.used = 0
	}
}

// peerSet is a set of addresses, each with a flag (holds an alert). A
// project's known peers grow to every client its front ends have served,
// hundreds of thousands, and every external flow probes them: IPv4
// addresses sit in 8-byte slots, five times as many to a cache line as in
// an addrTable (the probe was 14 % of BenchmarkRollup/mix+100rules); the
// others in an addrTable.
type peerSet struct {
	v4   []uint64 // 0 empty; else v4Used | flag | address
	used int
	v6   addrTable
}

const (
	v4Used  = 1 << 32
	v4Alert = 1 << 33
)

// v4Key is an IPv4 address's key (addrWords' first word); false for others.
func v4Key(a netip.Addr) (uint64, bool) {
	if !a.Is4() {
		return 0, false
	}
	a0, _, _ := addrWords(a)
	return a0, true
}

// slot is the slot of IPv4 address k: its own, or the empty one it would
// take.
func (p *peerSet) slot(k uint64) *uint64 {
	mask := len(p.v4) - 1
	h := addrhash.Word(k | v4Used)
	for i := int(h) & mask; ; i = (i + 1) & mask {
		if v := p.v4[i]; v == 0 || uint32(v) == uint32(k) {
			return &p.v4[i]
		}
	}
}

// has says whether a is in the set, and its flag.
func (p *peerSet) has(a netip.Addr) (known, alerting bool) {
	k, ok := v4Key(a)
	if !ok {
		if en := p.v6.entry(a); en != nil {
			return true, en.n != 0
		}
		return false, false
	}
	if p.used == 0 {
		return false, false
	}
	v := *p.slot(k)
	return v != 0, v&v4Alert != 0
}

// add puts a, which is not in the set, with its flag.
func (p *peerSet) add(a netip.Addr, alerting bool) {
	k, ok := v4Key(a)
	if !ok {
		en := p.v6.put(a, 0)
		if alerting {
			en.n = 1
		}
		return
	}
	if 2*(p.used+1) > len(p.v4) {
		old := p.v4
		p.v4 = make([]uint64, max(256, 2*len(old)))
		for _, v := range old {
			if v != 0 {
				*p.slot(uint64(uint32(v))) = v
			}
		}
	}
	v := k | v4Used
	if alerting {
		v |= v4Alert
	}
	*p.slot(k) = v
	p.used++
}

// clearAlert clears a's flag.
func (p *peerSet) clearAlert(a netip.Addr) {
	k, ok := v4Key(a)
	if !ok {
		if en := p.v6.entry(a); en != nil {
			en.n = 0
		}
		return
	}
	if p.used > 0 {
		if sl := p.slot(k); *sl != 0 {
			*sl &^= v4Alert
		}
	}
}

// stampSet maps keys of 48 bits to a stamp (the sub-window they were last
// seen in): open addressing, doubling at half full. A slot is 0 when
// empty, else stampUsed | stamp<<48 | key.
type stampSet struct {
	slots []uint64
	used  int
}

const (
	stampUsed = 1 << 63
	keyMask   = 1<<48 - 1
)

// slot is k's slot, or the empty one it would take; nil in an empty set.
func (s *stampSet) slot(k uint64) *uint64 {
	if len(s.slots) == 0 {
		return nil
	}
	mask := len(s.slots) - 1
	for i := int(addrhash.Word(k+1)) & mask; ; i = (i + 1) & mask {
		if v := s.slots[i]; v == 0 || v&keyMask == k {
			return &s.slots[i]
		}
	}
}

// touch stamps k when it is in the set, and says whether it was.
func (s *stampSet) touch(k uint64, st uint8) bool {
	if s.used == 0 {
		return false
	}
	p := s.slot(k)
	if *p == 0 {
		return false
	}
	*p = stampUsed | uint64(st)<<48 | k
	return true
}

// insert adds k, which is not in the set, with stamp st.
func (s *stampSet) insert(k uint64, st uint8) {
	if 2*(s.used+1) > len(s.slots) {
		old := s.slots
		s.slots, s.used = make([]uint64, max(256, 2*len(old))), 0
		for _, v := range old {
			if v != 0 {
				*s.slot(v & keyMask) = v
				s.used++
			}
		}
	}
	*s.slot(k) = stampUsed | uint64(st)<<48 | k
	s.used++
}

func (s *stampSet) reset() {
	if s.used > 0 {
		clear(s.slots)
		s.used = 0
	}
}
