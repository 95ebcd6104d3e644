package elasticsearch

import (
	"path/filepath"
	"testing"

	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
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
	if n := testutil.LintMetrics(t, r.Registry, "spanflow_elasticsearch_"); n != 9 {
		t.Errorf("%d metric families registered, want the output's 9", n)
	}
}
