package alert

import (
	"bytes"
	"path"
	"sync"
	"time"
	"unsafe"

	"github.com/spanflow/spanflow/collector/rollup"
)

// MaxSeriesPerRule bounds the series (rows) one rule keeps state for; rows
// beyond it are not judged and are counted.
const MaxSeriesPerRule = 10000

// forgetAfter: a series not seen for this long (and not firing) is forgotten.
const forgetAfter = 10 * time.Minute

// Evaluator judges the threshold rules on every rollup snapshot; it is a
// rollup.Subscriber. Alerts go to emit as they fire and resolve.
type Evaluator struct {
	mu     sync.Mutex
	file   *File
	rules  []*Rule
	states []map[string]*series // per rule, by row key
	emit   func(Alert)
	kibana string
	view   string
	// Overflow counts rows not judged because a rule had MaxSeriesPerRule.
	Overflow func()

	byScope map[string][]int32 // the snapshot's rows by scope, reused
	// matching holds, per rule, the rows of its scope that its selectors
	// match, worked out for the snapshot (and Layout) in layoutOf: a
	// snapshot with the same rows in the same places reuses them, and a
	// tick judges only the rows of each rule's own series.
	matching [][]int32
	layoutOf struct {
		s      *rollup.Snapshot
		layout uint64
	}
	// memo holds, per rule, whether a row (by key, with its labels map)
	// matched its selectors: shell-glob matching was 60 % of judging a
	// snapshot, and rows keep their key and labels from tick to tick.
	memo []map[string]matched
}

type matched struct {
	labels unsafe.Pointer // the row's labels map: a relabelled row is matched again
	ok     bool
}

// maxMemo bounds each rule's memo; a full one starts over.
const maxMemo = 4 * MaxSeriesPerRule

// matchesMemo is matches(e.rules[i], row), remembered.
func (e *Evaluator) matchesMemo(i int, row *rollup.Row) bool {
	// A map value is a pointer to the runtime's map: its identity.
	lp := *(*unsafe.Pointer)(unsafe.Pointer(&row.Labels))
	m := e.memo[i]
	if x, ok := m[row.Key]; ok && x.labels == lp {
		return x.ok
	}
	ok := e.matches(e.rules[i], row)
	if len(m) >= maxMemo {
		clear(m)
	}
	m[row.Key] = matched{labels: lp, ok: ok}
	return ok
}

type series struct {
	activeSince time.Time // zero: condition not holding
	firing      *Alert
	lastSeen    time.Time
	labels      map[string]string
}

// NewEvaluator judges the file's rules, and the built-in detectors that
// read snapshots (half-open storms, drops), sending alerts to emit.
func NewEvaluator(f *File, kibanaURL, dataView string, emit func(Alert)) *Evaluator {
	e := &Evaluator{file: f, emit: emit, kibana: kibanaURL, view: dataView, Overflow: func() {}}
	for i := range f.Rules {
		e.rules = append(e.rules, &f.Rules[i])
	}
	e.rules = append(e.rules, f.Detectors.snapshotRules()...)
	e.states = make([]map[string]*series, len(e.rules))
	e.memo = make([]map[string]matched, len(e.rules))
	for i := range e.states {
		e.states[i] = map[string]*series{}
		e.memo[i] = map[string]matched{}
	}
	return e
}

// Rollup judges one snapshot (rollup.Subscriber).
func (e *Evaluator) Rollup(s *rollup.Snapshot) {
	e.mu.Lock()
	defer e.mu.Unlock()
	// Each rule reads the rows of its scope only: a hundred rules over
	// thousands of rows compared every scope otherwise.
	e.match(s)
	for i, r := range e.rules {
		st := e.states[i]
		for _, j := range e.matching[i] {
			row := &s.Rows[j]
			v, ok := e.value(r, row)
			if !ok {
				continue
			}
			se := st[row.Key]
			if se == nil {
				if len(st) >= MaxSeriesPerRule {
					e.Overflow()
					continue
				}
				se = &series{}
				st[row.Key] = se
			}
			se.lastSeen = s.Time
			se.labels = row.Labels
			e.judge(r, row.Key, se, v, row, s.Time)
		}
		// Series absent from this snapshot: a rate that vanished is zero.
		for key, se := range st {
			if se.lastSeen.Equal(s.Time) {
				continue
			}
			if rates[r.Value] {
				e.judge(r, key, se, 0, &rollup.Row{Scope: r.Scope, Key: key, Labels: se.labels}, s.Time)
			}
			if se.firing == nil && s.Time.Sub(se.lastSeen) > forgetAfter {
				delete(st, key)
			}
		}
	}
}

// match sets e.matching for s, unless s is the snapshot it was set for
// and keeps its Layout.
func (e *Evaluator) match(s *rollup.Snapshot) {
	if s.Layout != 0 && e.layoutOf.s == s && e.layoutOf.layout == s.Layout && e.matching != nil {
		return
	}
	e.layoutOf.s, e.layoutOf.layout = s, s.Layout
	if e.byScope == nil {
		e.byScope = map[string][]int32{}
		e.matching = make([][]int32, len(e.rules))
	}
	for k, v := range e.byScope {
		e.byScope[k] = v[:0]
	}
	for j := range s.Rows {
		e.byScope[s.Rows[j].Scope] = append(e.byScope[s.Rows[j].Scope], int32(j))
	}
	for i, r := range e.rules {
		e.matching[i] = e.matching[i][:0]
		for _, j := range e.byScope[r.Scope] {
			if e.matchesMemo(i, &s.Rows[j]) {
				e.matching[i] = append(e.matching[i], j)
			}
		}
	}
}

func (e *Evaluator) matches(r *Rule, row *rollup.Row) bool {
	m := func(glob, v string) bool {
		ok, _ := path.Match(glob, v)
		return ok
	}
	if r.Line != "" {
		name := ""
		if l, ok := e.file.Lines[row.Key]; ok {
			name = l.Name
		}
		if !m(r.Line, row.Key) && (name == "" || !m(r.Line, name)) {
			return false
		}
	}
	if r.Exporter != "" && !m(r.Exporter, row.Labels["exporter"]) {
		return false
	}
	if r.Project != "" {
		p := row.Labels["project"]
		if row.Scope == rollup.ScopeProject && p == "" {
			p = row.Key
		}
		if !m(r.Project, p) {
			return false
		}
	}
	if r.VM != "" && !m(r.VM, row.Key) {
		return false
	}
	if r.Service != "" && !m(r.Service, row.Key) {
		return false
	}
	return true
}

func (e *Evaluator) value(r *Rule, row *rollup.Row) (float64, bool) {
	switch r.Value {
	case Utilisation:
		l, ok := e.file.Lines[row.Key]
		if !ok {
			return 0, false
		}
		bps, ok := row.Values.Get(rollup.BitsPerSecond)
		if !ok {
			b, okb := row.Values.Get(rollup.BytesPerSecond)
			bps, ok = b*8, okb
		}
		if !ok {
			return 0, true
		}
		return bps / float64(l.Capacity), true
	case BaselineRatio:
		base := row.Values.Of(rollup.BytesPerSecondBaseline)
		if base <= 0 || base < r.MinBaseline {
			return 0, false
		}
		return row.Values.Of(rollup.BytesPerSecond) / base, true
	}
	v, ok := row.Values.Get(r.Value)
	if !ok && rates[r.Value] {
		return 0, true
	}
	return v, ok
}

// judge moves one series through pending → firing → resolved.
func (e *Evaluator) judge(r *Rule, key string, se *series, v float64, row *rollup.Row, now time.Time) {
	var breach, cleared bool
	thr := 0.0
	if r.Above != nil {
		thr = *r.Above
		clear := thr
		if r.Clear != nil {
			clear = *r.Clear
		}
		breach, cleared = v > thr, v <= clear
	} else {
		thr = *r.Below
		clear := thr
		if r.Clear != nil {
			clear = *r.Clear
		}
		breach, cleared = v < thr, v >= clear
	}
	if se.firing != nil {
		se.firing.Value = v
		if cleared {
			a := *se.firing
			a.EndsAt = now
			a.DiscoverURL = DiscoverURL(e.kibana, e.view, &a)
			se.firing, se.activeSince = nil, time.Time{}
			e.emit(a)
		}
		return
	}
	if !breach {
		se.activeSince = time.Time{}
		return
	}
	if se.activeSince.IsZero() {
		se.activeSince = now
	}
	if now.Sub(se.activeSince) < r.For {
		return
	}
	lineName := ""
	if l, ok := e.file.Lines[key]; ok {
		lineName = l.Name
	}
	a := Alert{Rule: r.Name, Severity: r.Severity, Scope: r.Scope, Key: key,
		StartsAt: se.activeSince, FiredAt: now, Value: v}
	a.Labels = scopeLabels(r.Scope, key, row.Labels, lineName)
	for k, v := range r.Labels {
		a.Labels[k] = v
	}
	a.Annotations = map[string]string{}
	data := TemplateData{Rule: r.Name, Severity: r.Severity, Scope: r.Scope, Key: key, Labels: a.Labels,
		Value: v, Threshold: thr, Values: row.Values.Map()}
	for k, t := range r.templates {
		var b bytes.Buffer
		if err := t.Execute(&b, data); err != nil {
			a.Annotations[k] = "template error: " + err.Error()
			continue
		}
		a.Annotations[k] = b.String()
	}
	a.DiscoverURL = DiscoverURL(e.kibana, e.view, &a)
	se.firing = &a
	e.emit(a)
}

// Firing lists the alerts firing now.
func (e *Evaluator) Firing() []Alert {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Alert
	for _, st := range e.states {
		for _, se := range st {
			if se.firing != nil {
				out = append(out, *se.firing)
			}
		}
	}
	return out
}
