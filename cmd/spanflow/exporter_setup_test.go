package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestExporterInit: the file init writes loads back to the defaults, and
// every setting of the configuration is in it, commented.
func TestExporterInit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "exporter.yaml")
	if out, err := run(t, "exporter", "init", "--output", path); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	cfg := exporter.DefaultConfiguration()
	if err := cfg.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Collectors) == 0 {
		cfg.Collectors = nil // "collector: []"
	}
	if len(cfg.Interfaces) == 0 {
		cfg.Interfaces = nil
	}
	if len(cfg.ActiveTimeoutFastFor) == 0 {
		cfg.ActiveTimeoutFastFor = nil
	}
	if !reflect.DeepEqual(cfg, exporter.DefaultConfiguration()) {
		t.Errorf("init file loads as %+v, want the defaults", cfg)
	}
	text, _ := os.ReadFile(path)
	lines := strings.Split(string(text), "\n")
	typ := reflect.TypeOf(exporter.Configuration{})
	for i := 0; i < typ.NumField(); i++ {
		key := strings.Split(typ.Field(i).Tag.Get("yaml"), ",")[0]
		found := false
		for j, l := range lines {
			if strings.HasPrefix(l, key+":") {
				found = true
				if j == 0 || !strings.HasPrefix(lines[j-1], "# ") || len(lines[j-1]) < 12 {
					t.Errorf("setting %s has no comment", key)
				}
			}
		}
		if !found {
			t.Errorf("setting %s missing from the init file", key)
		}
	}
	// A second init does not overwrite the file.
	if _, err := run(t, "exporter", "init", "--output", path); err == nil {
		t.Error("init overwrote an existing file without --force")
	}
}

// TestExporterCheck: each problem of a file is on its own line; a good file
// says OK.
func TestExporterCheck(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`interface: no-such-if0
collector: ["collector.invalid:4739", "tcp://127.0.0.1:99999", "http://127.0.0.1:80"]
idle-timeout: 15x
active-timeout: banana
bogus: 1
ring-size: 0
`), 0o644)
	out, err := run(t, "exporter", "check", "--config", bad)
	if err == nil {
		t.Fatalf("bad file accepted: %s", out)
	}
	want := []string{
		`line 3: .*unknown unit "x"`,
		`line 4: .*invalid duration "banana"`,
		`line 5: unknown key bogus`,
		`line 6: ring-size 0 MiB`,
		`line 2: collector "tcp://127.0.0.1:99999": port must be`,
		`line 2: collector "http://127.0.0.1:80": transport must be`,
		`line 1: interface no-such-if0: not on this host`,
		`line 2: collector collector.invalid:4739: host collector.invalid does not resolve`,
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(want) {
		t.Errorf("%d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for _, w := range want {
		if !regexp.MustCompile(regexp.QuoteMeta(bad) + ": " + w).MatchString(out) {
			t.Errorf("no line matching %q in:\n%s", w, out)
		}
	}

	missing := filepath.Join(dir, "missing.yaml")
	os.WriteFile(missing, []byte("collector: [\"127.0.0.1:4739\"]\n"), 0o644)
	if out, err := run(t, "exporter", "check", "--config", missing); err == nil || !strings.Contains(out, "no capture: set interface (--interface IFACE) or pcap (--pcap FILE)") {
		t.Errorf("missing interface: %v %s", err, out)
	}

	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("interface: lo\ncollector: [\"127.0.0.1:4739\", \"tcp://localhost:4739\"]\nidle-timeout: 30s\n"), 0o644)
	if out, err := run(t, "exporter", "check", "--config", good); err != nil || !strings.Contains(out, "OK") {
		t.Errorf("good file: %v: %s", err, out)
	}
}

// TestExporterCheckAsRun: what `exporter run` refuses, `exporter check`
// refuses too (the units run check before run): filters that do not
// compile, each problem once, at its key's line.
func TestExporterCheckAsRun(t *testing.T) {
	dir := t.TempDir()
	pcap := filepath.Join(dir, "mixed.pcap")
	if err := synth.WritePcapFile(pcap, synth.Mixed(time.Unix(0, 0)).Packets); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file string
		want       []string // the problems, in order
	}{
		{"filter", "interface: lo\ncollector: [\"127.0.0.1:4739\"]\nfilter: 'port port'\n",
			[]string{`line 3: filter "port port": `}},
		{"ring filter", "pcap: " + pcap + "\ncollector: [\"127.0.0.1:4739\"]\npacket-ring: " + dir + "/ring\npacket-ring-filter: 'port port'\n",
			[]string{`line 4: packet-ring-filter: filter "port port": `}},
		{"mtu once", "interface: lo\ncollector: [\"127.0.0.1:4739\"]\nmtu: 100\n",
			[]string{"line 3: mtu 100: must be between 576 and 65535"}},
		{"filter without interface", "pcap: " + pcap + "\ncollector: [\"127.0.0.1:4739\"]\nfilter: 'port 22'\n",
			[]string{"line 3: filter applies to a live capture: set interface (--interface IFACE)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			os.WriteFile(path, []byte(tc.file), 0o644)
			out, err := run(t, "exporter", "check", "--config", path)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if err == nil || len(lines) != len(tc.want) {
				t.Fatalf("check: %v, %d lines, want %d:\n%s", err, len(lines), len(tc.want), out)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(lines[i], path+": "+w) {
					t.Errorf("line %q, want %q", lines[i], w)
				}
			}
			if _, err := run(t, "exporter", "run", "--config", path, "--metrics-listen", "off"); err == nil {
				t.Error("run accepted the file")
			}
		})
	}
}

// TestExporterInstall: the unit runs the exporter as the given user with
// only CAP_NET_RAW and CAP_NET_ADMIN, and systemd-analyze accepts it.
func TestExporterInstall(t *testing.T) {
	dir := t.TempDir()
	unit := filepath.Join(dir, "spanflow-exporter.service")
	bin, _ := os.Executable()
	if out, err := run(t, "exporter", "install", "--path", unit, "--binary", bin, "--config", "/etc/spanflow/exporter.yaml"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	text, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\nUser=spanflow-exporter\n", "\nGroup=spanflow-exporter\n",
		"\nCapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN\n", "\nAmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN\n",
		"\nNoNewPrivileges=yes\n", "\nExecStart=" + bin + " exporter run --config /etc/spanflow/exporter.yaml\n",
		"\nKillSignal=SIGTERM\n",
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("unit lacks %q:\n%s", want, text)
		}
	}
	if n := strings.Count(string(text), "CAP_"); n != 4 {
		t.Errorf("unit names %d capabilities, want the two twice", n)
	}
	if _, err := run(t, "exporter", "install", "--path", unit, "--user", "root"); err == nil {
		t.Error("a unit running as root was written")
	}
	analyze := testutil.Command(t, "systemd-analyze")
	if out, err := exec.Command(analyze, "verify", unit).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze verify: %v: %s", err, out)
	}
}
