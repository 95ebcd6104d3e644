package pipeline

import (
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

// TestSetTemplatesKeepsTheLastValue: the templates gauge, written only when
// the number changes, ends with the value last written, 0 included, also
// when two goroutines write one exporter's numbers at once.
func TestSetTemplatesKeepsTheLastValue(t *testing.T) {
	newExporter := func() *exporterMetrics {
		e := &exporterMetrics{templates: prometheus.NewGauge(prometheus.GaugeOpts{Name: "t"})}
		e.lastTemplates.Store(-1)
		return e
	}
	e := newExporter()
	e.templates.Set(7) // not what the exporter said: the first number is written whatever it is
	for _, n := range []int{0, 0, 3, 3, 1} {
		e.setTemplates(n)
		if got := promtest.ToFloat64(e.templates); got != float64(n) {
			t.Fatalf("after %d: gauge %v", n, got)
		}
	}
	// Two updates at once, the first held between its two writes until
	// the second is done or has waited 100 ms for it: unordered, the
	// second's value would be the last written and the first's in the gauge.
	{
		e := newExporter()
		second := make(chan struct{})
		templatesHook = func(n int) {
			if n == 5 {
				go func() { e.setTemplates(6); close(second) }()
				select {
				case <-second:
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
		e.setTemplates(5)
		<-second
		templatesHook = nil
		if got, last := promtest.ToFloat64(e.templates), e.lastTemplates.Load(); got != float64(last) || last != 6 {
			t.Fatalf("gauge %v, last written %d, want both 6", got, last)
		}
	}
	for round := range 200 {
		e := newExporter()
		var wg sync.WaitGroup
		for g := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(round), uint64(g)))
				for range 500 {
					e.setTemplates(rng.IntN(4))
				}
			}()
		}
		wg.Wait()
		if got, last := promtest.ToFloat64(e.templates), e.lastTemplates.Load(); got != float64(last) {
			t.Fatalf("round %d: gauge %v, last written %d", round, got, last)
		}
	}
}

// TestExporterCountsSamples: the datagrams and records counted in the
// exporters' structs come out as the counter vectors did: every protocol
// of every exporter with series, zeros included, "other" for an unproven
// source, and nothing of an exporter once pruned.
func TestExporterCountsSamples(t *testing.T) {
	r := reporter.NewForTest(nil)
	m := newMetrics(r, 10)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	ea := m.exporter(a, true)
	ea.counts[flow.KindIPFIX].datagrams.Add(3)
	ea.counts[flow.KindIPFIX].records.Add(60)
	ea.counts[flow.KindSFlow].datagrams.Add(1)
	m.exporter(b, false).counts[flow.KindNetFlowV5].records.Add(30) // unproven: "other"
	samples := func() map[string]float64 {
		mfs, err := r.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			for _, s := range mf.GetMetric() {
				l := map[string]string{}
				for _, p := range s.GetLabel() {
					l[p.GetName()] = p.GetValue()
				}
				if _, ok := l["protocol"]; ok {
					out[mf.GetName()+" "+l["exporter"]+" "+l["protocol"]] = s.GetCounter().GetValue()
				}
			}
		}
		return out
	}
	got := samples()
	want := map[string]float64{}
	for _, exp := range []string{"192.0.2.1", "other"} {
		for _, p := range []string{"netflow_v5", "netflow_v9", "ipfix", "sflow"} {
			want["spanflow_collector_datagrams_total "+exp+" "+p] = 0
			want["spanflow_collector_records_total "+exp+" "+p] = 0
			want["spanflow_collector_sequence_lost_total "+exp+" "+p] = 0
		}
	}
	want["spanflow_collector_datagrams_total 192.0.2.1 ipfix"] = 3
	want["spanflow_collector_records_total 192.0.2.1 ipfix"] = 60
	want["spanflow_collector_datagrams_total 192.0.2.1 sflow"] = 1
	want["spanflow_collector_records_total other netflow_v5"] = 30
	if !reflect.DeepEqual(got, want) {
		t.Errorf("samples:\n%v\nwant\n%v", got, want)
	}
	m.prune(func(netip.Addr) bool { return false })
	for k := range samples() {
		if strings.Contains(k, "192.0.2.1") {
			t.Errorf("pruned exporter still has %s", k)
		}
	}
}
