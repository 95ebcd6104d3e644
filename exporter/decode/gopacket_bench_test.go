package decode

import (
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// BenchmarkGopacketDLP decodes the same mix as BenchmarkDecode with
// gopacket's DecodingLayerParser and preallocated layers, for comparison
// (docs/exporter.md, "Why not gopacket's DecodingLayerParser"). It only
// walks the layers gopacket knows (no ERSPAN III, no IP-length accounting,
// no fragment cache), so it does less work than Decode.
func BenchmarkGopacketDLP(b *testing.B) {
	const n = 65536
	pkts := packedBulk(n)
	var (
		eth    layers.Ethernet
		dot1q  layers.Dot1Q
		ip4    layers.IPv4
		ip6    layers.IPv6
		tcp    layers.TCP
		udp    layers.UDP
		icmp4  layers.ICMPv4
		icmp6  layers.ICMPv6
		gre    layers.GRE
		vxlan  layers.VXLAN
		erspan layers.ERSPANII
		pl     gopacket.Payload
	)
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &dot1q, &ip4, &ip6, &tcp, &udp, &icmp4, &icmp6, &gre, &vxlan, &erspan, &pl)
	parser.IgnoreUnsupported = true
	decoded := make([]gopacket.LayerType, 0, 16)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		parser.DecodeLayers(pkts[i&(n-1)].Data, &decoded)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}
