package main

import (
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spanflow/spanflow/exporter"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/numfmt"
)

// TestExporterRunOverUDP: `spanflow exporter run --config FILE` with flags
// over the file builds the file's configuration with the flags winning, and
// prints a one-line summary with the capture's packets and flows. (What the
// two collectors receive from that configuration, decoded by goflow2, is
// checked by the exporter package's TestFanoutOverUDP.)
func TestExporterRunOverUDP(t *testing.T) {
	c := synth.Mixed(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	dir := t.TempDir()
	pcap := filepath.Join(dir, "mixed.pcap")
	if err := synth.WritePcapFile(pcap, c.Packets); err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for i := 0; i < 2; i++ {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		addrs = append(addrs, conn.LocalAddr().String())
	}
	// The file says 5s idle (which would split flows), the flag says 15s.
	file := filepath.Join(dir, "exporter.yaml")
	if err := os.WriteFile(file, []byte("collector: [\""+addrs[0]+"\"]\nidle-timeout: 5s\nactive-timeout: 60s\nobservation-domain: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", file, "--pcap", pcap, "--idle-timeout", "15s", "--collector", addrs[0], "--collector", addrs[1]}
	want := exporter.DefaultConfiguration()
	want.Pcap, want.Collectors = pcap, addrs
	want.IdleTimeout, want.ActiveTimeout = exporter.Duration(15*time.Second), exporter.Duration(60*time.Second)
	want.ObservationDomain = 3 // from the file
	if got := runConfiguration(t, args...); !reflect.DeepEqual(got, want) {
		t.Errorf("configuration %+v\nwant %+v (idle timeout 15s from the flag, observation domain 3 from the file, both collectors)", got, want)
	}
	out, err := run(t, append([]string{"exporter", "run"}, args...)...)
	if err != nil {
		t.Fatalf("exporter run: %v\n%s", err, out)
	}
	// Grouped as the demo's numbers, in the singular for one.
	wantPackets, wantFlows := numfmt.Count(uint64(len(c.Packets)), "packet", "")+",", numfmt.Count(uint64(len(c.Flows)), "flow", "")+" exported"
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || !strings.Contains(out, wantPackets) || !strings.Contains(out, wantFlows) {
		t.Errorf("summary %q: want one line with %q and %q", out, wantPackets, wantFlows)
	}
}

// runConfiguration is the configuration `exporter run` builds from args.
func runConfiguration(t *testing.T, args ...string) exporter.Configuration {
	t.Helper()
	var cfg exporter.Configuration
	app := &cli.App{Name: "spanflow", Commands: []*cli.Command{{
		Name:  "run",
		Flags: exporterRunFlags(),
		Action: func(c *cli.Context) error {
			var err error
			cfg, err = exporterConfiguration(c)
			return err
		},
	}}}
	if err := app.Run(append([]string{"spanflow", "run"}, args...)); err != nil {
		t.Fatalf("configuration of %q: %v", args, err)
	}
	return cfg
}

// TestExporterFastTimeoutFlags: the flags reach the configuration, the
// selector list repeated.
func TestExporterFastTimeoutFlags(t *testing.T) {
	cfg := runConfiguration(t, "--pcap", "x.pcap", "--collector", "127.0.0.1:4739", "--active-timeout-fast", "5s",
		"--active-timeout-fast-for", "net 10.20.0.0/16 port 5432", "--active-timeout-fast-for", "vni 5001")
	if time.Duration(cfg.ActiveTimeoutFast) != 5*time.Second || len(cfg.ActiveTimeoutFastFor) != 2 || cfg.ActiveTimeoutFastFor[1] != "vni 5001" {
		t.Errorf("configuration %+v", cfg)
	}
}

// TestExporterSourceFlagReplacesFile: a source given by flag replaces the
// --config file's (--pcap its interface and filter, --interface its pcap);
// two sources given by flags stay an error.
func TestExporterSourceFlagReplacesFile(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live.yaml")
	os.WriteFile(live, []byte("interface: eth0\nfilter: not port 22\ncollector: [\"127.0.0.1:4739\"]\n"), 0o644)
	cfg := runConfiguration(t, "--config", live, "--pcap", "x.pcap")
	if cfg.Pcap != "x.pcap" || len(cfg.Interfaces) != 0 || cfg.Filter != "" {
		t.Errorf("--pcap over a file with interface: %+v", cfg)
	}
	replay := filepath.Join(dir, "replay.yaml")
	os.WriteFile(replay, []byte("pcap: x.pcap\ncollector: [\"127.0.0.1:4739\"]\n"), 0o644)
	cfg = runConfiguration(t, "--config", replay, "--interface", "lo")
	if cfg.Pcap != "" || len(cfg.Interfaces) != 1 {
		t.Errorf("--interface over a file with pcap: %+v", cfg)
	}
	if _, err := run(t, "exporter", "run", "--pcap", "x.pcap", "--interface", "lo", "--collector", "127.0.0.1:4739"); err == nil || !strings.Contains(err.Error(), "give one source only") {
		t.Errorf("--pcap and --interface: %v", err)
	}
}

// TestExporterRunBadInput: bad input ends with a non-zero exit code and one
// line saying what is wrong.
func TestExporterRunBadInput(t *testing.T) {
	dir := t.TempDir()
	pcap := filepath.Join(dir, "mixed.pcap")
	if err := synth.WritePcapFile(pcap, synth.Mixed(time.Unix(0, 0)).Packets); err != nil {
		t.Fatal(err)
	}
	notPcap := filepath.Join(dir, "not.pcap")
	os.WriteFile(notPcap, []byte("hello, this is not a capture"), 0o644)
	badYAML := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badYAML, []byte("collector: [\"127.0.0.1:4739\"]\nidle_timeout: 5s\n"), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing file", []string{"--pcap", filepath.Join(dir, "nope.pcap"), "--collector", "127.0.0.1:4739"}, "no such file"},
		{"not a capture", []string{"--pcap", notPcap, "--collector", "127.0.0.1:4739"}, "not a pcap or pcapng"},
		{"no port", []string{"--pcap", pcap, "--collector", "127.0.0.1"}, "want HOST:PORT"},
		{"bad port", []string{"--pcap", pcap, "--collector", "127.0.0.1:99999"}, "port must be"},
		{"no collector", []string{"--pcap", pcap}, "no collector"},
		{"unknown key", []string{"--pcap", pcap, "--config", badYAML}, "line 2: unknown key idle_timeout"},
		{"missing config", []string{"--pcap", pcap, "--config", filepath.Join(dir, "none.yaml")}, "read configuration"},
		{"bad timeout", []string{"--pcap", pcap, "--collector", "127.0.0.1:4739", "--idle-timeout", "10ms"}, "idle timeout 10ms"},
		{"small mtu", []string{"--pcap", pcap, "--collector", "127.0.0.1:4739", "--mtu", "100"}, "mtu 100"},
		{"bad selector", []string{"--pcap", pcap, "--collector", "127.0.0.1:4739", "--active-timeout-fast", "5s", "--active-timeout-fast-for", "colour blue"}, `active-timeout-fast-for: selector "colour blue": unknown term "colour"`},
		{"fast without selector", []string{"--pcap", pcap, "--collector", "127.0.0.1:4739", "--active-timeout-fast", "5s"}, "give the flows it applies to with active-timeout-fast-for"},
		{"fast not faster", []string{"--pcap", pcap, "--collector", "127.0.0.1:4739", "--active-timeout-fast", "2m", "--active-timeout-fast-for", "port 443"}, "must be shorter than active-timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(t, append([]string{"exporter", "run"}, tc.args...)...)
			if err == nil {
				t.Fatal("no error")
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line containing %q", msg, tc.want)
			}
		})
	}
}
