package meter

import "github.com/prometheus/client_golang/prometheus"

var reasonNames = [...]string{1: "idle", 2: "active", 3: "end_of_flow", 4: "forced", 5: "lack_of_resources"}

// registerMetrics exposes the table's counters; they are plain integers
// updated on the hot path and read at scrape time.
func (t *Table) registerMetrics() {
	f := t.r.Factory("meter")
	f.GaugeFunc("flows", "Flows in the flow table.", func() float64 { return float64(t.n) })
	f.CounterFunc("packets_total", "Packets metered.", func() float64 { return float64(t.stats.Packets) })
	f.CounterFunc("octets_total", "IP octets metered.", func() float64 { return float64(t.stats.Octets) })
	f.CounterFunc("flows_created_total", "Flows created in the table.", func() float64 { return float64(t.stats.FlowsCreated) })
	f.CounterFunc("flows_evicted_total", "Flows exported early because the table was full.", func() float64 { return float64(t.stats.FlowsEvicted) })
	f.CounterFunc("sink_errors_total", "Batches of flows the exporter could not take.", func() float64 { return float64(t.stats.SinkErrors) })
	for reason := 1; reason < len(reasonNames); reason++ {
		t.r.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "spanflow", Subsystem: "meter", Name: "flows_exported_total",
			Help:        "Flows ended and passed on, by flowEndReason.",
			ConstLabels: prometheus.Labels{"reason": reasonNames[reason]},
		}, func() float64 { return float64(t.stats.FlowsExported[reason]) }))
	}
}
