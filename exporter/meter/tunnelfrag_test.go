package meter

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestFragmentedTunnelsAgainstTshark: zeek's erspan.pcap mirrors a VM's
// traffic in ERSPAN whose outer packets the transport network fragmented
// (1,500-byte first fragments of 2,960- and 5,880-byte packets). Every
// mirrored packet is metered in its inner flow, with the inner IP length,
// as tshark counts them once it has reassembled the outer packets; no
// outer GRE flow is left, and the later fragments are counted apart.
func TestFragmentedTunnelsAgainstTshark(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	path := filepath.Join(testutil.SharedTestdata(t), "mirror", "zeek", "erspan.pcap")
	out, err := exec.Command(tshark, "-r", path, "-T", "fields", "-E", "occurrence=a", "-E", "separator=|",
		"-e", "frame.protocols", "-e", "ip.src", "-e", "ip.dst", "-e", "ip.proto", "-e", "ip.len",
		"-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "udp.srcport", "-e", "udp.dstport",
		"-e", "ipv6.src", "-e", "ipv6.dst", "-e", "ipv6.nxt", "-e", "ipv6.plen").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	type counts struct{ packets, bytes uint64 }
	last := func(s string) string { f := strings.Split(s, ","); return f[len(f)-1] }
	want := map[string]counts{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "|")
		inner, _ := strings.CutPrefix(f[0][strings.Index(f[0], ":gre:")+1:], "gre:")
		switch {
		case !strings.Contains(f[0], ":gre:"):
			continue
		case strings.Contains(inner, "ipv6"):
			// The inner packet is IPv6 (the outer IPv4).
			n, _ := strconv.ParseUint(last(f[12]), 10, 64)
			f[1], f[2], f[3], f[4] = f[9], f[10], f[11], strconv.FormatUint(n+40, 10)
		case !strings.Contains(f[1], ","):
			continue // the inner packet is not in this frame (a first fragment, before reassembly)
		}
		sp, dp := last(f[5]+f[7]), last(f[6]+f[8])
		if sp == "" {
			sp, dp = "0", "0"
		}
		k := fmt.Sprintf("%s>%s/%s %s>%s", last(f[1]), last(f[2]), last(f[3]), sp, dp)
		n, _ := strconv.ParseUint(last(f[4]), 10, 64)
		c := want[k]
		c.packets++
		c.bytes += n
		want[k] = c
	}
	flows, reasons, _ := meterFile(t, path, Configuration{ActiveTimeout: time.Hour, IdleTimeout: time.Hour, MaxFlows: 1 << 16})
	got := map[string]counts{}
	for _, f := range flows {
		sp, dp := f.SrcPort, f.DstPort
		if f.Proto == 1 {
			sp, dp = 0, 0
		}
		k := fmt.Sprintf("%s>%s/%d %d>%d", f.Src, f.Dst, f.Proto, sp, dp)
		c := got[k]
		c.packets += f.Packets
		c.bytes += f.Bytes
		got[k] = c
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %d packets, %d bytes; tshark %d, %d", k, got[k].packets, got[k].bytes, w.packets, w.bytes)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: %d packets, %d bytes, a flow tshark does not show inside the tunnel", k, g.packets, g.bytes)
		}
	}
	if reasons[decode.ReasonTunnelFragment] == 0 {
		t.Errorf("no later fragment counted apart: %v", reasons)
	}
}
