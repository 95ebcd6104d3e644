package decode

import (
	"encoding/binary"
	"testing"

	"github.com/spanflow/spanflow/exporter/synth"
)

// TestFragmentedTunnels: a VXLAN packet whose outer IPv4 or IPv6 packet was
// fragmented is metered as its inner packet, with the inner IP length, from
// the first fragment; the later fragment is counted apart, not metered
// again, but named by the inner packet's flow. A first fragment too short
// for the inner headers stays the outer flow, and so do the fragments
// after it.
func TestFragmentedTunnels(t *testing.T) {
	inner := eth(nil, synth.IPv4(a("10.9.2.1"), a("10.9.2.2"), 6, 0, 4, 0, false, synth.TCP(40020, 443, 1, 0, 0x10, 512, 1960)))
	udp := synth.UDP(49300, 4789, synth.VXLAN(88, inner)) // 8 + 8 + 14 + 2000 bytes
	src, dst := a("192.0.2.1"), a("192.0.2.2")
	v4 := func(off uint16, more bool, part []byte) []byte {
		return synth.Ethernet(eA, eB, nil, 0x0800, synth.IPv4(src, dst, 17, 0, 77, off, more, part))
	}
	v6 := func(off uint16, more bool, part []byte) []byte {
		fh := make([]byte, 8)
		fh[0] = 17
		m := uint16(0)
		if more {
			m = 1
		}
		binary.BigEndian.PutUint16(fh[2:], off<<3|m)
		binary.BigEndian.PutUint32(fh[4:], 0x1234)
		return synth.Ethernet(eA, eB, nil, 0x86dd, synth.IPv6(a("2001:db8:9::1"), a("2001:db8:9::2"), 44, 0, append(fh, part...)))
	}
	for _, c := range []struct {
		name   string
		frag   func(off uint16, more bool, part []byte) []byte
		cut    int // bytes of the UDP datagram in the first fragment (a multiple of 8)
		tunnel bool
	}{
		{"IPv4", v4, 1480, true},
		{"IPv6", v6, 1448, true},
		{"IPv4, inner headers cut", v4, 48, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := New()
			var p Packet
			first, rest := c.frag(0, true, udp[:c.cut]), c.frag(uint16(c.cut/8), false, udp[c.cut:])
			if r := d.Decode(LinkEthernet, first, len(first), &p); r != ReasonOK {
				t.Fatalf("first fragment: %s", r)
			}
			if c.tunnel {
				if s, _ := p.addrs(); s != a("10.9.2.1") || p.SrcPort != 40020 || p.IPLength != 2000 || p.SegmentID != 88 {
					t.Errorf("first fragment metered as %s:%d, IP length %d, VNI %d; want the inner 10.9.2.1:40020, 2000, 88",
						s, p.SrcPort, p.IPLength, p.SegmentID)
				}
				if r := d.Decode(LinkEthernet, rest, len(rest), &p); r != ReasonTunnelFragment {
					t.Errorf("later fragment: %s, want %s", r, ReasonTunnelFragment)
				}
				// It carries the inner packet's identity, under which the
				// packet ring keeps it.
				if s, dst := p.addrs(); s != a("10.9.2.1") || dst != a("10.9.2.2") || p.Proto != 6 || p.SrcPort != 40020 || p.DstPort != 443 {
					t.Errorf("later fragment named %s:%d > %s:%d (%d), want the inner 10.9.2.1:40020 > 10.9.2.2:443 (6)", s, p.SrcPort, dst, p.DstPort, p.Proto)
				}
				return
			}
			if p.SrcPort != 49300 || p.DstPort != 4789 || !p.Fragment {
				t.Errorf("first fragment metered as ports %d > %d (fragment %v), want the outer UDP flow", p.SrcPort, p.DstPort, p.Fragment)
			}
			if r := d.Decode(LinkEthernet, rest, len(rest), &p); r != ReasonOK || p.SrcPort != 49300 || p.DstPort != 4789 {
				t.Errorf("later fragment: %s, ports %d > %d; want ok in the outer flow", r, p.SrcPort, p.DstPort)
			}
		})
	}
}
