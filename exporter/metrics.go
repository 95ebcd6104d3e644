package exporter

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// sumRegistries is a collector adding up the same series of several
// registries (the fanout workers'), except for events every worker sees
// (seenByEveryWorker), which count once: the highest.
type sumRegistries []*prometheus.Registry

func (sumRegistries) Describe(chan<- *prometheus.Desc) {} // unchecked: the series are the workers'

func (s sumRegistries) Collect(ch chan<- prometheus.Metric) {
	type series struct {
		desc  *prometheus.Desc
		typ   prometheus.ValueType
		value float64
		vals  []string
	}
	sums := map[string]*series{}
	var order []string
	for _, r := range s {
		families, err := r.Gather()
		if err != nil {
			continue
		}
		for _, f := range families {
			for _, m := range f.GetMetric() {
				var names, vals []string
				for _, l := range m.GetLabel() {
					names, vals = append(names, l.GetName()), append(vals, l.GetValue())
				}
				key := f.GetName() + "\x00" + strings.Join(vals, "\x00")
				v, typ := 0.0, prometheus.UntypedValue
				switch {
				case m.Counter != nil:
					v, typ = m.GetCounter().GetValue(), prometheus.CounterValue
				case m.Gauge != nil:
					v, typ = m.GetGauge().GetValue(), prometheus.GaugeValue
				case m.Untyped != nil:
					v = m.GetUntyped().GetValue()
				default:
					continue
				}
				if sums[key] == nil {
					sums[key] = &series{desc: prometheus.NewDesc(f.GetName(), f.GetHelp(), names, nil), typ: typ, vals: vals}
					order = append(order, key)
				}
				if seenByEveryWorker[f.GetName()] {
					sums[key].value = max(sums[key].value, v)
				} else {
					sums[key].value += v
				}
			}
		}
	}
	for _, k := range order {
		x := sums[k]
		ch <- prometheus.MustNewConstMetric(x.desc, x.typ, x.value, x.vals...)
	}
}

// seenByEveryWorker are the series of events that each fanout worker's
// socket sees: an interface going down is one event, not one per worker.
var seenByEveryWorker = map[string]bool{"spanflow_capture_link_downs_total": true}
