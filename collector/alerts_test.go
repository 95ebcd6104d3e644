package collector

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spanflow/spanflow/internal/reporter"
)

// TestAlertsUnknownProject: the collector refuses at start a rule naming a
// project that neither the networks file nor vCenter knows, and starts
// with one they know.
func TestAlertsUnknownProject(t *testing.T) {
	dir := t.TempDir()
	nets := filepath.Join(dir, "networks.yaml")
	os.WriteFile(nets, []byte("10.2.0.0/16: {name: dc, project: payments}\n"), 0o644)
	for project, wantErr := range map[string]string{"payments": "", "billing": `line 2: rule "a": unknown project "billing"`} {
		rules := filepath.Join(dir, project+".yaml")
		os.WriteFile(rules, []byte("rules:\n  - name: a\n    value: bytes_per_second\n    project: "+project+"\n    above: 1e6\n"), 0o644)
		cfg := DefaultConfiguration()
		cfg.Input.Pcap, cfg.MetricsListen, cfg.Outputs.Output = filepath.Join(dir, "none.pcap"), "", []string{"file:" + filepath.Join(dir, "out.ndjson")}
		cfg.Enrichment.Networks, cfg.Alerts.Rules = nets, rules
		c, err := New(reporter.NewForTest(nil), cfg, Dependencies{})
		if err != nil {
			t.Fatal(err)
		}
		if c.Alerts() == nil {
			t.Fatal("no alerting stage")
		}
		err = c.Start()
		if wantErr == "" && err != nil || wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)) {
			t.Errorf("%s: start: %v, want %q", project, err, wantErr)
		}
		if err == nil {
			c.Stop()
		}
	}
}
