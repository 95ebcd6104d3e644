package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	app := newApp()
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, &out
	app.ExitErrHandler = nil
	err := app.Run(append([]string{"spanflow"}, args...))
	return out.String(), err
}

// TestEveryCommandHasHelp walks the command tree: every command and
// subcommand must describe itself and answer --help.
func TestEveryCommandHasHelp(t *testing.T) {
	out, err := run(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	app := newApp()
	var walk func(path []string, cmds []*cli.Command)
	walk = func(path []string, cmds []*cli.Command) {
		for _, c := range cmds {
			p := append(append([]string{}, path...), c.Name)
			if c.Usage == "" {
				t.Errorf("%s has no usage text", strings.Join(p, " "))
			}
			help, err := run(t, append(p, "--help")...)
			if err != nil || !strings.Contains(help, c.Name) {
				t.Errorf("%s --help failed: %v\n%s", strings.Join(p, " "), err, help)
			}
			walk(p, c.Subcommands)
		}
	}
	walk(nil, app.Commands)
	for _, c := range app.Commands {
		if !c.Hidden && !strings.Contains(out, c.Name) { // hidden: package-files, for the release build
			t.Errorf("spanflow --help does not list %s", c.Name)
		}
	}
}

func TestVersion(t *testing.T) {
	out, err := run(t, "version")
	if err != nil || !strings.HasPrefix(out, "spanflow ") || !strings.Contains(out, "go1.") {
		t.Errorf("version printed %q, err %v", out, err)
	}
}

// TestMain runs the test binary as the spanflow command itself when
// SPANFLOW_TEST_MAIN is set (its arguments, one per line), so that tests can
// start real spanflow processes: signals, exit codes, two processes on one port.
func TestMain(m *testing.M) {
	if args := os.Getenv("SPANFLOW_TEST_MAIN"); args != "" {
		os.Args = append([]string{"spanflow"}, strings.Split(args, "\n")...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// spanflowProcess is `spanflow args...` as a child process (see TestMain).
func spanflowProcess(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "SPANFLOW_TEST_MAIN="+strings.Join(args, "\n"))
	return cmd
}

// Each mistake on the command line gets one line on the real process's
// output, saying what to write instead, and exit status 1.
func TestFlagMistakesOneLine(t *testing.T) {
	if testing.Short() {
		t.Skip("starts spanflow processes: skipped under -short")
	}
	// A pcap header with no packets: a collector given it and a setting
	// it wrongly accepts exits 0 at once instead of running on.
	empty := filepath.Join(t.TempDir(), "empty.pcap")
	os.WriteFile(empty, []byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0}, 0o644)
	typo := filepath.Join(filepath.Dir(empty), "typo.yaml")
	os.WriteFile(typo, []byte("netflow_listen: \":2055\"\n"), 0o644)
	// An address where nothing listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	// An address that takes connections and never answers.
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	for _, c := range []struct {
		args []string
		want string
	}{
		// A mistyped key among the collector's hundred: the key meant.
		{[]string{"collector", "run", "--config", typo}, "typo.yaml: line 1: unknown key netflow_listen: did you mean netflow-listen?"},
		// A setting others divide by: said, not a divide-by-zero panic.
		{[]string{"collector", "run", "--metrics-listen", "", "--pcap", empty, "--rollup-tick", "0s"},
			"rollup-tick: must be between 100ms and 1m, not 0s"},
		{[]string{"report", "top-ip", "--every", "1h", "--interval", "0s", "--dir", filepath.Dir(empty)},
			"report interval 0s: want a whole number of seconds, at least 1s"},
		{[]string{"report", "top-ip", "--every", "1h", "--top", "-1", "--dir", filepath.Dir(empty)}, "--top and --lines must not be negative"},
		// vCenter settings given before the vCenter: their mistakes are
		// said now, not the day --vcenter-url is added.
		{[]string{"collector", "run", "--metrics-listen", "", "--pcap", empty, "--project-rule", "colour:red"},
			`project-rule: project rule "colour:red": unknown kind "colour" (tag, attribute, folder or portgroup)`},
		{[]string{"collector", "run", "--metrics-listen", "", "--pcap", empty, "--portgroup-vni", "overlay"},
			`portgroup-vni: "overlay": want PORTGROUP=VNI with VNI below 2^24`},
		// A cluster that is not there: where spanflow looked and what to
		// do, not the first request's dial error.
		{[]string{"es", "setup", "--es-url", dead}, "es setup: no Elasticsearch answers at " + dead + " (dial tcp"},
		{[]string{"es", "prune", "--es-url", dead}, "es prune: no Elasticsearch answers at " + dead},
		{[]string{"report", "top-ip", "--es-url", dead}, "report top-ip: no Elasticsearch answers at " + dead},
		{[]string{"report", "line-load", "--es-url", dead}, "): start it, or give its address with --es-url"},
		{[]string{"dashboards", "install", "--kibana-url", dead}, "dashboards install: no Kibana answers at " + dead + " (dial tcp"},
		// vsphere inventory stops at the first failure: said once, not
		// also as the collector's retry warning.
		{[]string{"vsphere", "inventory", "--vcenter-url", dead, "--vcenter-user", "u", "--vcenter-password-file", empty, "--timeout", "1m"},
			"load the vcenter inventory: connect to " + dead},
		{[]string{"vsphere", "inventory", "--vcenter-url", "http://" + mute.Addr().String(), "--vcenter-user", "u", "--vcenter-password-file", empty, "--timeout", "1s"},
			"load the vcenter inventory: not loaded within --timeout 1s: raise it for a large inventory, or check that " + mute.Addr().String() + " answers"},
		{[]string{"vsphere", "inventory", "--vcenter-url", dead, "--vcenter-user", "u", "--vcenter-password-file", empty, "--timeout", "0s"},
			"--timeout 0s: must be positive, such as 1m"},
		// Addresses that cannot work are said before anything starts, not
		// as dial retries or a bind failure.
		{[]string{"collector", "run", "--metrics-listen", "", "--pcap", empty, "--output", "kafka", "--kafka-brokers", "127.0.0.1:99999"},
			`kafka-brokers: "127.0.0.1:99999": port 99999: want a number from 1 to 65535`},
		{[]string{"collector", "run", "--metrics-listen", "", "--netflow-listen", "127.0.0.1:0", "--ipfix-listen", "", "--ipfix-tcp-listen", "", "--sflow-listen", "", "--ui", "127.0.0.1:99999"},
			`ui: "127.0.0.1:99999": port 99999: want a number from 0 to 65535`},
		// exporter init never overwrites without --force, and a directory
		// is not "file exists".
		{[]string{"exporter", "init", "--output", filepath.Dir(empty)}, "--output " + filepath.Dir(empty) + " is a directory: give the FILE to write, such as " + filepath.Join(filepath.Dir(empty), "exporter.yaml")},
		{[]string{"exporter", "init", "--output", empty}, "--output " + empty + " exists and is kept: give --force to overwrite it"},
		{[]string{"collector", "run", "--es-url", "127.0.0.1:9250"}, "use http://127.0.0.1:9250 or https://127.0.0.1:9250"},
		{[]string{"es", "setup", "--es-url", "127.0.0.1:9250"}, "use http://127.0.0.1:9250 or https://127.0.0.1:9250"},
		{[]string{"demo", "--es-url", "localhost:9200"}, "use http://localhost:9200 or https://localhost:9200"},
		{[]string{"collector", "run", "--ipfix-tcp-idle-timeout", "30"}, "--ipfix-tcp-idle-timeout 30: missing unit in duration: write 30s"},
		{[]string{"exporter", "run", "--idle-timeout", "15"}, "--idle-timeout 15: missing unit in duration"},
		{[]string{"exporter", "run", "--active-timeout", "banana"}, `--active-timeout "banana": not a duration`},
		{[]string{"collector", "run", "--no-such-flag"}, "unknown flag --no-such-flag (see spanflow collector run --help)"},
		{[]string{"collector", "run", "--netflow_listen", ":2055"}, "unknown flag --netflow_listen: did you mean --netflow-listen? (see spanflow collector run --help)"},
		{[]string{"exporter", "run", "--colector", "127.0.0.1:4739"}, "unknown flag --colector: did you mean --collector? (see spanflow exporter run --help)"},
		// A global flag after the command, then the missing capture, said
		// before anything starts (no "capture replayed" summary).
		{[]string{"collector", "run", "--log-level", "debug", "--metrics-listen", "", "--pcap", "/nonexistent.pcap"}, "--pcap /nonexistent.pcap: no such file or directory"},
		// A file that is not a capture: named once.
		{[]string{"collector", "run", "--metrics-listen", "", "--pcap", "main.go"}, "--pcap: read pcap header of main.go: unknown magic number"},
		{[]string{"collector", "run", "--log-level", "loud"}, `unknown log level "loud"`},
		// A required flag left out: one line naming it, not the help page.
		{[]string{"dashboards", "install"}, "--kibana-url (or SPANFLOW_KIBANA_URL) is required: Kibana's base URL"},
		{[]string{"collector", "check"}, "--config is required: YAML FILE to check; see 'spanflow collector check --help'"},
		// A mistyped command: one line, exit 1 like the other usage errors.
		{[]string{"nosuchcommand"}, `unknown command "nosuchcommand" for "spanflow": see spanflow --help`},
		{[]string{"exporter", "runn"}, `unknown command "runn" for "spanflow exporter": see spanflow exporter --help`},
		// Flags that would be ignored are refused.
		{[]string{"es", "template", "--data-stream", "--ilm-policy"}, "--data-stream and --ilm-policy: give one"},
		{[]string{"report", "line-load", "--lines", "5"}, "--lines is top-ip's"},
	} {
		// A mistake a command misses can leave it running (a scheduled
		// report, listeners): killed after a minute, it fails below.
		cmd := spanflowProcess(t, c.args...)
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		err := cmd.Start()
		if err == nil {
			kill := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
			err = cmd.Wait()
			kill.Stop()
		}
		out := buf.Bytes()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() != 1 {
			t.Errorf("spanflow %s: exit code %d, want 1", strings.Join(c.args, " "), ee.ExitCode())
		}
		if err == nil || len(lines) != 1 || !strings.HasPrefix(lines[0], "spanflow: ") || !strings.Contains(lines[0], c.want) {
			t.Errorf("spanflow %s: exit %v, said:\n%s\nwant one line with %q", strings.Join(c.args, " "), err, out, c.want)
		}
	}
}

// --log-level after the command is the one that counts: debug lines appear
// with it, and not with warn given before the command and nothing after.
func TestGlobalFlagsAfterCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts spanflow processes: skipped under -short")
	}
	pcap := filepath.Join(t.TempDir(), "empty.pcap")
	// A pcap header with no packets: the replay is over at once.
	os.WriteFile(pcap, []byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0}, 0o644)
	for _, c := range []struct {
		args       []string
		info, json bool
	}{
		{[]string{"collector", "run", "--pcap", pcap, "--metrics-listen", "", "--log-level", "warn"}, false, false},
		{[]string{"--log-level", "warn", "collector", "run", "--pcap", pcap, "--metrics-listen", ""}, false, false},
		{[]string{"--log-level", "warn", "collector", "run", "--pcap", pcap, "--metrics-listen", "", "--log-level", "info", "--log-format", "json"}, true, true},
	} {
		cmd := spanflowProcess(t, c.args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("spanflow %v: %v\n%s", c.args, err, stderr.String())
		}
		info := strings.Contains(stderr.String(), "capture replayed")
		json := strings.Contains(stderr.String(), `"msg":"capture replayed"`)
		if info != c.info || json != c.json {
			t.Errorf("spanflow %v: info line %v (want %v), JSON %v (want %v):\n%s", c.args, info, c.info, json, c.json, stderr.String())
		}
	}
}
