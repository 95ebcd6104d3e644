package ring_test

import (
	"net/netip"
	"testing"

	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/exporter/ring"
	"github.com/spanflow/spanflow/internal/flow"
)

// TestParseFlow: a 5-tuple gives the Community ID of the specification's
// vectors, in either direction, and that ID gives the same key.
func TestParseFlow(t *testing.T) {
	for _, c := range []struct{ tuple, id string }{
		{"tcp 128.232.110.120:34855 66.35.250.204:80", "1:LQU9qZlK+B5F3KDmev6m5PMibrg="},
		{"tcp 66.35.250.204:80 128.232.110.120:34855", "1:LQU9qZlK+B5F3KDmev6m5PMibrg="},
		{"udp 192.168.1.52:54585 8.8.8.8:53", "1:d/FP5EW3wiY1vCndhwleRRKHowQ="},
	} {
		key, id, err := ring.ParseFlow(c.tuple)
		if err != nil || id != c.id {
			t.Errorf("%s: id %s, %v; want %s", c.tuple, id, err, c.id)
			continue
		}
		if k, err := ring.CommunityIDKey(c.id); err != nil || k != key {
			t.Errorf("%s: key %x from the id, %x from the tuple (%v)", c.tuple, k, key, err)
		}
	}
	for _, bad := range []string{"", "1:notbase64!", "1:AAAA", "2:LQU9qZlK+B5F3KDmev6m5PMibrg=", "tcp 1.2.3.4 5.6.7.8:9", "bogus 1.2.3.4:1 5.6.7.8:9", "tcp 1.2.3.4:1"} {
		if _, _, err := ring.ParseFlow(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// FuzzPacketKey: the direct hash of a packet is the Community ID hash of
// its flow record, whatever the packet.
func FuzzPacketKey(f *testing.F) {
	f.Add(false, []byte{10, 0, 0, 1}, []byte{10, 0, 0, 2}, uint8(6), uint16(1234), uint16(80), uint8(0), uint8(0))
	f.Add(true, []byte{0x20, 1, 0xd, 0xb8, 15: 1}, []byte{0x20, 1, 0xd, 0xb8, 15: 1}, uint8(17), uint16(53), uint16(53), uint8(0), uint8(0))
	f.Add(true, []byte{10: 0xff, 11: 0xff, 12: 1, 15: 2}, []byte{1}, uint8(47), uint16(0), uint16(0), uint8(0), uint8(0))
	f.Add(false, []byte{1, 2, 3, 4}, []byte{1, 2, 3, 4}, uint8(1), uint16(0), uint16(0), uint8(8), uint8(0))
	f.Fuzz(func(t *testing.T, v6 bool, src, dst []byte, proto uint8, sp, dp uint16, typ, code uint8) {
		p := decode.Packet{IPv6: v6, Proto: proto, SrcPort: sp, DstPort: dp, ICMPType: typ, ICMPCode: code}
		copy(p.SrcAddr[:], src)
		copy(p.DstAddr[:], dst)
		if !v6 {
			clear(p.SrcAddr[4:])
			clear(p.DstAddr[4:])
		}
		var r flow.Record
		if v6 {
			r.SrcAddr, r.DstAddr = netip.AddrFrom16(p.SrcAddr), netip.AddrFrom16(p.DstAddr)
		} else {
			r.SrcAddr, r.DstAddr = netip.AddrFrom4([4]byte(p.SrcAddr[:4])), netip.AddrFrom4([4]byte(p.DstAddr[:4]))
		}
		r.Proto, r.SrcPort, r.DstPort, r.ICMPType, r.ICMPCode = proto, sp, dp, typ, code
		if got, want := ring.PacketKey(&p), ring.RecordKey(&r); got != want {
			t.Errorf("%+v: key %x, flow record's %x", p, got, want)
		}
	})
}
