package meter

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// published is a copy of the table's counters that metrics read: the table
// itself is owned by the pipeline goroutine, which publishes its counters
// once per sweep and when asked (Publish), so a scrape never races it.
type published struct {
	mu    sync.Mutex
	stats Stats
	flows int
}

func (p *published) get() (Stats, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats, p.flows
}

// Publish makes the current counters visible to metrics. The pipeline calls
// it every few thousand packets; sweeps and Flush call it too.
func (t *Table) Publish() {
	t.pub.mu.Lock()
	t.pub.stats, t.pub.flows = t.stats, t.n
	t.pub.mu.Unlock()
}

var reasonNames = [...]string{1: "idle", 2: "active", 3: "end_of_flow", 4: "forced", 5: "lack_of_resources"}

// registerMetrics exposes the table's counters; they are plain integers
// updated on the hot path and read at scrape time.
func (t *Table) registerMetrics() {
	f := t.r.Factory("meter")
	stat := func(f func(Stats) uint64) func() float64 {
		return func() float64 { s, _ := t.pub.get(); return float64(f(s)) }
	}
	f.GaugeFunc("flows", "Flows in the flow table.", func() float64 { _, n := t.pub.get(); return float64(n) })
	f.CounterFunc("packets_total", "Packets metered.", stat(func(s Stats) uint64 { return s.Packets }))
	f.CounterFunc("octets_total", "IP octets metered.", stat(func(s Stats) uint64 { return s.Octets }))
	f.CounterFunc("flows_created_total", "Flows created in the table.", stat(func(s Stats) uint64 { return s.FlowsCreated }))
	f.CounterFunc("flows_evicted_total", "Flows exported early because the table was full.", stat(func(s Stats) uint64 { return s.FlowsEvicted }))
	f.CounterFunc("sink_errors_total", "Batches of flows the exporter could not take.", stat(func(s Stats) uint64 { return s.SinkErrors }))
	for reason := 1; reason < len(reasonNames); reason++ {
		t.r.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "spanflow", Subsystem: "meter", Name: "flows_exported_total",
			Help:        "Flows ended and passed on, by flowEndReason.",
			ConstLabels: prometheus.Labels{"reason": reasonNames[reason]},
		}, stat(func(s Stats) uint64 { return s.FlowsExported[reason] })))
	}
}
