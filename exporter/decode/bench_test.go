package decode

import (
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/synth"
)

// BenchmarkDecode decodes the benchmark mix (plain, 802.1Q, VXLAN, ERSPAN
// II/III, GRE; one op is one frame).
func BenchmarkDecode(b *testing.B) {
	const n = 65536
	pkts := packedBulk(n)
	d := New()
	var p Packet
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		data := pkts[i&(n-1)].Data
		if d.Decode(LinkEthernet, data, len(data)+600, &p) != ReasonOK {
			b.Fatal("not decoded")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}

// packedBulk returns n frames of the bulk mix lying back to back in memory,
// as in a capture reader's buffer.
func packedBulk(n int) []synth.Packet {
	pkts := synth.NewBulk(time.Unix(0, 0)).Packets(n)
	var arena []byte
	for i := range pkts {
		arena = append(arena, pkts[i].Data...)
	}
	for i, off := 0, 0; i < n; i++ {
		l := len(pkts[i].Data)
		pkts[i].Data = arena[off : off+l : off+l]
		off += l
	}
	return pkts
}
