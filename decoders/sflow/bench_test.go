package sflow_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/spanflow/spanflow/decoders/sflow"
	"github.com/spanflow/spanflow/internal/flow"
)

// benchDatagram is a datagram as switches send them: 8 flow samples, each
// a 128-byte Ethernet header cut from a TCP packet, an extended switch and
// an extended gateway record, then a counter sample.
func benchDatagram(b *testing.B) []byte {
	frame := packet(b, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4},
		ip4("198.51.100.1", "203.0.113.7", layers.IPProtocolTCP),
		&layers.TCP{SrcPort: 40000, DstPort: 443, ACK: true, PSH: true, Window: 1000}, payload(1400))
	sw := record(1001, xdr{}.u32(10, 0, 20, 0))
	gw := record(1003, xdr{}.u32(1).opaque([]byte{192, 0, 2, 254}).u32(65000, 64512, 64513, 1, 2, 3, 64600, 64700, 64800, 0, 100))
	var samples []xdr
	for i := uint32(1); i <= 8; i++ {
		samples = append(samples, flowSample(i, 3, 1024, 3, 4, sampledHeader(1, uint32(len(frame))+4, frame[:128]), sw, gw))
	}
	ifc := record(1, xdr{}.u32(3, 6).u64(10000000000).u32(1, 3).u64(1000).u32(10, 11, 12, 13, 14, 15).u64(2000).u32(20, 21, 22, 23, 24, 2))
	samples = append(samples, counterSample(9, 3, ifc))
	return datagram(1, samples...)
}

// BenchmarkDecode decodes one datagram of 8 flow samples and a counter
// sample; ns/op and allocs/op are per datagram.
func BenchmarkDecode(b *testing.B) {
	p := benchDatagram(b)
	src := netip.MustParseAddr("192.0.2.10")
	now := time.Now()
	var recs []flow.Record
	b.ReportAllocs()
	for b.Loop() {
		var err error
		recs, _, err = sflow.Decode(p, src, now, recs[:0])
		if err != nil || len(recs) != 9 {
			b.Fatalf("decoded %d records: %v", len(recs), err)
		}
	}
}
