package alert

import (
	"fmt"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

type memSink struct{ got []Alert }

func (m *memSink) Name() string { return "mem" }
func (m *memSink) Send(a Alert) { m.got = append(m.got, a) }
func (m *memSink) Start() error { return nil }
func (m *memSink) Stop() error  { return nil }

// TestStormControl: a rule limited to 5 alerts a minute sends 5 of 50 and
// counts the rest; their resolutions are not sent either; a duplicate
// firing is counted once; the next minute sends again.
func TestStormControl(t *testing.T) {
	r := reporter.NewForTest(nil)
	m := newMetrics(r)
	sink := &memSink{}
	d := newDispatcher(r, m, []Sink{sink}, map[string]int{"scan": 5})
	for i := 0; i < 50; i++ {
		d.Emit(testAlert("scan", fmt.Sprint(i), t0.Add(time.Duration(i)*time.Second)))
	}
	d.Emit(testAlert("scan", "0", t0.Add(50*time.Second))) // still firing: duplicate
	for i := 0; i < 50; i++ {
		a := testAlert("scan", fmt.Sprint(i), t0.Add(time.Duration(i)*time.Second))
		a.EndsAt = t0.Add(55 * time.Second)
		d.Emit(a)
	}
	d.Emit(testAlert("scan", "x", t0.Add(2*time.Minute)))
	if len(sink.got) != 11 {
		t.Errorf("%d sent, want 5 firing + 5 resolved + 1 next minute", len(sink.got))
	}
	if got := promtest.ToFloat64(m.suppressed.WithLabelValues("scan", "rate")); got != 45 {
		t.Errorf("rate-suppressed %v, want 45", got)
	}
	if got := promtest.ToFloat64(m.suppressed.WithLabelValues("scan", "duplicate")); got != 1 {
		t.Errorf("duplicates %v, want 1", got)
	}
}

// TestMetricsLint: the alert metrics pass promlint, with their prefix.
func TestMetricsLint(t *testing.T) {
	r := reporter.NewForTest(nil)
	m := newMetrics(r)
	a := testAlert("r", "k", t0)
	m.alerts.WithLabelValues("r", "firing").Inc()
	m.suppressed.WithLabelValues("r", "rate").Inc()
	m.dropped.WithLabelValues("webhook").Inc()
	m.errors.WithLabelValues("webhook").Inc()
	m.overflow.WithLabelValues("series").Inc()
	m.deliveredAt("webhook", &a, t0.Add(time.Second))
	if n := testutil.LintMetrics(t, r.Registry, "spanflow_alert_"); n != 7 {
		t.Errorf("%d metric families, want 7", n)
	}
}
