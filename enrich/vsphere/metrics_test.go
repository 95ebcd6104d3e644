package vsphere

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/spanflow/spanflow/internal/reporter"
)

// TestMetricsLint: the metrics pass promlint and carry the spanflow_vsphere_ prefix.
func TestMetricsLint(t *testing.T) {
	r := reporter.NewForTest(nil)
	cfg := DefaultConfiguration()
	cfg.URL, cfg.User = "https://vcenter.example.com", "u"
	c, err := New(r, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.metrics.connects.WithLabelValues("ok")
	c.metrics.lookups.add(0, Unknown, 1)
	families, err := r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) == 0 {
		t.Fatal("no metrics registered")
	}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "spanflow_vsphere_") {
			t.Errorf("metric %s lacks the spanflow_vsphere_ prefix", f.GetName())
		}
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
