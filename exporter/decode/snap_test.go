package decode

import (
	"encoding/binary"
	"testing"

	"github.com/spanflow/spanflow/exporter/synth"
)

// TestSnappedTransportHeader: a snap length that ends inside the TCP or UDP
// header (IPv6 TCP at tcpdump's old 68 bytes, a VXLAN mirror cut at 96)
// still meters the packet with its ports and the IP header's length; the
// TCP analysis is told to skip it. Cut the same way without a snap length
// (the frame is all there was), the header is truncated, as before.
func TestSnappedTransportHeader(t *testing.T) {
	v6 := eth(nil, synth.IPv6(a("2001:db8::1"), a("2001:db8::2"), 6, 0, synth.TCP(40000, 443, 1000, 0, 0x18, 65535, 1400)))
	inner := eth(nil, synth.IPv4(a("10.9.0.1"), a("10.9.0.2"), 6, 0, 1, 0, false, synth.TCP(40001, 80, 7, 0, 0x10, 512, 1400)))
	vx := overUDP4(49000, 4789, synth.VXLAN(77, inner))
	u4 := eth(nil, synth.IPv4(a("10.9.0.3"), a("10.9.0.4"), 17, 0, 2, 0, false, synth.UDP(40002, 53, make([]byte, 300))))
	for _, c := range []struct {
		name         string
		frame        []byte
		snap         int
		sport, dport uint16
		ipLen        uint32
		partial      bool
		flags        uint16
		segment      uint32
	}{
		{"IPv6 TCP at 68", v6, 68, 40000, 443, 40 + 20 + 1400, true, 0x18, 0},
		{"IPv6 TCP at 58, flags not captured", v6, 58, 40000, 443, 40 + 20 + 1400, true, 0, 0},
		{"VXLAN at 96", vx, 96, 40001, 80, 20 + 20 + 1400, true, 0, 77},
		{"UDP at 38", u4, 38, 40002, 53, 20 + 8 + 300, false, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := New()
			var p Packet
			if r := d.Decode(LinkEthernet, c.frame[:c.snap], len(c.frame), &p); r != ReasonOK {
				t.Fatalf("snapped at %d: %s", c.snap, r)
			}
			if p.SrcPort != c.sport || p.DstPort != c.dport || p.IPLength != c.ipLen || p.TCPPartial != c.partial ||
				p.TCPFlags != c.flags || p.SegmentID != c.segment {
				t.Errorf("ports %d > %d, IP length %d, partial %v, flags %#x, segment %d; want %d > %d, %d, %v, %#x, %d",
					p.SrcPort, p.DstPort, p.IPLength, p.TCPPartial, p.TCPFlags, p.SegmentID, c.sport, c.dport, c.ipLen, c.partial, c.flags, c.segment)
			}
			// The whole frame: the header is there, nothing partial.
			if r := d.Decode(LinkEthernet, c.frame, len(c.frame), &p); r != ReasonOK || p.TCPPartial {
				t.Errorf("whole frame: %s, partial %v", r, p.TCPPartial)
			}
			// Cut without a snap length: truncated.
			if r := d.Decode(LinkEthernet, c.frame[:c.snap], c.snap, &p); r != ReasonTruncated {
				t.Errorf("cut frame, no snap length: %s, want truncated", r)
			}
		})
	}
}

// TestIPLengthBeyondTheFrame: an IP length larger than the frame on the wire
// (corrupt, or crafted: one 54-byte frame claiming 60,000 octets) counts only
// the bytes that were there, from the IP header on, also for a tunnel's inner
// packet. Snapped, the same length is the packet's and counts; and a packet
// section exported without its frame size (WireUnknown) keeps it too.
func TestIPLengthBeyondTheFrame(t *testing.T) {
	claim := func(frame []byte, ipAt int, v6 bool) []byte {
		f := append([]byte(nil), frame...)
		if v6 {
			binary.BigEndian.PutUint16(f[ipAt+4:], 60000-40)
		} else {
			binary.BigEndian.PutUint16(f[ipAt+2:], 60000)
		}
		return f
	}
	v4 := claim(eth(nil, synth.IPv4(a("10.9.0.1"), a("10.9.0.2"), 6, 0, 1, 0, false, synth.TCP(40000, 80, 7, 0, 0x10, 512, 0))), 14, false)
	v6 := claim(eth(nil, synth.IPv6(a("2001:db8::1"), a("2001:db8::2"), 17, 0, synth.UDP(40001, 53, make([]byte, 12)))), 14, true)
	inner := claim(eth(nil, synth.IPv4(a("10.9.0.3"), a("10.9.0.4"), 17, 0, 2, 0, false, synth.UDP(40002, 53, make([]byte, 30)))), 14, false)
	vx := overUDP4(49000, 4789, synth.VXLAN(77, inner))
	for _, c := range []struct {
		name  string
		frame []byte
		wire  int
		want  uint32
	}{
		{"IPv4, whole frame", v4, len(v4), 40},
		{"IPv6, whole frame", v6, len(v6), 40 + 8 + 12},
		{"inner IPv4 of VXLAN, whole frame", vx, len(vx), 20 + 8 + 30},
		{"IPv4, snapped", v4, 14 + 60000, 60000},
		{"IPv6, snapped", v6, 14 + 60000, 60000},
		{"IPv4, wire length unknown", v4, WireUnknown, 60000},
	} {
		t.Run(c.name, func(t *testing.T) {
			var p Packet
			if r := New().Decode(LinkEthernet, c.frame, c.wire, &p); r != ReasonOK {
				t.Fatalf("%s", r)
			}
			if p.IPLength != c.want {
				t.Errorf("IP length %d, want %d", p.IPLength, c.want)
			}
		})
	}
}
