package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spanflow/spanflow/internal/testutil"
)

// TestCollectorPcap replays a VMware vDS IPFIX capture (tshark decodes 5
// data records in it) through `spanflow collector run --pcap`.
func TestCollectorPcap(t *testing.T) {
	path := filepath.Join(testutil.SharedTestdata(t), "flows", "logstash-derived", "ipfix-vmware-vds.pcap")
	app := newApp()
	var out, errOut strings.Builder
	app.Writer, app.ErrWriter = &out, &errOut
	app.ExitErrHandler = nil
	if err := app.Run([]string{"spanflow", "collector", "run", "--pcap", path, "--metrics-listen", "", "--exporter-stats-interval", "1h"}); err != nil {
		t.Fatalf("collector run: %v\n%s", err, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 6 {
		t.Fatalf("%d documents, want 5 flows and 1 exporter statistics:\n%s", len(lines), out.String())
	}
	for _, l := range lines {
		var doc struct {
			Flow     struct{ Protocol string }
			Observer struct{ IP string }
			Netflow  map[string]any
			Spanflow struct {
				Exporter *struct{ Records uint64 }
			}
		}
		if err := json.Unmarshal([]byte(l), &doc); err != nil {
			t.Fatalf("not JSON: %v: %s", err, l)
		}
		if doc.Spanflow.Exporter != nil {
			// Written when the replay stops: the 5 records tshark counts.
			if doc.Spanflow.Exporter.Records != 5 || doc.Observer.IP != "192.0.2.1" {
				t.Errorf("exporter statistics: %s", l)
			}
			continue
		}
		if doc.Flow.Protocol != "ipfix" || doc.Observer.IP != "192.0.2.1" {
			t.Errorf("document: %s", l)
		}
		if _, ok := doc.Netflow["vmware_vxlan_export_role"]; !ok {
			t.Errorf("VMware element missing: %s", l)
		}
	}
}

func TestCollectorBadOutput(t *testing.T) {
	_, err := run(t, "collector", "run", "--pcap", "/nonexistent", "--output", "kafka:x", "--metrics-listen", "")
	if err == nil || !strings.Contains(err.Error(), "unknown output") {
		t.Errorf("err = %v, want unknown output", err)
	}
}
