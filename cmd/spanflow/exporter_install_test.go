package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestExporterInstallRing: under ProtectSystem=strict the exporter can
// write its packet ring: /var/lib/spanflow is its state directory (the
// ring docs/retrospection.md puts there), and a ring the --config file
// puts elsewhere gets a ReadWritePaths= of its own.
func TestExporterInstallRing(t *testing.T) {
	dir := t.TempDir()
	bin, _ := os.Executable()
	for _, tc := range []struct {
		name, config string
		want         string // ReadWritePaths, "" for none
	}{
		{"no file", "", ""},
		{"no ring", "collector: [\"127.0.0.1:4739\"]\n", ""},
		{"ring in the state directory", "packet-ring: /var/lib/spanflow/ring\n", ""},
		{"ring elsewhere", "packet-ring: /srv/ring/\n", "/srv/ring"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			config := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if tc.config != "" {
				os.WriteFile(config, []byte(tc.config), 0o600)
			}
			unit := filepath.Join(dir, "spanflow-exporter.service")
			if out, err := run(t, "exporter", "install", "--path", unit, "--binary", bin, "--config", config); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			b, _ := os.ReadFile(unit)
			text := string(b)
			if !strings.Contains(text, "\nProtectSystem=strict\n") || !strings.Contains(text, "\nStateDirectory=spanflow\n") {
				t.Errorf("unit without its state directory:\n%s", text)
			}
			got := ""
			for _, l := range strings.Split(text, "\n") {
				if v, ok := strings.CutPrefix(l, "ReadWritePaths="); ok {
					got = v
				}
			}
			if got != tc.want {
				t.Errorf("ReadWritePaths=%q, want %q", got, tc.want)
			}
			// Where systemd-analyze is (TestExporterInstall requires it).
			if path, err := exec.LookPath("systemd-analyze"); err == nil {
				if out, err := exec.Command(path, "verify", unit).CombinedOutput(); err != nil {
					t.Errorf("systemd-analyze verify: %v: %s", err, out)
				}
			}
		})
	}
	// A ring the service would look for relative to / is refused.
	bad := filepath.Join(dir, "relative.yaml")
	os.WriteFile(bad, []byte("packet-ring: ring\n"), 0o600)
	if _, err := run(t, "exporter", "install", "--path", filepath.Join(dir, "x.service"), "--config", bad); err == nil ||
		!strings.Contains(err.Error(), `packet-ring "ring": the service needs an absolute path`) {
		t.Errorf("relative ring: %v", err)
	}
}
