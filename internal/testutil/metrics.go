package testutil

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// LintMetrics gathers reg and fails the test when it registers nothing, when
// a metric lacks prefix (spanflow_<subsystem>_), or when promlint objects.
// It returns how many metric families it saw.
func LintMetrics(t testing.TB, reg prometheus.Gatherer, prefix string) int {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) == 0 {
		t.Fatal("no metrics registered")
	}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), prefix) {
			t.Errorf("metric %s lacks the %s prefix", f.GetName(), prefix)
		}
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	return len(families)
}
