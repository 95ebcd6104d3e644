package pipeline

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
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
