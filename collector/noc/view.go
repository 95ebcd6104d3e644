package noc

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spanflow/spanflow/collector/alert"
	"github.com/spanflow/spanflow/collector/rollup"
	"github.com/spanflow/spanflow/internal/flow"
)

// Sankey node names for ends without a project.
const (
	NodeInternal = "internal" // a known network or VM without a project
	NodeOutside  = "outside"  // an address neither the networks file nor vCenter knows
	NodeOther    = "other"    // pairs past ui-max-pairs
)

// maxAlerts bounds the firing alerts the view keeps.
const maxAlerts = 1000

// LineInfo is a line's capacity (bits per second) and display name, from
// the rules file.
type LineInfo struct {
	Capacity float64
	Name     string
}

// view turns rollup snapshots, flows and alerts into frames. Rollup runs
// on the rollup engine's tick; Write on the pipeline's workers; Observe on
// the alert dispatcher.
type view struct {
	cfg      Configuration
	lines    map[string]LineInfo
	tick     time.Duration
	histLen  int
	decay    float64 // per tick, of the Sankey and split rates
	health   func() (datagrams, kernelDrops uint64)
	seq      uint64
	lastTime time.Time

	mu      sync.Mutex // guards the history and the frame
	charted map[string]*ring
	frame   Frame

	flowMu  sync.Mutex // guards what Write gathers
	pending map[pair]float64
	pendDir [3]float64
	stats   map[string]*Exporter // by exporter address
	overflw uint64

	// Rates and totals, owned by Rollup (tick goroutine).
	links map[pair]*linkState
	dirs  [3]linkState

	queries map[string]string // by scope and key, used by Rollup only

	alertMu sync.Mutex
	alerts  map[string]alert.Alert
}

type pair struct{ from, to string }

type linkState struct{ bps, bytes float64 }

// ring is one charted line's history: a bits-per-second value a tick.
type ring struct {
	vals []float32
	pos  int     // next write
	n    int     // values held
	sum  float64 // of vals, to find the lightest line
	seen int     // ticks since the line was last in a snapshot
}

func (r *ring) push(v float64) {
	if r.n == len(r.vals) {
		r.sum -= float64(r.vals[r.pos])
	} else {
		r.n++
	}
	r.vals[r.pos] = float32(v)
	r.sum += float64(float32(v))
	r.pos = (r.pos + 1) % len(r.vals)
}

// ordered returns the held values, oldest first.
func (r *ring) ordered() []float64 {
	out := make([]float64, 0, r.n)
	start := (r.pos - r.n + len(r.vals)) % len(r.vals)
	for i := range r.n {
		out = append(out, float64(r.vals[(start+i)%len(r.vals)]))
	}
	return out
}

func newView(cfg Configuration, tick, smoothing time.Duration, lines map[string]LineInfo, health func() (uint64, uint64)) *view {
	if lines == nil {
		lines = map[string]LineInfo{}
	}
	return &view{
		cfg: cfg, lines: lines, tick: tick, health: health,
		histLen: max(1, int(cfg.History/tick)),
		decay:   math.Exp(-tick.Seconds() / smoothing.Seconds()),
		charted: map[string]*ring{}, pending: map[pair]float64{}, stats: map[string]*Exporter{},
		links: map[pair]*linkState{}, alerts: map[string]alert.Alert{}, queries: map[string]string{},
	}
}

// endNode is an end's Sankey node: its project, else internal or outside.
func endNode(ep *flow.Endpoint) string {
	if ep.VSphere != nil {
		if ep.VSphere.Project != "" {
			return ep.VSphere.Project
		}
		if ep.Network != nil && ep.Network.Project != "" {
			return ep.Network.Project
		}
		return NodeInternal
	}
	if ep.Network != nil {
		if ep.Network.Project != "" {
			return ep.Network.Project
		}
		return NodeInternal
	}
	return NodeOutside
}

func dirIndex(d string) int {
	switch d {
	case "east-west":
		return 0
	case "north-south":
		return 1
	}
	return 2
}

var dirNames = [3]string{"east-west", "north-south", "other"}

// Write gathers flows for the Sankey and the direction split, and the
// exporters' statistics records (flow.Sink).
func (v *view) Write(recs []flow.Record) error {
	v.flowMu.Lock()
	defer v.flowMu.Unlock()
	for i := range recs {
		r := &recs[i]
		if r.Counters != nil {
			continue
		}
		if st := r.Exporter; st != nil {
			key := r.ObserverIP.String()
			e := v.stats[key]
			if e == nil {
				if len(v.stats) >= v.cfg.MaxPairs {
					continue
				}
				e = &Exporter{Addr: key}
				v.stats[key] = e
			}
			e.Datagrams += st.Datagrams
			e.Records += st.Records
			e.SequenceLosses += st.SequenceLosses
			e.DecodeErrors += st.DecodeErrors
			e.Templates = st.Templates
			e.StatsAt = r.Received
			continue
		}
		b := float64(r.Bytes)
		v.pendDir[dirIndex(r.Direction)] += b
		p := pair{endNode(&r.Src), endNode(&r.Dst)}
		if p.from == NodeOutside && p.to == NodeOutside {
			continue // transit: no project involved
		}
		if _, ok := v.pending[p]; !ok && len(v.pending) >= v.cfg.MaxPairs {
			v.overflw++
			p = pair{NodeOther, NodeOther}
		}
		v.pending[p] += b
	}
	return nil
}

// Observe keeps the firing alerts (the alert dispatcher's observer).
func (v *view) Observe(a alert.Alert) {
	v.alertMu.Lock()
	defer v.alertMu.Unlock()
	fp := a.Fingerprint()
	if !a.Firing() {
		delete(v.alerts, fp)
		return
	}
	if len(v.alerts) >= maxAlerts {
		return
	}
	v.alerts[fp] = a
}

// rollup builds the frame of a snapshot; it returns the frame, which
// stays valid: a new one is made every tick.
func (v *view) rollup(s *rollup.Snapshot, now time.Time) *Frame {
	v.seq++
	// Empty lists are [], not null, for whoever reads /api/frame.
	f := &Frame{Seq: v.seq, Time: s.Time, Built: now, Projects: []Project{}, VMs: []Rate{}, Services: []Rate{},
		Exporters: []Exporter{}, Links: []Link{}, Alerts: []Alert{}}
	ticks := 1
	if !v.lastTime.IsZero() && s.Time.After(v.lastTime) {
		ticks = max(1, int(s.Time.Sub(v.lastTime)/v.tick))
	}
	v.lastTime = s.Time

	var lines, projects, vms, services, exporters []*rollup.Row
	for i := range s.Rows {
		r := &s.Rows[i]
		switch r.Scope {
		case rollup.ScopeLine:
			lines = append(lines, r)
		case rollup.ScopeProject:
			projects = append(projects, r)
		case rollup.ScopeVM:
			vms = append(vms, r)
		case rollup.ScopeService:
			services = append(services, r)
		case rollup.ScopeExporter:
			exporters = append(exporters, r)
		}
	}
	bps := func(r *rollup.Row) float64 { return finite(r.Values.Of(rollup.BitsPerSecond)) }
	heaviest := func(rows []*rollup.Row) []*rollup.Row {
		slices.SortFunc(rows, func(a, b *rollup.Row) int {
			return cmp.Or(cmp.Compare(b.Values.Of(rollup.BitsPerSecondSmoothed), a.Values.Of(rollup.BitsPerSecondSmoothed)), cmp.Compare(a.Key, b.Key))
		})
		return rows
	}

	v.mu.Lock()
	f.Lines, f.Health.LinesNotCharted = v.chart(heaviest(lines), ticks)
	v.mu.Unlock()

	for _, r := range take(heaviest(projects), v.cfg.MaxRows) {
		p := Project{Name: r.Key, Bps: bps(r), Top: talkers(r.Top), Query: v.query(r.Scope, r.Key, r.Labels)}
		if x, ok := r.Values.Get(rollup.RTTp95); ok && x == finite(x) {
			p.RTTp95 = &x
		}
		if x, ok := r.Values.Get(rollup.RetransmissionRatio); ok && x == finite(x) {
			p.Retrans = &x
		}
		f.Projects = append(f.Projects, p)
	}
	for _, r := range take(heaviest(vms), v.cfg.MaxRows) {
		f.VMs = append(f.VMs, Rate{Name: r.Key, Bps: bps(r), Query: v.query(r.Scope, r.Key, r.Labels)})
	}
	for _, r := range take(heaviest(services), v.cfg.MaxRows) {
		f.Services = append(f.Services, Rate{Name: r.Key, Bps: bps(r), Query: v.query(r.Scope, r.Key, r.Labels)})
	}

	v.flowMu.Lock()
	pending, pendDir := v.pending, v.pendDir
	v.pending, v.pendDir = make(map[pair]float64, len(pending)), [3]float64{}
	f.Health.PairsOverflow = v.overflw
	stats := make(map[string]Exporter, len(v.stats))
	for k, e := range v.stats {
		stats[k] = *e
	}
	v.flowMu.Unlock()

	for _, r := range heaviest(exporters) {
		e, ok := stats[r.Key]
		if !ok {
			e = Exporter{Addr: r.Key}
		}
		delete(stats, r.Key)
		e.Bps = bps(r)
		e.Query = v.query(rollup.ScopeExporter, r.Key, nil)
		f.Exporters = append(f.Exporters, e)
	}
	for _, k := range sortedKeys(stats) { // exporters that sent statistics only
		e := stats[k]
		e.Query = v.query(rollup.ScopeExporter, k, nil)
		f.Exporters = append(f.Exporters, e)
	}
	f.Exporters = take(f.Exporters, v.cfg.MaxRows)

	// Sankey and split: smoothed rates, by arrival, and totals.
	secs := float64(ticks) * v.tick.Seconds()
	decay := math.Pow(v.decay, float64(ticks))
	for i := range v.dirs {
		d := &v.dirs[i]
		d.bytes += pendDir[i]
		d.bps = 8*pendDir[i]/secs + decay*(d.bps-8*pendDir[i]/secs)
		f.Split = append(f.Split, Rate{Name: dirNames[i], Bps: d.bps, Bytes: d.bytes, Query: dirQuery(dirNames[i])})
	}
	for p, l := range v.links {
		b := pending[p]
		delete(pending, p)
		l.bytes += b
		l.bps = 8*b/secs + decay*(l.bps-8*b/secs)
		if l.bps < 1e-3 && b == 0 {
			delete(v.links, p) // faded away; its total is forgotten
		}
	}
	for p, b := range pending {
		v.links[p] = &linkState{bps: 8 * b / secs, bytes: b}
	}
	for p, l := range v.links {
		f.Links = append(f.Links, Link{From: p.from, To: p.to, Bps: l.bps, Bytes: l.bytes})
	}
	sort.Slice(f.Links, func(i, j int) bool {
		a, b := f.Links[i], f.Links[j]
		return cmp.Or(cmp.Compare(b.Bps, a.Bps), cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To)) < 0
	})
	f.Links = take(f.Links, v.cfg.MaxRows)
	for i := range f.Links {
		f.Links[i].Query = linkQuery(pair{f.Links[i].From, f.Links[i].To})
	}

	v.alertMu.Lock()
	firing := make([]alert.Alert, 0, len(v.alerts))
	for _, a := range v.alerts {
		firing = append(firing, a)
	}
	v.alertMu.Unlock()
	slices.SortFunc(firing, func(a, b alert.Alert) int {
		return cmp.Or(cmp.Compare(severityRank(a.Severity), severityRank(b.Severity)), b.FiredAt.Compare(a.FiredAt),
			cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Key, b.Key))
	})
	for _, a := range take(firing, v.cfg.MaxRows) {
		on := a.Key
		if n := a.Labels["line"]; a.Scope == rollup.ScopeLine && n != "" {
			on = n
		}
		f.Alerts = append(f.Alerts, Alert{Rule: a.Rule, Severity: a.Severity, Scope: a.Scope, Key: a.Key, On: on, Value: finite(a.Value),
			Summary: a.Annotations["summary"], FiredAt: a.FiredAt, Discover: a.DiscoverURL, Query: alert.Query(a.Scope, a.Key, a.Labels)})
	}
	if v.health != nil {
		f.Health.Datagrams, f.Health.KernelDrops = v.health()
	}
	return f
}

// chart adds this tick's value to every charted line (ticks values when
// the rollups skipped some), charts new lines while there is room (a
// heavier line takes the place of the lightest), forgets lines absent for
// a whole history, and returns the charted lines, heaviest first.
func (v *view) chart(lines []*rollup.Row, ticks int) ([]Line, int) {
	now := make(map[string]*rollup.Row, len(lines))
	for _, r := range lines {
		now[r.Key] = r
	}
	for k, r := range v.charted {
		row := now[k]
		val := 0.0
		if row != nil {
			val, r.seen = finite(row.Values.Of(rollup.BitsPerSecond)), 0
		} else if r.seen++; r.seen >= v.histLen {
			delete(v.charted, k)
			continue
		}
		for i := 0; i < min(ticks, v.histLen)-1; i++ {
			r.push(0) // seconds the rollups did not publish
		}
		r.push(val)
	}
	for _, r := range lines {
		if _, ok := v.charted[r.Key]; ok {
			continue
		}
		if len(v.charted) >= v.cfg.MaxRows {
			// Take the place of the lightest line (by its mean over
			// the history held), if this one is heavier now.
			light, lightMean := "", math.Inf(1)
			for k, c := range v.charted {
				if m := c.sum / float64(max(c.n, 1)); m < lightMean || (m == lightMean && k > light) {
					light, lightMean = k, m
				}
			}
			if r.Values.Of(rollup.BitsPerSecond) <= lightMean {
				continue
			}
			delete(v.charted, light)
		}
		c := &ring{vals: make([]float32, v.histLen)}
		c.push(finite(r.Values.Of(rollup.BitsPerSecond)))
		v.charted[r.Key] = c
	}
	left := 0
	for k := range now {
		if v.charted[k] == nil {
			left++
		}
	}
	out := make([]Line, 0, len(v.charted))
	for k := range v.charted {
		row := now[k]
		l := Line{Key: k, Name: k}
		if info, ok := v.lines[k]; ok {
			if info.Name != "" {
				l.Name = info.Name
			}
			l.Capacity = info.Capacity
		}
		var labels map[string]string
		if row != nil {
			l.Bps, labels = finite(row.Values.Of(rollup.BitsPerSecond)), row.Labels
		}
		l.Query = v.query(rollup.ScopeLine, k, labels)
		if l.Capacity > 0 {
			u := l.Bps / l.Capacity
			l.Util = &u
		}
		if row != nil {
			l.Top = talkers(row.Top)
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool {
		return cmp.Or(cmp.Compare(out[j].Bps, out[i].Bps), cmp.Compare(out[i].Key, out[j].Key)) < 0
	})
	return out, left
}

// maxQueries bounds the cache of Discover queries.
const maxQueries = 10000

// query is the KQL of a row's flows (alert.Query), cached: it is the same
// every tick.
func (v *view) query(scope, key string, labels map[string]string) string {
	k := scope + "\x00" + key
	if q, ok := v.queries[k]; ok {
		return q
	}
	if len(v.queries) >= maxQueries {
		clear(v.queries)
	}
	q := alert.Query(scope, key, labels)
	v.queries[k] = q
	return q
}

// history is every charted line's history, oldest first.
func (v *view) history() map[string][]float64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	h := make(map[string][]float64, len(v.charted))
	for k, r := range v.charted {
		h[k] = r.ordered()
	}
	return h
}

// screenTalkers is how many talkers a row carries: a wall shows a few.
const screenTalkers = 5

// talkers are a row's heaviest talkers; their Discover query is the row's
// and source.ip (made by the page: it would be most of the frame).
func talkers(top []rollup.Talker) []Talker {
	top = take(top, screenTalkers)
	out := make([]Talker, 0, len(top))
	for _, t := range top {
		out = append(out, Talker{Addr: t.Addr.String(), Bps: finite(8 * t.BytesPerSecond)})
	}
	return out
}

// finite is v, or 0 for NaN and infinities, which JSON cannot carry: one
// would make the whole frame fail to encode, and the screen freeze.
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

func take[T any](s []T, n int) []T {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func severityRank(s string) int {
	switch strings.ToLower(s) {
	case "critical":
		return 0
	case "warning":
		return 1
	}
	return 2
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func dirQuery(d string) string {
	if d == "other" {
		return `not flow.direction:"east-west" and not flow.direction:"north-south"`
	}
	return "flow.direction:" + quote(d)
}

// endQuery is the KQL of one end (source or destination) of a Sankey node.
func endQuery(side, node string) string {
	switch node {
	case NodeOutside:
		return fmt.Sprintf("not %s.network.name:* and not %s.vsphere.vm.name:*", side, side)
	case NodeInternal:
		return fmt.Sprintf("(%s.network.name:* or %s.vsphere.vm.name:*) and not %s.network.project:* and not %s.vsphere.project:*", side, side, side, side)
	case NodeOther:
		return ""
	}
	return fmt.Sprintf("(%s.vsphere.project:%s or %s.network.project:%s)", side, quote(node), side, quote(node))
}

func linkQuery(p pair) string {
	s, d := endQuery("source", p.from), endQuery("destination", p.to)
	switch {
	case s == "":
		return d
	case d == "":
		return s
	}
	return "(" + s + ") and (" + d + ")"
}
