//go:build linux && cgo

package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/numfmt"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestExporterReloadOnSIGHUP: a live `exporter run --config FILE` forwards
// what its distribution rule chooses; after SIGHUP it forwards with the
// file's new rule, without restarting capture; a broken file on the next
// SIGHUP keeps that rule, and the log says why.
func TestExporterReloadOnSIGHUP(t *testing.T) {
	testutil.Root(t)
	testutil.Command(t, "ip")
	tcpreplay := testutil.Command(t, "tcpreplay")
	ns := fmt.Sprintf("sfhup-%d", os.Getpid())
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "add", "vA", "type", "veth", "peer", "name", "vB"},
		{"-n", ns, "link", "set", "vA", "up"},
		{"-n", ns, "link", "set", "vB", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
		if args[0] == "netns" && args[1] == "add" {
			t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		}
	}
	dir := t.TempDir()
	pcap := filepath.Join(dir, "mixed.pcap")
	if err := synth.WritePcapFile(pcap, synth.Mixed(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)).Packets); err != nil {
		t.Fatal(err)
	}
	udp := 0
	for _, p := range testutil.ReadPcap(t, pcap) {
		if len(p.Data) > 23 && p.Data[12] == 8 && p.Data[13] == 0 && p.Data[23] == 17 {
			udp++ // IPv4 UDP: what "ip and udp" chooses
		}
	}
	// Two VXLAN receivers in the namespace, counting datagrams.
	var sinks [2]*net.UDPConn
	var counts [2]atomic.Int64
	testutil.InNetns(t, ns, func() {
		for i := range sinks {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			sinks[i] = c
			t.Cleanup(func() { c.Close() })
			go func() {
				buf := make([]byte, 65536)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
					counts[i].Add(1)
				}
			}()
		}
	})
	config := filepath.Join(dir, "exporter.yaml")
	writeRule := func(to string) {
		body := "interface: vB\ncollector: [\"127.0.0.1:9\"]\nmetrics-listen: \"off\"\ndistribute:\n  - name: ids\n    to: " + to + "\n    filter: ip and udp\n"
		if err := os.WriteFile(config, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeRule("vxlan://" + sinks[0].LocalAddr().String())
	// The exporter is a process of its own in the namespace: sockets that a
	// reload opens belong there too.
	bin := filepath.Join(dir, "spanflow")
	build := exec.Command("go", "build", "-o", bin, "./cmd/spanflow")
	build.Dir = testutil.ModuleRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	var out testutil.SyncBuffer
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "exporter", "run", "--config", config)
	cmd.Dir = testutil.ModuleRoot()
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer cmd.Process.Kill()
	replay := func() {
		if out, err := exec.Command("ip", "netns", "exec", ns, tcpreplay, "-q", "--pps", "2000", "-i", "vA", pcap).CombinedOutput(); err != nil {
			t.Fatalf("tcpreplay: %v: %s", err, out)
		}
	}
	waitFor := func(i int, want int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for counts[i].Load() < want && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
		if got := counts[i].Load(); got != want {
			select {
			case err := <-done:
				t.Fatalf("exporter run ended: %v\n%s", err, out.String())
			default:
			}
			t.Fatalf("receiver %d got %d frames, want %d\n%s", i+1, got, want, out.String())
		}
	}
	waitLog := func(s string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), s) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log:\n%s", s, out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(2 * time.Second) // the process is up and its capture open
	replay()
	waitFor(0, int64(udp))

	writeRule("vxlan://" + sinks[1].LocalAddr().String())
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog("distribution rules reloaded")
	replay()
	waitFor(1, int64(udp))
	waitFor(0, int64(udp)) // the old destination gets nothing more

	writeRule("bogus://x")
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog("keeping the distribution rules in force")
	replay()
	waitFor(1, 2*int64(udp))

	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-done; err != nil {
		t.Fatalf("exporter run: %v\n%s", err, out.String())
	}
	if want := "distribute ids: " + numfmt.Count(uint64(3*udp), "packet", "") + " sent"; !strings.Contains(out.String(), want) {
		t.Errorf("summary: want %q (counters kept over the reloads) in\n%s", want, out.String())
	}
}
