package elasticsearch

import (
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/spanflow/spanflow/internal/reporter"
)

// TestMetricsLint: the output's metrics pass promlint and carry the
// spanflow_elasticsearch_ prefix.
func TestMetricsLint(t *testing.T) {
	r := reporter.NewForTest(nil)
	c := DefaultConfiguration()
	c.SpoolDir = filepath.Join(t.TempDir(), "spool")
	o, err := New(r, c)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Stop()
	families, err := r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) != 7 {
		t.Errorf("%d metric families registered, want the output's 7", len(families))
	}
	for _, f := range families {
		if len(f.GetName()) < 23 || f.GetName()[:23] != "spanflow_elasticsearch_" {
			t.Errorf("metric %s lacks the spanflow_elasticsearch_ prefix", f.GetName())
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
