//go:build linux && cgo

package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/numfmt"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestExporterRunDistribute: --distribute sends the frames its filter
// chooses (tcpdump's count over the same capture) in VXLAN, and the
// summary line says how many.
func TestExporterRunDistribute(t *testing.T) {
	tcpdump := testutil.Command(t, "tcpdump")
	dir := t.TempDir()
	pcap := filepath.Join(dir, "mixed.pcap")
	if err := synth.WritePcapFile(pcap, synth.Mixed(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)).Packets); err != nil {
		t.Fatal(err)
	}
	const filter = "udp"
	want := filepath.Join(dir, "want.pcap")
	if out, err := exec.Command(tcpdump, "-r", pcap, "-w", want, filter).CombinedOutput(); err != nil {
		t.Fatalf("tcpdump: %v: %s", err, out)
	}
	n := len(testutil.ReadPcap(t, want))
	if n == 0 {
		t.Fatal("no udp frames in the capture")
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadBuffer(4 << 20)
	got := make(chan int)
	go func() {
		buf, c := make([]byte, 65536), 0
		for {
			conn.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := conn.Read(buf); err != nil {
				got <- c
				return
			}
			c++
		}
	}()
	out, err := run(t, "exporter", "run", "--pcap", pcap, "--collector", "127.0.0.1:9", "--distribute", "vxlan://"+conn.LocalAddr().String()+"?vni=5&rate=20000 "+filter)
	if err != nil {
		t.Fatalf("exporter run: %v\n%s", err, out)
	}
	if c := <-got; c != n {
		t.Errorf("received %d VXLAN datagrams, want %d", c, n)
	}
	if w := "distribute distribute: " + numfmt.Count(uint64(n), "packet", "") + " sent, 0 deduplicated, 0 sampled out, 0 dropped"; !strings.Contains(out, w) {
		t.Errorf("summary %q: want %q", out, w)
	}
}

// TestExporterCheckDistribution: `exporter check` names each wrong rule
// and what is wrong with it, one line each.
func TestExporterCheckDistribution(t *testing.T) {
	file := filepath.Join(t.TempDir(), "exporter.yaml")
	body := "pcap: x.pcap\ncollector: [\"127.0.0.1:4739\"]\ndistribute:\n" +
		"  - name: ids\n    to: vxlan://10.0.0.9?vni=7\n    filter: \"tcp and (\"\n" +
		"  - to: erspan2://10.0.0.9?session=2000\n    nets: [10.0.0.0/33]\n"
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "exporter", "check", "--config", file)
	if err == nil {
		t.Fatalf("check passed:\n%s", out)
	}
	for _, want := range []string{"distribute rule ids: filter \"tcp and (\"", "distribute rule rule2: destination", "session must be from 0 to 1023", "distribute rule rule2: nets: \"10.0.0.0/33\""} {
		if !strings.Contains(out+err.Error(), want) {
			t.Errorf("no %q in\n%s%v", want, out, err)
		}
	}
}
