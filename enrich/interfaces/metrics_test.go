package interfaces

import (
	"testing"

	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestMetricsLint: the metrics pass promlint and carry the spanflow_interfaces_ prefix.
func TestMetricsLint(t *testing.T) {
	r := reporter.NewForTest(nil)
	if _, err := New(r, DefaultConfiguration()); err != nil {
		t.Fatal(err)
	}
	testutil.LintMetrics(t, r.Registry, "spanflow_interfaces_")
}
