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

// touchAll counts once in every series an exporter can have.
func touchAll(m *metrics, e *exporterMetrics) {
	e.options.Inc()
	e.held.Inc()
	e.expired.Inc()
	e.badHeaders.Inc()
	e.discards.Inc()
	e.unknownSamples.Inc()
	e.setTemplates(3)
	for k := range e.lost {
		if e.lost[k] != nil {
			e.lost[k].Inc()
		}
	}
	for _, why := range []string{"no_template", "bad_set", "template_limit", "some_new_reason"} {
		m.decodeErrorsOf(e, why).Inc()
	}
}

// seriesOf counts the series, of every metric, whose exporter label is exp.
func seriesOf(t testing.TB, r *reporter.Reporter, exp string) int {
	t.Helper()
	mfs, err := r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			for _, p := range s.GetLabel() {
				if p.GetName() == "exporter" && p.GetValue() == exp {
					n++
				}
			}
		}
	}
	return n
}

// TestPruneDeletesEverySeries: pruning an exporter deletes every series
// that names it, in every metric, whatever decode error reasons it
// counted; an exporter the decoder keeps keeps all of its own.
func TestPruneDeletesEverySeries(t *testing.T) {
	r := reporter.NewForTest(nil)
	m := newMetrics(r, 10)
	gone, kept := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	touchAll(m, m.exporter(gone, true))
	touchAll(m, m.exporter(kept, true))
	before := seriesOf(t, r, kept.String())
	if got := seriesOf(t, r, gone.String()); got != before || got < 20 {
		t.Fatalf("%d and %d series before pruning, want the same number, at least 20", got, before)
	}
	m.prune(func(a netip.Addr) bool { return a == kept })
	if got := seriesOf(t, r, gone.String()); got != 0 {
		t.Errorf("%d series of the pruned exporter left", got)
	}
	if got := seriesOf(t, r, kept.String()); got != before {
		t.Errorf("the kept exporter has %d series, had %d", got, before)
	}
}

// BenchmarkPruneExporters: 1,000 exporters, each with its series and a few
// decode error reasons, going silent together: one prune, under the lock
// every datagram takes.
func BenchmarkPruneExporters(b *testing.B) {
	const n = 1000
	for range b.N {
		b.StopTimer()
		r := reporter.NewForTest(nil)
		m := newMetrics(r, n)
		for i := range n {
			touchAll(m, m.exporter(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), true))
		}
		b.StartTimer()
		m.prune(func(netip.Addr) bool { return false })
	}
}
