package networks

import (
	"net/netip"
	"testing"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

// BenchmarkEnrich: the default networks on flows between private addresses
// of many hosts (the collector benchmarks' streams: 10.x.y.z to a server),
// and from the internet. ns/op is per flow.
func BenchmarkEnrich(b *testing.B) {
	comp, err := New(reporter.NewForTest(nil), DefaultConfiguration())
	if err != nil {
		b.Fatal(err)
	}
	recs := make([]flow.Record, 4096)
	for i := range recs {
		src := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), byte(i * 7)})
		if i%4 == 3 {
			src = netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
		}
		recs[i] = flow.Record{SrcAddr: src, DstAddr: netip.AddrFrom4([4]byte{10, 255, 0, 1}), Proto: 6, SrcPort: 40000, DstPort: 443}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r := &recs[i&(len(recs)-1)]
		r.Src.Network, r.Dst.Network = nil, nil
		comp.Enrich(r)
	}
}
