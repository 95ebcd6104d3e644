package sflow

import (
	"encoding/binary"
	"testing"

	"github.com/spanflow/spanflow/internal/flow"
)

// FuzzSampledHeader feeds sampled packet headers (Ethernet, raw IPv4, raw
// IPv6) to the header decoder: no panic, and ports are either read or
// marked as not read.
func FuzzSampledHeader(f *testing.F) {
	f.Add(uint8(1), []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x81, 0, 0, 10, 0x08, 0, 0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x1f, 0x90})
	f.Add(uint8(11), []byte{0x45, 0, 0, 40, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0, 53, 0, 53, 0, 8})
	f.Add(uint8(12), append([]byte{0x60, 0, 0, 0, 0, 8, 44, 64}, make([]byte, 48)...))
	// MPLS label (bottom of stack), then an IPv4 header; PPP in HDLC framing.
	f.Add(uint8(3), []byte{0, 0x64, 0x1, 64, 0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x1f, 0x90, 0, 80})
	f.Add(uint8(4), []byte{0xff, 0x03, 0, 0x21, 0x45, 0, 0, 40, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0, 53, 0, 53})
	// Ethernet, PPPoE session, PPP IPv4.
	f.Add(uint8(0), []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x88, 0x64, 0x11, 0, 0, 1, 0, 30, 0, 0x21, 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0, 53, 0, 53})
	f.Fuzz(func(t *testing.T, proto uint8, b []byte) {
		p := []uint32{headerEthernet, headerIPv4, headerIPv6, headerMPLS, headerPPP, headerPOS}[int(proto)%6]
		var r flow.Record
		decodeHeader(&r, p, b)
		if r.NoPorts && (r.SrcPort != 0 || r.DstPort != 0) {
			t.Fatalf("ports %d/%d marked as not read", r.SrcPort, r.DstPort)
		}
		var enc flow.Encoder
		enc.AppendDocument(nil, &r)
	})
}

// FuzzCounterStructures feeds counter records of every known format to
// their reader: no panic, and the document encodes.
func FuzzCounterStructures(f *testing.F) {
	f.Add(uint32(2003), make([]byte, 80))
	f.Add(uint32(2000), append(binary.BigEndian.AppendUint32(nil, 3), 'a', 'b', 'c', 0))
	f.Add(uint32(7), make([]byte, 56))
	f.Fuzz(func(t *testing.T, format uint32, b []byte) {
		formats := make([]uint32, 0, len(counterStructs))
		for k := range counterStructs {
			formats = append(formats, k)
		}
		if _, ok := counterStructs[format]; !ok {
			format = formats[int(format%uint32(len(formats)))]
		}
		cs := readCounters(format, b)
		if cs == nil {
			return
		}
		var enc flow.Encoder
		enc.AppendDocument(nil, &flow.Record{SFlowCounters: cs})
	})
}
