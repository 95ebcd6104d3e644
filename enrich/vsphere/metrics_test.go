package vsphere

import (
	"testing"

	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
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
	testutil.LintMetrics(t, r.Registry, "spanflow_vsphere_")
}
