package decode

import (
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spanflow/spanflow/exporter/capture"
	"github.com/spanflow/spanflow/internal/testutil"
)

// tsharkInner is what tshark says of the innermost IP packet of a frame
// (ignoring the packet an ICMP error quotes).
type tsharkInner struct {
	ok           bool
	src, dst     netip.Addr
	sport, dport int // -1 when tshark shows no transport header
	fragment     bool
	layers       string
	unreadable   bool // tshark shows an IP layer whose address it cannot print
}

func tsharkFrames(t *testing.T, tshark, path string) []tsharkInner {
	out, err := exec.Command(tshark, "-r", path, "-T", "fields", "-E", "occurrence=a", "-E", "separator=|",
		"-e", "frame.protocols", "-e", "ip.src", "-e", "ip.dst", "-e", "ipv6.src", "-e", "ipv6.dst",
		"-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "udp.srcport", "-e", "udp.dstport",
		"-e", "ip.flags.mf", "-e", "ip.frag_offset", "-e", "ipv6.fraghdr.offset", "-e", "ipv6.fraghdr.more").Output()
	if err != nil {
		t.Fatalf("tshark %s: %v", path, err)
	}
	var res []tsharkInner
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		f := strings.Split(line, "|")
		for len(f) < 13 {
			f = append(f, "")
		}
		list := func(i int) []string {
			if f[i] == "" {
				return nil
			}
			return strings.Split(f[i], ",")
		}
		protos := strings.Split(f[0], ":")
		var r tsharkInner
		r.layers = f[0]
		nIP, nIP6, nTCP, nUDP := 0, 0, 0, 0
		innerIP, innerIP6, last := -1, -1, ""
		for _, p := range protos {
			if p == "icmp" || p == "icmpv6" {
				break
			}
			switch p {
			case "ip":
				innerIP, innerIP6, last = nIP, -1, "ip"
				nIP++
			case "ipv6":
				innerIP6, innerIP, last = nIP6, -1, "ipv6"
				nIP6++
			case "tcp", "udp":
				if last == "ip" || last == "ipv6" {
					if p == "tcp" {
						r.sport = nTCP
					} else {
						r.sport = nUDP
					}
					last = p
				}
				if p == "tcp" {
					nTCP++
				} else {
					nUDP++
				}
			}
		}
		get := func(i, n int) string {
			l := list(i)
			if n < 0 || n >= len(l) {
				return ""
			}
			return l[n]
		}
		switch {
		case innerIP >= 0:
			r.src, _ = netip.ParseAddr(get(1, innerIP))
			r.dst, _ = netip.ParseAddr(get(2, innerIP))
			r.ok = r.src.IsValid()
			r.unreadable = !r.src.IsValid() || !r.dst.IsValid()
			r.fragment = get(9, innerIP) == "1" || (get(10, innerIP) != "" && get(10, innerIP) != "0")
		case innerIP6 >= 0:
			r.src, _ = netip.ParseAddr(get(3, innerIP6))
			r.dst, _ = netip.ParseAddr(get(4, innerIP6))
			r.ok = r.src.IsValid()
			r.unreadable = !r.src.IsValid() || !r.dst.IsValid()
			r.fragment = f[11] != "" || f[12] != ""
		}
		r.dport = -1
		switch last {
		case "tcp", "udp":
			col := 5
			if last == "udp" {
				col = 7
			}
			n := r.sport
			r.sport, r.dport = -1, -1
			if s, err := strconv.Atoi(get(col, n)); err == nil {
				r.sport = s
			}
			if d, err := strconv.Atoi(get(col+1, n)); err == nil {
				r.dport = d
			}
		default:
			r.sport = -1
		}
		res = append(res, r)
	}
	return res
}

// Captures whose tunnels tshark does not undo with its default ports or
// dissectors, so that it shows an outer packet where spanflow shows the
// inner one (or the reverse).
var tsharkDiffers = map[string]string{
	"vxlan_port_8472.pcap":         "tshark decodes VXLAN on 4789 only",
	"bigtcp-ipv4-geneve-ipv4.pcap": "tshark stops at a UDP length of 0 (BIG TCP)",
	"bigtcp-ipv4-geneve-ipv6.pcap": "tshark stops at a UDP length of 0 (BIG TCP)",
	"bigtcp-ipv4-vxlan-ipv4.pcap":  "tshark stops at a UDP length of 0 (BIG TCP)",
	"bigtcp-ipv4-vxlan-ipv6.pcap":  "tshark stops at a UDP length of 0 (BIG TCP)",
	"bigtcp-ipv6-geneve-ipv4.pcap": "tshark stops at a UDP length of 0 (BIG TCP)",
	"bigtcp-ipv6-geneve-ipv6.pcap": "tshark stops at a UDP length of 0 (BIG TCP)",
	"bigtcp-ipv6-vxlan-ipv4.pcap":  "tshark stops at a UDP length of 0 (BIG TCP)",
	"bigtcp-ipv6-vxlan-ipv6.pcap":  "tshark stops at a UDP length of 0 (BIG TCP)",
	"mpls-eompls-cw.pcap":          "tshark's heuristic misses the pseudowire control word",
}

// TestDecodeAgainstTshark: for every frame of the mirror captures that both
// decode, the innermost IP addresses (and ports, when not a fragment) that
// spanflow finds are those tshark shows; frames tshark decodes to IP but
// spanflow does not are listed.
func TestDecodeAgainstTshark(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	for _, path := range sharedCaptures(t, "mirror") {
		name := filepath.Base(path)
		if why, ok := tsharkDiffers[name]; ok {
			t.Logf("%s: skipped: %s", name, why)
			continue
		}
		want := tsharkFrames(t, tshark, path)
		src, err := capture.OpenFile(path)
		if err != nil {
			t.Fatal(err)
		}
		d := New()
		var p Packet
		var fr capture.Frame
		var problems []string
		for i := 0; ; i++ {
			if err := src.Next(&fr); err != nil {
				if err != io.EOF {
					t.Logf("%s: %v", name, err)
				}
				break
			}
			if i >= len(want) {
				problems = append(problems, "more frames than tshark")
				break
			}
			w := want[i]
			r := d.Decode(fr.LinkType, fr.Data, fr.Length, &p)
			if r == ReasonTunnelFragment {
				// A later fragment of a tunnel packet metered from its
				// first: tshark shows the reassembled packet here.
				continue
			}
			if r != ReasonOK {
				// Report only frames where tshark found an IP packet with a
				// transport header at the end of the stack: a mirrored ARP
				// or STP frame leaves tshark's "innermost IP" on the outer
				// transport.
				if w.ok && r != ReasonTruncated && endsInTransport(w.layers) {
					problems = append(problems, fmt.Sprintf("frame %d: %s, tshark decodes %s", i+1, r, w.layers))
				}
				continue
			}
			if w.fragment && !endsInTransport(w.layers) {
				// The first fragment of a tunnel packet: spanflow meters
				// the inner packet from it, tshark only once it has
				// reassembled the fragments.
				continue
			}
			if p.Fragment || w.unreadable {
				// Fragments: tshark reassembles and shows what the
				// reassembled packet tunnels; spanflow meters each fragment
				// in the flow of the packet it belongs to.
				continue
			}
			var s, dst netip.Addr
			if p.IPv6 {
				s, dst = netip.AddrFrom16(p.SrcAddr), netip.AddrFrom16(p.DstAddr)
			} else {
				s, dst = netip.AddrFrom4([4]byte(p.SrcAddr[:4])), netip.AddrFrom4([4]byte(p.DstAddr[:4]))
			}
			if !w.ok {
				problems = append(problems, fmt.Sprintf("frame %d: decoded %s > %s, tshark shows no IP (%s)", i+1, s, dst, w.layers))
				continue
			}
			if s != w.src || dst != w.dst {
				problems = append(problems, fmt.Sprintf("frame %d: %s > %s, tshark %s > %s (%s)", i+1, s, dst, w.src, w.dst, w.layers))
				continue
			}
			if !p.Fragment && !w.fragment && w.sport >= 0 && (int(p.SrcPort) != w.sport || int(p.DstPort) != w.dport) {
				problems = append(problems, fmt.Sprintf("frame %d: ports %d > %d, tshark %d > %d (%s)", i+1, p.SrcPort, p.DstPort, w.sport, w.dport, w.layers))
			}
		}
		src.Close()
		if len(problems) > 0 {
			if len(problems) > 5 {
				problems = append(problems[:5], fmt.Sprintf("... %d more", len(problems)-5))
			}
			t.Errorf("%s:\n  %s", name, strings.Join(problems, "\n  "))
		}
	}
}

// endsInTransport reports whether the innermost IP layer of a protocol stack
// is followed by a transport and no other frame.
func endsInTransport(layers string) bool {
	ps := strings.Split(layers, ":")
	last := -1
	for i, p := range ps {
		if p == "ip" || p == "ipv6" {
			last = i
		}
	}
	if last < 0 || last+1 >= len(ps) {
		return false
	}
	for _, p := range ps[last+1:] {
		if p == "eth" {
			return false
		}
	}
	switch ps[last+1] {
	case "tcp", "udp", "icmp", "icmpv6", "sctp":
		return true
	}
	return false
}
