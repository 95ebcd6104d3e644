package meter

import (
	"encoding/binary"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/internal/reporter"
)

// BenchmarkRandomFlows meters packets of flows picked at random among
// 16k (the table fits the caches) or 256k (it does not), one by one (Add)
// and through a Feeder.
func BenchmarkRandomFlows(b *testing.B) {
	for _, flows := range []int{16384, 262144} {
		for _, mode := range []string{"add", "feeder"} {
			b.Run(mode+"/"+itoa(flows), func(b *testing.B) {
				table, err := New(reporter.NewForTest(nil), Configuration{ActiveTimeout: time.Hour, IdleTimeout: time.Hour, MaxFlows: 1 << 20}, nullSink{})
				if err != nil {
					b.Fatal(err)
				}
				pkts := make([]decode.Packet, 1<<16)
				rng := rand.New(rand.NewPCG(1, 1))
				for i := range pkts {
					f := rng.IntN(flows)
					pkts[i] = decode.Packet{Proto: 17, SrcPort: uint16(f), DstPort: 53, IPLength: 100}
					binary.BigEndian.PutUint32(pkts[i].SrcAddr[:], uint32(f))
				}
				for f := 0; f < flows; f++ {
					p := decode.Packet{Proto: 17, SrcPort: uint16(f), DstPort: 53, IPLength: 100}
					binary.BigEndian.PutUint32(p.SrcAddr[:], uint32(f))
					table.Add(&p, 1)
				}
				feeder := NewFeeder(table)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					p := &pkts[i&(len(pkts)-1)]
					if mode == "add" {
						table.Add(p, 2)
						continue
					}
					*feeder.Slot() = *p
					feeder.Commit(2, 2)
					if feeder.Full() {
						feeder.Flush()
					}
				}
				feeder.Flush()
			})
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
