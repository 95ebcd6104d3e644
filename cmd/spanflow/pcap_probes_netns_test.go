package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/testutil"
)

// TestPcapQueryProbesLive: three live exporter processes, each capturing
// on the loopback interface of a network namespace with a packet ring
// (filled beforehand from a capture) and its query server; one is then
// stopped. `pcap query` over the three writes the flow's packets from the
// two that answer, names the stopped one with why, and exits 3.
func TestPcapQueryProbesLive(t *testing.T) {
	if testing.Short() {
		t.Skip("starts spanflow processes: skipped under -short")
	}
	testutil.Root(t)
	testutil.Command(t, "ip")
	tshark := testutil.Command(t, "tshark")
	ns := fmt.Sprintf("sfprobes-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v %s", err, out)
	}
	in := filepath.Join(testutil.SharedTestdata(t), "mirror", "ipfixprobe", "http.pcap")
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600)
	inNetns := func(args ...string) *exec.Cmd {
		cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0])
		cmd.Env = append(os.Environ(), "SPANFLOW_TEST_MAIN="+strings.Join(args, "\n"), "SPANFLOW_PACKET_RING_TOKEN=s3cret")
		return cmd
	}
	var urls []string
	var probes []*exec.Cmd
	var logs []*bytes.Buffer
	for i := range 3 {
		dir := filepath.Join(t.TempDir(), "ring")
		if out, err := run(t, "exporter", "run", "--pcap", in, "--collector", "127.0.0.1:9", "--packet-ring", dir, "--packet-ring-size", "64MiB"); err != nil {
			t.Fatalf("exporter run --pcap: %v\n%s", err, out)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", 9301+i)
		cmd := inNetns("exporter", "run", "--interface", "lo", "--collector", "127.0.0.1:9", "--packet-ring", dir,
			"--packet-ring-listen", addr, "--metrics-listen", fmt.Sprintf("127.0.0.1:%d", 9311+i))
		var log bytes.Buffer
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Signal(syscall.SIGTERM)
				cmd.Wait()
			}
		})
		urls, probes, logs = append(urls, "http://"+addr), append(probes, cmd), append(logs, &log)
	}
	// Wait until each query server answers.
	for i, u := range urls {
		up := false
		for end := time.Now().Add(20 * time.Second); !up && time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			testutil.InNetns(t, ns, func() {
				// Dialled on this thread, in the namespace (an
				// http.Transport dials on goroutines of its own).
				if c, err := net.DialTimeout("tcp", strings.TrimPrefix(u, "http://"), time.Second); err == nil {
					c.Close()
					up = true
				}
			})
		}
		if !up {
			t.Fatalf("probe %s never answered:\n%s", u, logs[i])
		}
	}
	probes[1].Process.Signal(syscall.SIGTERM)
	probes[1].Wait()
	flow := "tcp 54.175.219.8:80 192.168.0.30:44328"
	file := filepath.Join(t.TempDir(), "flow.pcap")
	args := []string{"pcap", "query", "--token-file", tokenFile, "--flow", flow, "-o", file}
	for _, u := range urls {
		args = append(args, "--exporter", u)
	}
	b, err := inNetns(args...).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitPartial {
		t.Fatalf("one probe of three stopped: %v, want exit status %d\n%s", err, exitPartial, b)
	}
	want := tsharkCount(t, tshark, in, "ip.addr==192.168.0.30 and ip.addr==54.175.219.8 and tcp.port==44328 and tcp.port==80")
	if got := tsharkCount(t, tshark, file, ""); got != 2*want || want == 0 {
		t.Errorf("two probes answering: %d frames, want %d\n%s", got, 2*want, b)
	}
	var failed []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "failed") && strings.Contains(l, "http://") {
			failed = append(failed, l)
		}
	}
	if len(failed) != 1 || !strings.Contains(failed[0], urls[1]) || !strings.Contains(failed[0], "connection refused") {
		t.Errorf("lines naming a failed probe: %q, want one naming %s, connection refused\n%s", failed, urls[1], b)
	}
}
