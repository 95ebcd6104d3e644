package exporter

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestSumRegistries: the fanout workers' series add up, except events every
// worker's socket sees (an interface going down), which count once.
func TestSumRegistries(t *testing.T) {
	var regs sumRegistries
	for _, v := range []struct{ frames, downs float64 }{{3, 1}, {4, 1}, {5, 0}} {
		r := prometheus.NewRegistry()
		frames := prometheus.NewCounter(prometheus.CounterOpts{Name: "spanflow_decode_frames_total", Help: "h"})
		downs := prometheus.NewCounter(prometheus.CounterOpts{Name: "spanflow_capture_link_downs_total", Help: "h"})
		frames.Add(v.frames)
		downs.Add(v.downs)
		r.MustRegister(frames, downs)
		regs = append(regs, r)
	}
	sum := prometheus.NewPedanticRegistry()
	sum.MustRegister(regs)
	got := map[string]float64{}
	families, err := sum.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		got[f.GetName()] = f.GetMetric()[0].GetCounter().GetValue()
	}
	if got["spanflow_decode_frames_total"] != 12 || got["spanflow_capture_link_downs_total"] != 1 {
		t.Errorf("summed series %v; want frames 12 (3+4+5), link downs 1 (seen by every worker)", got)
	}
	if len(families) != 2 {
		t.Errorf("%d series, want 2", len(families))
	}
}
