package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v2"

	"github.com/spanflow/spanflow/collector"
	"github.com/spanflow/spanflow/internal/testutil"
)

// collectorConfigFrom returns the Configuration `collector run` would use
// with these arguments, without running anything.
func collectorConfigFrom(t *testing.T, args ...string) collector.Configuration {
	t.Helper()
	var got collector.Configuration
	app := &cli.App{Name: "t", Flags: collectorRunFlags(), Writer: io.Discard, ErrWriter: io.Discard,
		Action: func(c *cli.Context) error {
			var err error
			got, err = collectorConfiguration(c)
			return err
		}}
	if err := app.Run(append([]string{"t"}, args...)); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return got
}

// guideBlocks returns the production file of docs/guide-collectors.md (the
// yaml block after its marker) and the flags of the `collector run`
// command written beside it.
func guideBlocks(t *testing.T) (file string, flags []string) {
	t.Helper()
	path := filepath.Join("..", "..", "docs", "guide-collectors.md")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i := strings.Index(text, "<!-- collector.yaml")
	if i < 0 {
		t.Fatal("docs/guide-collectors.md has no collector.yaml block")
	}
	text = text[i:]
	start := strings.Index(text, "```yaml\n") + len("```yaml\n")
	end := strings.Index(text[start:], "```")
	file = text[start : start+end]
	for _, l := range commandLines(t, path) {
		if f := strings.Fields(l); len(f) > 2 && f[0] == "collector" && f[1] == "run" && f[2] == "--netflow-listen" {
			flags = f[2:]
		}
	}
	if len(flags) == 0 {
		t.Fatal("docs/guide-collectors.md has no `collector run` with every flag beside the file")
	}
	return file, flags
}

// TestCollectorConfigurationFromGuide: the production file in the guide
// and the equivalent flags written beside it give equal Configurations,
// which differ from the defaults in every group.
func TestCollectorConfigurationFromGuide(t *testing.T) {
	text, flags := guideBlocks(t)
	path := filepath.Join(t.TempDir(), "collector.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	fromFile := collectorConfigFrom(t, "--config", path)
	fromFlags := collectorConfigFrom(t, flags...)
	if diff := cmp.Diff(fromFile, fromFlags); diff != "" {
		t.Errorf("file and flags differ (-file, +flags):\n%s", diff)
	}
	def := collector.DefaultConfiguration()
	for name, same := range map[string]bool{
		"input":         cmp.Equal(fromFile.Input, def.Input),
		"outputs":       cmp.Equal(fromFile.Outputs, def.Outputs),
		"elasticsearch": cmp.Equal(fromFile.Elasticsearch, def.Elasticsearch),
		"enrichment":    cmp.Equal(fromFile.Enrichment, def.Enrichment),
	} {
		if same {
			t.Errorf("the guide's file leaves the %s settings at their defaults: the test would not see a lost key", name)
		}
	}
	if fromFile.Input.Sockets != 4 || len(fromFile.Elasticsearch.Connection.URLs) != 2 || *fromFile.Enrichment.VCenterWait != 10*time.Second {
		t.Errorf("settings not read: sockets %d, es-url %v", fromFile.Input.Sockets, fromFile.Elasticsearch.Connection.URLs)
	}
}

// TestCollectorFlagsOverFile: a flag given wins over the file, the file over
// the defaults; settings whose default depends on the mode stay unset
// unless given.
func TestCollectorFlagsOverFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "collector.yaml")
	if err := os.WriteFile(path, []byte("sockets: 2\nsflow-listen: []\nes-workers: 7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := collectorConfigFrom(t, "--config", path, "--sockets", "3")
	want := collector.DefaultConfiguration()
	want.Input.Sockets, want.Input.SFlowListen, want.Elasticsearch.Workers = 3, []string{}, 7
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("configuration (-got, +want):\n%s", diff)
	}
	if got.Input.ExporterStatsInterval != nil || got.Enrichment.VCenterWait != nil {
		t.Error("mode-dependent settings set without being given")
	}
}

// TestCollectorReplayMetrics: a replay (--pcap) serves no metrics unless
// metrics-listen is given, by flag or in the file: the collector service
// holds the default port.
func TestCollectorReplayMetrics(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.yaml")
	os.WriteFile(plain, []byte("sockets: 2\n"), 0o600)
	withMetrics := filepath.Join(dir, "metrics.yaml")
	os.WriteFile(withMetrics, []byte("metrics-listen: 127.0.0.1:9199\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--pcap", "x.pcap"}, ""},
		{[]string{"--pcap", "x.pcap", "--config", plain}, ""},
		{[]string{"--pcap", "x.pcap", "--config", withMetrics}, "127.0.0.1:9199"},
		{[]string{"--pcap", "x.pcap", "--metrics-listen", "127.0.0.1:9109"}, "127.0.0.1:9109"},
		{nil, collector.DefaultMetricsListen},
		{[]string{"--config", plain}, collector.DefaultMetricsListen},
	} {
		if got := collectorConfigFrom(t, tc.args...).MetricsListen; got != tc.want {
			t.Errorf("%q: metrics-listen %q, want %q", tc.args, got, tc.want)
		}
	}
}

// TestCollectorCheck: `collector check` reports bad YAML, unknown keys,
// values of the wrong type and wrong values, each with its line.
func TestCollectorCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, text string
		want       []string // in order, one line each
	}{
		{"good", "sockets: 2\nallow: [10.0.0.0/8]\noutput: [stdout, \"file:/tmp/x.ndjson\"]\n", nil},
		{"everything wrong", "sockets: 0\n" + // 1
			"allow: [10.0.0.0/33]\n" + // 2
			"socket: 4\n" + // 3
			"template-wait: soon\n" + // 4
			"output: [hdfs, file]\n" + // 5
			"networks: /nonexistent/networks.yaml\n" + // 6
			"max-exporters: many\n" + // 7
			"metrics-listen: localhost\n", // 8
			[]string{
				"line 1: sockets: must be at least 1, not 0",
				"line 2: allow: allowed exporter network \"10.0.0.0/33\"",
				"line 3: unknown key socket",
				`line 4: template-wait: "soon" is not a duration (write 30s, 5m or 1h)`,
				"line 5: output: unknown output \"hdfs\"",
				"line 5: output: \"file\" needs a path",
				"line 6: networks: read networks file",
				`line 7: max-exporters: "many" is not a whole number`,
				"line 8: metrics-listen: \"localhost\": want [HOST]:PORT",
			}},
		{"live view", "sockets: 2\n" +
			"ui: 0.0.0.0:8443\n" + // 2
			"ui-user-header: X-Forwarded-User\n" + // 3
			"ui-history: 10s\n", // 4
			[]string{
				"line 2: ui: 0.0.0.0:8443 is beyond loopback: give ui-tls-cert-file and ui-tls-key-file",
				"line 3: ui-user-header: needs ui-trusted-proxy",
				"line 4: ui-history: must be between 1m and 24h, not 10s",
			}},
		{"bad yaml", "sockets: 2\noutput: [stdout]\n\tallow: x\n", []string{": line 3: found character that cannot start any token (indent with spaces: YAML does not allow tabs)"}},
		{"not a mapping", "- sockets\n", []string{": line 1: the file must hold a mapping of keys, not a list"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := write(tc.name+".yaml", tc.text)
			out, err := run(t, "collector", "check", "--config", path)
			if (err == nil) != (tc.want == nil) {
				t.Fatalf("err = %v:\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if tc.want == nil {
				if out != path+": OK\n" {
					t.Errorf("good file: %q", out)
				}
				return
			}
			if len(lines) != len(tc.want) {
				t.Fatalf("%d lines, want %d:\n%s", len(lines), len(tc.want), out)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(lines[i], path+": ") || !strings.Contains(lines[i], w) {
					t.Errorf("line %d: %q, want %q", i+1, lines[i], path+": ..."+w)
				}
			}
		})
	}
	if _, err := run(t, "collector", "check", "--config", filepath.Join(dir, "none.yaml")); err == nil || !strings.Contains(err.Error(), "1 problem") {
		t.Errorf("missing file: %v", err)
	}
	// run refuses what check reports, on one line.
	bad := write("run.yaml", "socket: 4\nsockets: 0\n")
	_, err := run(t, "collector", "run", "--config", bad, "--metrics-listen", "")
	if err == nil || !strings.Contains(err.Error(), "line 1: unknown key socket") || strings.Contains(err.Error(), "\n") {
		t.Errorf("collector run with an unknown key: %v", err)
	}
	_, err = run(t, "collector", "run", "--sockets", "0", "--metrics-listen", "")
	if err == nil || !strings.Contains(err.Error(), "sockets: must be at least 1") {
		t.Errorf("collector run --sockets 0: %v", err)
	}
}

// TestCollectorInstall: the unit runs the collector as its own user with a
// state directory, a read-only system and no capability, unless the
// configuration needs one; systemd-analyze accepts it.
func TestCollectorInstall(t *testing.T) {
	dir := t.TempDir()
	unit := filepath.Join(dir, "spanflow-collector.service")
	bin, _ := os.Executable()
	config := filepath.Join(dir, "collector.yaml")
	read := func() string {
		t.Helper()
		b, err := os.ReadFile(unit)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// No file yet: no capability.
	if out, err := run(t, "collector", "install", "--path", unit, "--binary", bin, "--config", config); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	text := read()
	for _, want := range []string{
		"\nUser=spanflow-collector\n", "\nGroup=spanflow-collector\n", "\nCapabilityBoundingSet=\n",
		"\nNoNewPrivileges=yes\n", "\nProtectSystem=strict\n", "\nStateDirectory=spanflow\n",
		"\nSystemCallFilter=@system-service\n", "\nExecStartPre=" + bin + " collector check --config " + config + "\n",
		"\nExecStart=" + bin + " collector run --config " + config + "\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("unit lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "CAP_") || strings.Contains(text, "AmbientCapabilities") {
		t.Errorf("unit grants capabilities the configuration does not need:\n%s", text)
	}
	analyze := testutil.Command(t, "systemd-analyze")
	verify := func() {
		if out, err := exec.Command(analyze, "verify", unit).CombinedOutput(); err != nil {
			t.Errorf("systemd-analyze verify: %v: %s", err, out)
		}
	}
	verify()
	// syslog's port and spoofed forwarding: exactly those two.
	if err := os.WriteFile(config, []byte("netflow-listen: [\":514\"]\nforward: [\"127.0.0.1:2055\"]\nforward-spoof: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "collector", "install", "--path", unit, "--binary", bin, "--config", config); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	text = read()
	for _, want := range []string{"\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_NET_RAW\n", "\nAmbientCapabilities=CAP_NET_BIND_SERVICE CAP_NET_RAW\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("unit lacks %q:\n%s", want, text)
		}
	}
	verify()
	if _, err := run(t, "collector", "install", "--path", unit, "--user", "root", "--config", config); err == nil {
		t.Error("a unit running as root was written")
	}
}

// TestCollectorCheckAsRun: what `collector run` refuses, `collector check`
// refuses too (the units run check before run), each problem at the line
// of the key at fault and only there.
func TestCollectorCheckAsRun(t *testing.T) {
	t.Setenv("SPANFLOW_VCENTER_PASSWORD", "x")
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello\n"), 0o600)
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"listen", "netflow-listen: [\":70000\"]\nipfix-listen: [\"1.2.3.4.5:2055\"]\nmetrics-listen: \"127.0.0.1:99999\"\n", []string{
			`line 1: netflow-listen: ":70000": port 70000: want a number from 0 to 65535`,
			`line 2: ipfix-listen: "1.2.3.4.5:2055": host 1.2.3.4.5 is not an address and does not resolve`,
			`line 3: metrics-listen: "127.0.0.1:99999": port 99999: want a number from 0 to 65535`}},
		{"es files", "output: [elasticsearch]\nes-url: [https://127.0.0.1:9200]\nes-ca-file: /nonexistent.pem\n", []string{
			"line 3: es-ca-file: open /nonexistent.pem: no such file or directory"}},
		{"es not pem", "output: [elasticsearch]\nes-url: [https://127.0.0.1:9200]\nes-ca-file: " + notPEM + "\n", []string{
			"line 3: es-ca-file: " + notPEM + " holds no PEM certificate"}},
		{"es credential", "output: [elasticsearch]\nes-url: [https://127.0.0.1:9200]\nes-api-key-file: /nonexistent\n", []string{
			"line 3: es-api-key-file: read credential file"}},
		{"vcenter ca", "vcenter-url: https://vc.example\nvcenter-user: u\nvcenter-ca: /x.pem\n", []string{
			"line 3: vcenter-ca: vcenter CA file: open /x.pem"}},
		{"kafka", "output: [kafka]\nkafka-replicas: 0\nkafka-tls: true\nkafka-ca-file: /x.pem\n", []string{
			"line 2: kafka-replicas: must be from 1 to 32767, not 0",
			"line 4: kafka-ca-file: open /x.pem"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			os.WriteFile(path, []byte(tc.file), 0o600)
			got := collector.Check(path)
			if len(got) != len(tc.want) {
				t.Fatalf("%d problems, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("problem %q, want %q", got[i], w)
				}
			}
		})
	}
}
