package interfaces

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/spanflow/spanflow/internal/reporter"
)

// TestMetricsLint: the metrics pass promlint and carry the spanflow_interfaces_ prefix.
func TestMetricsLint(t *testing.T) {
	r := reporter.NewForTest(nil)
	if _, err := New(r, DefaultConfiguration()); err != nil {
		t.Fatal(err)
	}
	families, err := r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) == 0 {
		t.Fatal("no metrics registered")
	}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "spanflow_interfaces_") {
			t.Errorf("metric %s lacks the spanflow_interfaces_ prefix", f.GetName())
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
