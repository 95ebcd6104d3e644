package distribute

import "github.com/prometheus/client_golang/prometheus"

// Collector exposes every rule's counters, labelled by rule; it reads the
// rules in force at each scrape, so rules added by a reload appear.
func (d *Distributor) Collector() prometheus.Collector { return collector{d} }

type collector struct{ d *Distributor }

var (
	descMatched = prometheus.NewDesc("spanflow_distribute_matched_packets_total", "Frames a distribution rule chose (filter and nets passed).", []string{"rule"}, nil)
	descDedup   = prometheus.NewDesc("spanflow_distribute_deduplicated_packets_total", "Chosen frames not sent: the same packet came within the rule's dedup window.", []string{"rule"}, nil)
	descSampled = prometheus.NewDesc("spanflow_distribute_sampled_out_packets_total", "Chosen frames not sent: 1-in-N sampling.", []string{"rule"}, nil)
	descSent    = prometheus.NewDesc("spanflow_distribute_sent_packets_total", "Frames sent to the rule's destination.", []string{"rule"}, nil)
	descBytes   = prometheus.NewDesc("spanflow_distribute_sent_bytes_total", "Bytes of the frames sent to the rule's destination (without the tunnel headers added).", []string{"rule"}, nil)
	descDropped = prometheus.NewDesc("spanflow_distribute_dropped_packets_total", "Chosen frames dropped: queue_full (the destination is slow, refusing or gone) or send_error (it refused them).", []string{"rule", "reason"}, nil)
)

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMatched, descDedup, descSampled, descSent, descBytes, descDropped} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.d.Stats() {
		counter := func(d *prometheus.Desc, v uint64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{s.Rule}, labels...)...)
		}
		counter(descMatched, s.Matched)
		counter(descDedup, s.Deduplicated)
		counter(descSampled, s.SampledOut)
		counter(descSent, s.Sent)
		counter(descBytes, s.Bytes)
		counter(descDropped, s.QueueFull, "queue_full")
		counter(descDropped, s.SendErrors, "send_error")
	}
}
