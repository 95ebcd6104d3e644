package main

import (
	"strings"
	"testing"

	"github.com/spanflow/spanflow/internal/testutil"
)

// TestESSetupAndPrune runs the commands against the test cluster, which has
// no ILM: setup must choose daily indices and say how to prune them.
func TestESSetupAndPrune(t *testing.T) {
	url := testutil.Elasticsearch(t)
	out, err := run(t, "es", "setup", "--es-url", url)
	if err != nil || !strings.Contains(out, "installed index template spanflow-flows") {
		t.Fatalf("es setup: %v\n%s", err, out)
	}
	if !strings.Contains(out, "daily indices spanflow-flows-YYYY.MM.DD") && !strings.Contains(out, "data stream") {
		t.Errorf("es setup does not say where flows go:\n%s", out)
	}
	out, err = run(t, "es", "prune", "--es-url", url, "--older-than", "36500d", "--dry-run")
	if err != nil || !strings.Contains(out, "no daily index older than 36500d") {
		t.Errorf("es prune dry run: %v\n%s", err, out)
	}
}

func TestESErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"es", "prune", "--older-than", "soon"}, "--older-than"},
		{[]string{"es", "prune", "--es-url", "http://127.0.0.1:1", "--es-timeout", "1s"}, "connection refused"},
		{[]string{"es", "setup", "--es-url", "http://127.0.0.1:1", "--es-lifecycle", "weekly"}, "es lifecycle"},
		{[]string{"es", "template", "--es-shards", "0"}, "shards"},
	} {
		_, err := run(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %v, want one line mentioning %q", tc.args, err, tc.want)
		}
	}
	out, err := run(t, "es", "template", "--data-stream")
	if err != nil || !strings.Contains(out, `"data_stream"`) || !strings.Contains(out, `"source"`) {
		t.Errorf("es template --data-stream: %v\n%.300s", err, out)
	}
}
