package rollup

import (
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spanflow/spanflow/internal/reporter"
)

// metrics are the engine's own counters, read from its counts at scrape
// time, and the rows' values as gauges for the heaviest keys of each scope.
type metrics struct {
	ticks prometheus.Counter
}

func newMetrics(r *reporter.Reporter, e *Engine) *metrics {
	f := r.Factory("rollup")
	read := func(fn func(c *counters) float64) func() float64 {
		return func() float64 {
			e.mu.Lock()
			defer e.mu.Unlock()
			return fn(&e.stats)
		}
	}
	f.CounterFunc("records_total", "flow records rolled up", read(func(c *counters) float64 { return float64(c.records) }))
	f.CounterFunc("late_records_total", "flow records whose whole span ended before the open ticks (already published): not added",
		read(func(c *counters) float64 { return float64(c.lateRecords) }))
	f.CounterFunc("late_bytes_total", "bytes of flow records that fell in ticks already published (whole late records and the early part of long spans): not added",
		read(func(c *counters) float64 { return c.lateBytes }))
	f.CounterFunc("future_records_total", "flow records ending after the open ticks (clock ahead by more than the rollup-ahead margin): their counts are not added",
		read(func(c *counters) float64 { return float64(c.futureRecords) }))
	f.CounterFunc("future_bytes_total", "bytes of flow records that fell after the open ticks: not added",
		read(func(c *counters) float64 { return c.futureBytes }))
	f.CounterFunc("untimed_records_total", "flow records with neither a receive time nor an end time (or only times outside the years 1825-2115): not added",
		read(func(c *counters) float64 { return float64(c.untimed) }))
	f.CounterFunc("implausible_records_total", "flow records counting more than 2^53 bytes or 2^50 packets (a broken or hostile exporter): not added",
		read(func(c *counters) float64 { return float64(c.implausible) }))
	f.CounterFunc("evicted_series_total", "series forgotten after rollup-idle-timeout without traffic",
		read(func(c *counters) float64 { return float64(c.evicted) }))
	f.CounterFunc("talker_sampled_out_records_total", "flow records not fed to the talker sketches because the records a second exceeded rollup-talker-budget (each record fed stands for the ones skipped)",
		read(func(*counters) float64 { return float64(e.sampling.skipped) }))
	f.GaugeFunc("talker_sample_threshold_bytes", "records lighter than this are fed to the talker sketches with probability bytes/threshold, counted as the threshold; 0 while under rollup-talker-budget",
		read(func(*counters) float64 { return e.sampling.z }))
	overflow := prometheus.NewDesc("spanflow_rollup_series_overflow_records_total",
		"flow records whose series found its scope full (rollup-max-series): they count under key \"other\"", []string{"scope"}, nil)
	seriesDesc := prometheus.NewDesc("spanflow_rollup_series", "series held, by scope (the overflow series included)", []string{"scope"}, nil)
	talkersDesc := prometheus.NewDesc("spanflow_rollup_talker_counters", "Space-Saving counters held by the top-talker sketches of every row", nil, nil)
	r.Registry.MustRegister(collectorFunc{
		descs: []*prometheus.Desc{overflow, seriesDesc, talkersDesc},
		collect: func(ch chan<- prometheus.Metric) {
			e.mu.Lock()
			var held [numScopes]int
			talkers := 0
			for _, s := range e.all {
				held[s.scope]++
				if s.talkers != nil {
					talkers += len(s.talkers.slots)
				}
			}
			ov := e.stats.overflow
			e.mu.Unlock()
			for i, name := range scopeNames {
				ch <- prometheus.MustNewConstMetric(overflow, prometheus.CounterValue, float64(ov[i]), name)
				ch <- prometheus.MustNewConstMetric(seriesDesc, prometheus.GaugeValue, float64(held[i]), name)
			}
			ch <- prometheus.MustNewConstMetric(talkersDesc, prometheus.GaugeValue, float64(talkers))
		},
	})
	m := &metrics{ticks: f.Counter("ticks_total", "ticks published")}
	if e.cfg.MetricSeries > 0 {
		rm := &rowMetrics{max: e.cfg.MetricSeries}
		r.Registry.MustRegister(rm)
		e.subs = append(e.subs, rm)
	}
	return m
}

// collectorFunc is a Prometheus collector made of a function.
type collectorFunc struct {
	descs   []*prometheus.Desc
	collect func(ch chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

// rowMetric is a value exposed per row; RTTs in seconds, as Prometheus
// wants base units.
type rowMetric struct {
	value ValueID
	desc  *prometheus.Desc
	scale float64
}

var rowMetricList = func() []rowMetric {
	mk := func(value, name, help string, scale float64) rowMetric {
		id, ok := ValueOf(value)
		if !ok {
			panic("rollup: no value " + value)
		}
		return rowMetric{id, prometheus.NewDesc("spanflow_rollup_"+name, help+" (the rollup-metric-series heaviest keys of each scope)",
			[]string{"scope", "key"}, nil), scale}
	}
	return []rowMetric{
		mk(BytesPerSecond, "bytes_per_second", "bytes per second in the last tick", 1),
		mk(BytesPerSecondSmoothed, "bytes_per_second_smoothed", "bytes per second, exponential moving average", 1),
		mk(BytesPerSecondBaseline, "bytes_per_second_baseline", "bytes per second, slow moving average", 1),
		mk(PacketsPerSecond, "packets_per_second", "packets per second in the last tick", 1),
		mk(FlowsPerSecond, "flows_per_second", "flow records per second in the last tick", 1),
		mk(RetransmissionRatio, "retransmission_ratio", "TCP retransmitted packets over TCP packets in the last tick", 1),
		mk(ZeroWindowsPerSecond, "zero_windows_per_second", "TCP zero-window segments per second in the last tick", 1),
		mk(UnansweredSYNsPerSecond, "unanswered_syns_per_second", "TCP flows with SYN and no ACK per second in the last tick", 1),
		mk(RTTp50, "rtt_p50_seconds", "median TCP handshake RTT over the last one to two RTT windows", 1e-3),
		mk(RTTp95, "rtt_p95_seconds", "95th percentile TCP handshake RTT over the last one to two RTT windows", 1e-3),
		mk(RTTp99, "rtt_p99_seconds", "99th percentile TCP handshake RTT over the last one to two RTT windows", 1e-3),
	}
}()

// rowMetrics keeps, from each snapshot, the max heaviest rows of each
// scope by smoothed bytes per second, and exposes their values: the label
// sets are bounded by scopes x max whatever the traffic.
type rowMetrics struct {
	max  int
	top  []*Row // reused by Rollup
	mu   sync.Mutex
	rows []metricRow
}

type metricRow struct {
	scope, key string
	values     []float64 // by rowMetricList; NaN when absent
	present    []bool
}

// heavier orders rows for the metrics: by smoothed bytes per second, then
// by key.
func heavier(a, b *Row) bool {
	x, y := a.Values.v[vBytesSmoothed], b.Values.v[vBytesSmoothed]
	return x > y || x == y && a.Key < b.Key
}

func (m *rowMetrics) Rollup(s *Snapshot) {
	var out []metricRow
	for _, scope := range scopeNames {
		// The max heaviest rows of the scope: a heap of them, the lightest
		// at its root, rather than a sort of every row every tick.
		h := m.top[:0]
		for i := range s.Rows {
			r := &s.Rows[i]
			if r.Scope != scope {
				continue
			}
			if len(h) < m.max {
				h = append(h, r)
				for j := len(h) - 1; j > 0 && heavier(h[(j-1)/2], h[j]); j = (j - 1) / 2 {
					h[j], h[(j-1)/2] = h[(j-1)/2], h[j]
				}
				continue
			}
			if !heavier(r, h[0]) {
				continue
			}
			h[0] = r
			for j := 0; ; {
				c := 2*j + 1
				if c >= len(h) {
					break
				}
				if c+1 < len(h) && heavier(h[c], h[c+1]) {
					c++
				}
				if !heavier(h[j], h[c]) {
					break
				}
				h[j], h[c] = h[c], h[j]
				j = c
			}
		}
		slices.SortFunc(h, func(a, b *Row) int {
			if heavier(a, b) {
				return -1
			}
			return 1
		})
		for _, r := range h {
			mr := metricRow{scope: r.Scope, key: r.Key, values: make([]float64, len(rowMetricList)), present: make([]bool, len(rowMetricList))}
			for i, rm := range rowMetricList {
				mr.values[i], mr.present[i] = r.Values.At(rm.value)
			}
			out = append(out, mr)
		}
		m.top = h[:0]
	}
	m.mu.Lock()
	m.rows = out
	m.mu.Unlock()
}

func (m *rowMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, rm := range rowMetricList {
		ch <- rm.desc
	}
}

func (m *rowMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	rows := m.rows
	m.mu.Unlock()
	for _, r := range rows {
		for i, rm := range rowMetricList {
			if r.present[i] {
				ch <- prometheus.MustNewConstMetric(rm.desc, prometheus.GaugeValue, r.values[i]*rm.scale, r.scope, r.key)
			}
		}
	}
}
