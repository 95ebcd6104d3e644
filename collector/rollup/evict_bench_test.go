package rollup

import (
	"net/netip"
	"strconv"
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

// BenchmarkTickFullScopes: one tick (its fold, bucket close and snapshot)
// with every scope at its limit of 10,000 series, each fed a record a
// tick: the time the engine's lock is held once a second on a collector
// at its series limits.
func BenchmarkTickFullScopes(b *testing.B) {
	const n = 10_000
	recs := make([]flow.Record, n)
	for i := range recs {
		r := lineRecord(at(100.5), 0, 100)
		r.ObserverIP = netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)})
		r.Proto, r.SrcPort, r.DstPort = 6, 40000, uint16(1+i)
		r.InIfName, r.InIf = "", uint32(1+i)
		name := "vm-" + strconv.Itoa(i)
		r.Src = flow.Endpoint{VSphere: &flow.VSphere{VMName: name, Project: "p-" + name}}
		recs[i] = r
	}
	e := newTestEngine(b, func(c *Configuration) { c.Delay, c.MaxSeries = 0, n })
	e.Tick(at(100))
	sec := 100.0
	step := func() *Snapshot {
		for i := range recs {
			recs[i].Received, recs[i].Start, recs[i].End = at(sec+0.5), at(sec+0.5), at(sec+0.5)
		}
		if err := e.Write(recs); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		s := e.Tick(at(sec + 1))
		b.StopTimer()
		sec++
		return s
	}
	if s := step(); len(s.Rows) != 5*n {
		b.Fatalf("%d rows, want %d", len(s.Rows), 5*n)
	}
	b.ResetTimer()
	b.StopTimer()
	for range b.N {
		step()
	}
}
