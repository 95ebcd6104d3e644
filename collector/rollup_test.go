package collector

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/reporter"
)

// TestRollupsWiring checks that the rollups are on by default, off with
// --rollups=false, and that a bad rollup setting is named by its key.
func TestRollupsWiring(t *testing.T) {
	cfg := DefaultConfiguration()
	cfg.Input.NetFlowListen, cfg.Input.IPFIXListen, cfg.Input.SFlowListen = []string{"127.0.0.1:0"}, nil, nil
	cfg.Input.IPFIXTCPListen, cfg.MetricsListen = nil, ""
	c, err := New(reporter.NewForTest(nil), cfg, Dependencies{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if c.Rollups() == nil {
		t.Fatal("rollups are off by default")
	}
	if c.Rollups().Configuration().EventTime {
		t.Error("a live collector ticks by event time")
	}
	if got := c.Rollups().Configuration().BaselineWindow; got != 5*time.Minute {
		t.Errorf("rollup-baseline-window %s by default, want 5m", got)
	}
	cfg.Rollups.BaselineWindow = 20 * time.Second
	if c, err = New(reporter.NewForTest(nil), cfg, Dependencies{Stdout: io.Discard}); err != nil || c.Rollups().Configuration().BaselineWindow != 20*time.Second {
		t.Fatalf("rollup-baseline-window 20s: %v, not handed to the engine", err)
	}
	cfg.Rollups.Enabled = false
	if c, err = New(reporter.NewForTest(nil), cfg, Dependencies{Stdout: io.Discard}); err != nil || c.Rollups() != nil {
		t.Fatalf("--rollups=false: %v, engine %v", err, c.Rollups())
	}
	cfg.Rollups.Enabled, cfg.Rollups.MaxSeries, cfg.Rollups.IndexInterval = true, 0, 1500*1e6
	cfg.Rollups.BaselineWindow = 100 * time.Millisecond
	err = cfg.Validate()
	for _, want := range []string{"rollup-max-series: must be at least 1", "rollup-index-interval: must be a multiple of rollup-tick",
		"rollup-baseline-window: must be at least rollup-tick"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v; want %q", err, want)
		}
	}
}
