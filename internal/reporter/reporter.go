// Package reporter carries what every component reports through: a structured
// logger and an injected Prometheus registry (never the global one, so tests and
// several components in one process do not share state).
package reporter

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Reporter is handed to every component's constructor.
type Reporter struct {
	Log      *slog.Logger
	Registry *prometheus.Registry

	// base is Log without the component key, which Sub sets once (slog's
	// With would add a second one); nil when built as a literal.
	base      *slog.Logger
	component string
}

// New returns a reporter with a fresh registry that also exposes the Go and
// process collectors.
func New(log *slog.Logger) *Reporter {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Reporter{Log: log, Registry: reg}
}

// NewForTest returns a reporter that logs to w (or discards when nil) with a
// bare registry.
func NewForTest(w io.Writer) *Reporter {
	if w == nil {
		w = io.Discard
	}
	return &Reporter{Log: slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), Registry: prometheus.NewRegistry()}
}

// Sub returns a reporter whose logs carry component=name; metrics share the
// registry. Under a reporter that has a component already, the key holds
// both, parent/name (or the parent's alone when it ends with name, as
// "output elasticsearch" does with "elasticsearch"): a log line has one
// component key.
func (r *Reporter) Sub(name string) *Reporter {
	comp := name
	switch {
	case r.component == "":
	case strings.HasSuffix(r.component, name):
		comp = r.component
	default:
		comp = r.component + "/" + name
	}
	base := r.base
	if base == nil {
		base = r.Log
	}
	return &Reporter{Log: base.With("component", comp), Registry: r.Registry, base: base, component: comp}
}

// With returns a reporter whose logs carry the key-value pairs args too
// (not a component: use Sub), with its own registry when reg is not nil.
func (r *Reporter) With(reg *prometheus.Registry, args ...any) *Reporter {
	c := *r
	c.Log = r.Log.With(args...)
	if r.base != nil {
		c.base = r.base.With(args...)
	}
	if reg != nil {
		c.Registry = reg
	}
	return &c
}

// Factory registers metrics named spanflow_<subsystem>_<name>.
func (r *Reporter) Factory(subsystem string) Factory {
	return Factory{reg: r.Registry, subsystem: subsystem}
}

// Factory creates and registers metrics of one subsystem.
type Factory struct {
	reg       prometheus.Registerer
	subsystem string
}

func (f Factory) opts(name, help string) prometheus.Opts {
	return prometheus.Opts{Namespace: "spanflow", Subsystem: f.subsystem, Name: name, Help: help}
}

// Counter registers a counter; names of counters end in _total.
func (f Factory) Counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts(f.opts(name, help)))
	f.reg.MustRegister(c)
	return c
}

// CounterVec registers a labelled counter.
func (f Factory) CounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts(f.opts(name, help)), labels)
	f.reg.MustRegister(c)
	return c
}

// Gauge registers a gauge.
func (f Factory) Gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts(f.opts(name, help)))
	f.reg.MustRegister(g)
	return g
}

// GaugeVec registers a labelled gauge.
func (f Factory) GaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts(f.opts(name, help)), labels)
	f.reg.MustRegister(g)
	return g
}

// GaugeFunc registers a gauge read from fn at scrape time.
func (f Factory) GaugeFunc(name, help string, fn func() float64) {
	f.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts(f.opts(name, help)), fn))
}

// CounterFunc registers a counter read from fn at scrape time (for counters kept
// elsewhere, such as kernel drop counters).
func (f Factory) CounterFunc(name, help string, fn func() float64) {
	f.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts(f.opts(name, help)), fn))
}

// Desc describes a metric named as the factory's, for a collector of its
// own (Register) that makes the samples at scrape time.
func (f Factory) Desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName("spanflow", f.subsystem, name), help, labels, nil)
}

// Register registers a collector whose metrics are described by Desc.
func (f Factory) Register(c prometheus.Collector) { f.reg.MustRegister(c) }

// HistogramVec registers a labelled histogram.
func (f Factory) HistogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "spanflow", Subsystem: f.subsystem,
		Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}

// Limited logs at most once per interval for each key, and says how many
// messages it suppressed meanwhile. Use it on the hot path (per packet, per
// datagram) so a flood of bad input cannot flood the log.
type Limited struct {
	log      *slog.Logger
	interval time.Duration
	mu       sync.Mutex
	last     map[string]limitedState
}

type limitedState struct {
	at         time.Time
	suppressed int
	// WarnCount's: what is counted, the total of the suppressed calls,
	// the last suppressed call's message and arguments, and whether a
	// line is due at the interval's end.
	what    string
	count   int64
	msg     string
	args    []any
	pending bool
}

// NewLimited returns a rate-limited logger.
func NewLimited(log *slog.Logger, interval time.Duration) *Limited {
	return &Limited{log: log, interval: interval, last: map[string]limitedState{}}
}

// Warn logs msg under key unless the key was logged within the interval.
func (l *Limited) Warn(key, msg string, args ...any) {
	now := time.Now()
	l.mu.Lock()
	st, seen := l.last[key]
	if seen && now.Sub(st.at) < l.interval {
		st.suppressed++
		l.last[key] = st
		l.mu.Unlock()
		return
	}
	suppressed := st.suppressed
	l.reset(key, now)
	l.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	l.log.Warn(msg, args...)
}

// WarnCount is Warn for a loss of n things (records, documents): the line
// gives as `what` the n of every call since the key's last line, its own
// included, so the log adds up to the loss and not to the lines. What the
// interval suppressed is logged at its end even if no call follows.
func (l *Limited) WarnCount(key, msg, what string, n int64, args ...any) {
	now := time.Now()
	l.mu.Lock()
	st, seen := l.last[key]
	if seen && now.Sub(st.at) < l.interval {
		st.suppressed++
		st.what, st.count, st.msg, st.args = what, st.count+n, msg, args
		if !st.pending {
			st.pending = true
			time.AfterFunc(st.at.Add(l.interval).Sub(now), func() { l.flush(key) })
		}
		l.last[key] = st
		l.mu.Unlock()
		return
	}
	n += st.count
	suppressed := st.suppressed
	l.reset(key, now)
	l.mu.Unlock()
	args = append([]any{what, n}, args...)
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	l.log.Warn(msg, args...)
}

// flush logs what WarnCount suppressed under key, if no call did since.
func (l *Limited) flush(key string) {
	l.mu.Lock()
	st, seen := l.last[key]
	if !seen || !st.pending || st.suppressed == 0 {
		l.mu.Unlock()
		return
	}
	l.reset(key, time.Now())
	l.mu.Unlock()
	args := append([]any{st.what, st.count}, st.args...)
	l.log.Warn(st.msg, append(args, "suppressed", st.suppressed)...)
}

// reset starts key's interval at now; l.mu is held.
func (l *Limited) reset(key string, now time.Time) {
	if len(l.last) > 10000 { // keys come from the network: bound the map
		clear(l.last)
	}
	l.last[key] = limitedState{at: now}
}

// ParseLevel turns debug/info/warn/error into a slog level.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q: use debug, info, warn or error", s)
}

// NewLogger returns a logger writing text (or JSON when json is set) to w.
func NewLogger(w io.Writer, level slog.Level, json bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if json {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
