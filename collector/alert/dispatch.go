package alert

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spanflow/spanflow/internal/reporter"
)

// Sink delivers alerts somewhere. Send must not block: a sink queues and
// counts what it cannot keep.
type Sink interface {
	Name() string
	Send(a Alert)
	Start() error
	Stop() error
}

// metrics of the alert component; label sets are bounded by the rules and
// the configured sinks.
type metrics struct {
	alerts     *prometheus.CounterVec // rule, status
	suppressed *prometheus.CounterVec // rule, reason
	dropped    *prometheus.CounterVec // sink
	delivered  *prometheus.CounterVec // sink
	errors     *prometheus.CounterVec // sink
	latency    *prometheus.HistogramVec
	overflow   *prometheus.CounterVec // what
}

func newMetrics(r *reporter.Reporter) *metrics {
	f := r.Factory("alert")
	return &metrics{
		alerts:     f.CounterVec("alerts_total", "Alerts that fired or resolved, by rule.", "rule", "status"),
		suppressed: f.CounterVec("suppressed_total", "Alerts not sent by storm control: rate (the rule's rate limit) or duplicate.", "rule", "reason"),
		dropped:    f.CounterVec("queue_dropped_total", "Alert notifications dropped: a sink's queue was full, they were still queued when it stopped, or the receiver rejected them (a webhook's 4xx answer).", "sink"),
		delivered:  f.CounterVec("delivered_total", "Alert notifications a sink's receiver accepted.", "sink"),
		errors:     f.CounterVec("delivery_errors_total", "Failed delivery attempts (retried).", "sink"),
		latency: f.HistogramVec("delivery_latency_seconds", "From the event time an alert's condition began to hold (StartsAt) to its first delivery.",
			[]float64{0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 30, 60}, "sink"),
		overflow: f.CounterVec("state_overflow_total", "Series, peers, sources or targets not tracked because a bound was reached.", "what"),
	}
}

// Dispatcher applies storm control, then hands each alert to every sink.
type Dispatcher struct {
	r       *reporter.Reporter
	m       *metrics
	sinks   []Sink
	limits  map[string]int // rule → alerts per minute (0: no limit)
	warn    *reporter.Limited
	mu      sync.Mutex
	sent    map[string]bool        // fingerprint → firing sent
	windows map[string]*rateWindow // rule → this minute's count
	// Observe, when set, sees every alert that passed storm control.
	Observe func(Alert)
}

type rateWindow struct {
	start time.Time
	n     int
}

func newDispatcher(r *reporter.Reporter, m *metrics, sinks []Sink, limits map[string]int) *Dispatcher {
	return &Dispatcher{r: r, m: m, sinks: sinks, limits: limits, warn: reporter.NewLimited(r.Log, time.Minute),
		sent: map[string]bool{}, windows: map[string]*rateWindow{}}
}

// Emit takes an alert from the evaluator or the detectors.
func (d *Dispatcher) Emit(a Alert) {
	fp := a.Fingerprint()
	d.mu.Lock()
	if a.Firing() {
		if d.sent[fp] {
			d.mu.Unlock()
			d.m.suppressed.WithLabelValues(a.Rule, "duplicate").Inc()
			return
		}
		if lim := d.limits[a.Rule]; lim > 0 {
			w := d.windows[a.Rule]
			if w == nil || a.FiredAt.Sub(w.start) >= time.Minute || a.FiredAt.Before(w.start) {
				w = &rateWindow{start: a.FiredAt}
				d.windows[a.Rule] = w
			}
			if w.n >= lim {
				d.mu.Unlock()
				d.m.suppressed.WithLabelValues(a.Rule, "rate").Inc()
				d.warn.Warn("rate "+a.Rule, "alert rule over its rate limit: alerts counted, not sent",
					"rule", a.Rule, "limit_per_minute", lim, "key", a.Key)
				return
			}
			w.n++
		}
		d.sent[fp] = true
	} else {
		if !d.sent[fp] { // its firing was suppressed: so is its end
			d.mu.Unlock()
			return
		}
		delete(d.sent, fp)
	}
	d.mu.Unlock()
	d.m.alerts.WithLabelValues(a.Rule, a.Status()).Inc()
	d.r.Log.Info("alert "+a.Status(), "rule", a.Rule, "scope", a.Scope, "key", a.Key, "value", a.Value,
		"starts_at", a.StartsAt, "fired_at", a.FiredAt)
	if d.Observe != nil {
		d.Observe(a)
	}
	for _, s := range d.sinks {
		s.Send(a)
	}
}

// queue is a sink's bounded queue: overflow is counted and logged through a
// rate limiter, never silent.
type queue struct {
	name string
	ch   chan Alert
	m    *metrics
	warn *reporter.Limited
	// pending counts the notifications queued or being delivered: the
	// sink's sender calls done for each it took.
	pending atomic.Int64
}

// stopGrace is how long a sink's Stop waits for what it holds to be
// delivered (SIGTERM, or the end of a --pcap replay, which queued its
// alerts within milliseconds) before it gives up on the rest.
const stopGrace = 5 * time.Second

// done says a notification taken from ch was delivered or given up.
func (q *queue) done() { q.pending.Add(-1) }

// drain waits until nothing is queued or being delivered, at most d.
func (q *queue) drain(d time.Duration) {
	pollUntil(d, func() bool { return q.pending.Load() <= 0 })
}

// pollUntil polls ok until it holds, at most d.
func pollUntil(d time.Duration, ok func() bool) {
	for deadline := time.Now().Add(d); !ok() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
}

func newQueue(r *reporter.Reporter, m *metrics, name string, size int) *queue {
	return &queue{name: name, ch: make(chan Alert, size), m: m, warn: reporter.NewLimited(r.Log, time.Minute)}
}

func (q *queue) put(a Alert) {
	q.pending.Add(1)
	select {
	case q.ch <- a:
	default:
		q.pending.Add(-1)
		q.m.dropped.WithLabelValues(q.name).Inc()
		q.warn.Warn("full", "alert queue full: notification dropped (counted in spanflow_alert_queue_dropped_total)",
			"sink", q.name, "rule", a.Rule, "status", a.Status())
	}
}

// delivered records a first delivery of a firing alert.
func (m *metrics) deliveredAt(sink string, a *Alert, now time.Time) {
	m.delivered.WithLabelValues(sink).Inc()
	if a.Firing() {
		m.latency.WithLabelValues(sink).Observe(now.Sub(a.StartsAt).Seconds())
	}
}
