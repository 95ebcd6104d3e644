package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/bench/ipfixgen"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestCollectorsShareByExporterAddress runs two `spanflow collector run`
// processes on one UDP port with --listen-reuseport-group 2. 64 exporters
// (127.0.x.y, half IPFIX, half NetFlow v9, all with template id 256 and
// layouts of their own) send their template from one source port and
// every data message from another: the kernel's own hash would hand many
// data messages to the process without their template (held, then
// dropped). With the group's program, every exporter's flows are written
// by one process, all of them, with the bytes it sent, and both
// processes have some.
func TestCollectorsShareByExporterAddress(t *testing.T) {
	if testing.Short() {
		t.Skip("starts collector processes: skipped under -short")
	}
	const exporters, messages, perMessage = 64, 4, 10
	addr := testutil.FreeAddr(t, "udp")
	var outs []string
	var procs []*os.Process
	for i := range 2 {
		out := filepath.Join(t.TempDir(), fmt.Sprintf("flows%d.ndjson", i))
		cmd := spanflowProcess(t, "collector", "run", "--metrics-listen", "", "--netflow-listen", "", "--sflow-listen", "",
			"--ipfix-tcp-listen", "", "--ipfix-listen", addr, "--sockets", "1", "--listen-reuseport", "--listen-reuseport-group", "2",
			"--exporter-stats-interval", "0", "--output", "file:"+out)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		sc := bufio.NewScanner(stderr)
		for sc.Scan() && !strings.Contains(sc.Text(), "msg=listening") {
		}
		go io.Copy(io.Discard, stderr)
		outs, procs = append(outs, out), append(procs, cmd.Process)
	}

	target := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr))
	send := func(src netip.Addr, b []byte) { // from a new source port each time
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), target)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	wantBytes := map[string]uint64{}
	var buf []byte
	for i := range exporters {
		src := netip.AddrFrom4([4]byte{127, 0, byte(1 + i/32), byte(1 + i%32)})
		var g interface {
			Template() []byte
			AppendData([]byte) []byte
			Flows() uint64
		} = ipfixgen.New(uint32(1000+i), perMessage)
		if i%2 == 1 {
			g = ipfixgen.NewV9(uint32(1000+i), perMessage)
		}
		send(src, g.Template())
		for range messages {
			buf = g.AppendData(buf[:0])
			send(src, buf)
		}
		for j := range g.Flows() {
			wantBytes[src.String()] += 1000 + j%1000
		}
	}
	lines := func() int {
		n := 0
		for _, out := range outs {
			b, _ := os.ReadFile(out)
			n += strings.Count(string(b), "\n")
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); lines() < exporters*messages*perMessage && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range procs {
		p.Signal(os.Interrupt)
	}
	for _, p := range procs {
		p.Wait()
	}

	gotBytes, writtenBy := map[string]uint64{}, map[string]map[int]bool{}
	for i, out := range outs {
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		flows := 0
		for sc.Scan() {
			var doc struct {
				Observer struct{ IP string }
				Network  struct{ Bytes uint64 }
			}
			if err := json.Unmarshal(sc.Bytes(), &doc); err != nil {
				t.Fatalf("not JSON: %v: %s", err, sc.Text())
			}
			gotBytes[doc.Observer.IP] += doc.Network.Bytes
			if writtenBy[doc.Observer.IP] == nil {
				writtenBy[doc.Observer.IP] = map[int]bool{}
			}
			writtenBy[doc.Observer.IP][i] = true
			flows++
		}
		if flows == 0 {
			t.Errorf("collector %d wrote no flow: the exporters did not spread", i)
		}
	}
	for src, want := range wantBytes {
		if gotBytes[src] != want {
			t.Errorf("exporter %s: %d bytes written, want %d (sent)", src, gotBytes[src], want)
		}
		if len(writtenBy[src]) != 1 {
			t.Errorf("exporter %s: flows written by %d collectors, want 1", src, len(writtenBy[src]))
		}
	}
}
