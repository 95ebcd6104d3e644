package decode

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spanflow/spanflow/internal/testutil"
)

// TestHeaderLenMatchesTshark: for every whole frame of the mirrored
// captures whose innermost transport is TCP or UDP, HeaderLen is where
// tshark's innermost payload starts: the frame's length less that payload
// (tcp.len, or udp.length less 8) and less the Ethernet padding and
// trailers tshark finds.
func TestHeaderLenMatchesTshark(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	dir := testutil.SharedTestdata(t)
	var paths []string
	for _, pat := range []string{"mirror/*/*.pcap", "mirror/*/*.pcapng"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		paths = append(paths, m...)
	}
	checked := 0
	for _, path := range paths {
		frames := testutil.ReadPcap(t, path)
		out, err := exec.Command(tshark, "-r", path, "-T", "fields", "-E", "occurrence=a", "-E", "separator=|",
			"-e", "frame.protocols", "-e", "tcp.len", "-e", "udp.length", "-e", "eth.padding", "-e", "eth.trailer", "-e", "eth.fcs",
			"-e", "_ws.malformed", "-e", "_ws.expert", "-e", "vlan.trailer").Output()
		if err != nil {
			t.Fatalf("tshark %s: %v", path, err)
		}
		lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
		if len(lines) != len(frames) {
			continue
		}
		d := New()
		var p Packet
		for i, line := range lines {
			f := strings.Split(line, "|")
			fr := frames[i]
			if len(f) < 9 || len(fr.Data) != fr.Length || f[5] != "" || f[6] != "" || f[7] != "" {
				continue // cut by a snap length, an FCS, or something tshark calls wrong
			}
			layers := strings.Split(f[0], ":")
			last, ips, ipAfter := "", 0, false
			for _, l := range layers {
				switch l {
				case "tcp", "udp", "icmp", "icmpv6":
					last, ipAfter = l, false
				case "ip", "ipv6":
					ips++
					ipAfter = true
				}
			}
			// Compare where tshark and the decoder see the same innermost
			// packet: no ICMP quoting one, no tunnel only one of them undoes
			// (Teredo, VXLAN on 8472), Ethernet frames (NFLOG pads its TLVs),
			// no vendor trailer tshark does not count as Ethernet's.
			if strings.Contains(f[0], "icmp") || strings.Contains(f[0], "trailer") || ipAfter || fr.LinkType != LinkEthernet {
				continue
			}
			var payload int
			switch last {
			case "tcp":
				v := strings.Split(f[1], ",")
				payload, _ = strconv.Atoi(v[len(v)-1])
			case "udp":
				v := strings.Split(f[2], ",")
				n, _ := strconv.Atoi(v[len(v)-1])
				payload = n - 8
			default:
				continue
			}
			pad := 0
			for _, h := range strings.Split(f[3]+","+f[4]+","+f[8], ",") {
				pad += len(strings.ReplaceAll(h, ":", "")) / 2
			}
			if d.Decode(fr.LinkType, fr.Data, fr.Length, &p) != ReasonOK || p.Fragment || (last == "tcp") != (p.Proto == 6) || (p.Tunnels != 0) != (ips > 1) {
				continue
			}
			if want := len(fr.Data) - payload - pad; int(p.HeaderLen) != want {
				t.Errorf("%s frame %d (%s): HeaderLen %d, tshark's payload starts at %d", filepath.Base(path), i+1, f[0], p.HeaderLen, want)
			}
			checked++
		}
	}
	if checked < 500 {
		t.Errorf("only %d frames checked", checked)
	}
	t.Logf("%d frames checked", checked)
}
