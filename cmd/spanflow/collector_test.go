package main

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	_, err := run(t, "collector", "run", "--pcap", "/nonexistent", "--output", "hdfs:x", "--metrics-listen", "")
	if err == nil || !strings.Contains(err.Error(), "unknown output") {
		t.Errorf("err = %v, want unknown output", err)
	}
}

// startCollector starts `spanflow collector run` in a child process with the
// given listen flags and waits for its "listening" line.
func startCollector(t *testing.T, listen ...string) *exec.Cmd {
	t.Helper()
	args := append([]string{"collector", "run", "--metrics-listen", "", "--netflow-listen", "", "--ipfix-listen", "",
		"--ipfix-tcp-listen", "", "--sflow-listen", "", "--sockets", "2", "--output", "file:" + filepath.Join(t.TempDir(), "flows.ndjson")}, listen...)
	cmd := spanflowProcess(t, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), `msg=listening`) {
			go io.Copy(io.Discard, stderr)
			return cmd
		}
	}
	t.Fatalf("collector %v did not start", listen)
	return nil
}

// A second collector on a UDP port the first holds is refused with one
// line naming the port and the setting that shares it (SO_REUSEPORT would
// otherwise let it join, and the kernel would split the datagrams); with
// the setting given, it starts. The same for IPFIX over TCP.
func TestCollectorPortInUse(t *testing.T) {
	if testing.Short() {
		t.Skip("starts collector processes: skipped under -short")
	}
	free := func(network string) string { return testutil.FreeAddr(t, network) }
	for _, c := range []struct{ network, flag string }{{"udp", "--netflow-listen"}, {"udp", "--sflow-listen"}, {"tcp", "--ipfix-tcp-listen"}} {
		t.Run(c.flag, func(t *testing.T) {
			addr := free(c.network)
			startCollector(t, c.flag, addr)
			second := spanflowProcess(t, "collector", "run", "--metrics-listen", "", "--netflow-listen", "", "--ipfix-listen", "",
				"--ipfix-tcp-listen", "", "--sflow-listen", "", "--output", "file:"+filepath.Join(t.TempDir(), "flows.ndjson"), c.flag, addr)
			var buf testutil.SyncBuffer
			second.Stdout, second.Stderr = &buf, &buf
			if err := second.Start(); err != nil {
				t.Fatal(err)
			}
			// One that joins the port runs until stopped.
			timer := time.AfterFunc(10*time.Second, func() { second.Process.Signal(os.Interrupt) })
			err := second.Wait()
			timer.Stop()
			out := buf.String()
			if err == nil {
				t.Fatalf("second collector on %s %s exited 0:\n%s", c.network, addr, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			last := lines[len(lines)-1]
			if len(lines) != 1 || !strings.HasPrefix(last, "spanflow: ") || !strings.Contains(last, c.network+" port "+addr+" is already in use") ||
				!strings.Contains(last, "listen-reuseport") || !strings.Contains(last, c.flag) {
				t.Errorf("second collector said:\n%s\nwant one line naming %s port %s, %s and listen-reuseport", out, c.network, addr, c.flag)
			}
			// Sharing on purpose: both started with the setting.
			shared := free(c.network)
			startCollector(t, c.flag, shared, "--listen-reuseport")
			startCollector(t, c.flag, shared, "--listen-reuseport")
		})
	}
}
