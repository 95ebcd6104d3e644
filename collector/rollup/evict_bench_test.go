package rollup

import (
	"net/netip"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/flow"
)

// BenchmarkEvictAfterScan: the tick that forgets what a scan left, once
// idle: series services (one per port scanned) and lines (one per
// interface index), up to the scope's limit each.
func BenchmarkEvictAfterScan(b *testing.B) {
	const n = 10_000
	recs := make([]flow.Record, n)
	for i := range recs {
		recs[i] = lineRecord(at(100.5), 0, 100)
		recs[i].Proto, recs[i].SrcPort, recs[i].DstPort = 6, 40000, uint16(1+i)
		recs[i].InIfName, recs[i].InIf = "", uint32(1+i)
		recs[i].SrcAddr = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
	}
	for b.Loop() {
		b.StopTimer()
		e := newTestEngine(b, func(c *Configuration) { c.Delay, c.IdleTimeout, c.MaxSeries = 0, 5*time.Second, n })
		e.Tick(at(100))
		if err := e.Write(recs); err != nil {
			b.Fatal(err)
		}
		for sec := 101.0; sec < 106; sec++ {
			e.Tick(at(sec))
		}
		b.StartTimer()
		s := e.Tick(at(107))
		b.StopTimer()
		if len(s.Rows) != 0 {
			b.Fatalf("%d rows left after the scan went idle", len(s.Rows))
		}
		b.StartTimer()
	}
}
