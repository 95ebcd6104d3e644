package noc

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/rollup"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

// benchSnapshot is a large estate's second: 200 lines, 100 projects,
// 2,000 VMs, 300 services and 50 exporters, ten talkers per line and
// project, handshake RTTs.
func benchSnapshot(b *testing.B) (*rollup.Engine, *rollup.Snapshot, []flow.Record) {
	rc := rollup.DefaultConfiguration()
	rc.EventTime, rc.Delay = true, 0
	e, err := rollup.New(reporter.NewForTest(nil), rc)
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Unix(1_800_000_000, 0)
	var recs []flow.Record
	for i := range 20000 {
		r := flow.Record{ObserverIP: netip.AddrFrom4([4]byte{10, 0, 0, byte(i % 50)}), Received: t0, Start: t0, End: t0,
			InIf: uint32(i%4 + 1), Proto: 6, SrcPort: 40000, DstPort: uint16(i % 300),
			SrcAddr: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), DstAddr: netip.AddrFrom4([4]byte{10, 2, byte(i % 97), 1}),
			Bytes: uint64(1000 + i%5000), Packets: 10, Direction: "east-west"}
		r.Src.VSphere = &flow.VSphere{VMName: fmt.Sprintf("vm-%d", i%2000), Project: fmt.Sprintf("project-%d", i%100)}
		r.Dst.Network = &flow.NetworkInfo{Name: "dc", Project: fmt.Sprintf("project-%d", (i+7)%100)}
		r.TCP.RTTServer = time.Duration(i%50+1) * time.Millisecond
		recs = append(recs, r)
	}
	e.Write(recs)
	snap := e.Tick(t0.Add(time.Second))
	return e, snap, recs
}

// BenchmarkPush measures the server time of one push (building the frame
// from the snapshot and the flows gathered in the tick, encoding it, and
// queueing it to 50 clients) and of the provisional read that precedes it
// with the default delays, against two peers in the same run: encoding
// the whole snapshot as JSON (what a view that sends the rollups as they
// are would do), and the rollup engine's own tick on the same series.
func BenchmarkPush(b *testing.B) {
	e, snap, recs := benchSnapshot(b)
	b.Run("push-50-clients", func(b *testing.B) {
		cfg := DefaultConfiguration()
		cfg.Listen = "127.0.0.1:0"
		s, err := New(reporter.NewForTest(nil), cfg, Dependencies{Rollups: e})
		if err != nil {
			b.Fatal(err)
		}
		for range 50 {
			c := &client{ch: make(chan []byte, cfg.ClientQueue)}
			s.clients[c] = struct{}{}
			go func() {
				for range c.ch {
				}
			}()
		}
		size := 0
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			s.view.Write(recs[:1000]) // a tick's worth of flows for the Sankey
			s.Rollup(snap)
			size = len(s.lastJSON)
		}
		b.ReportMetric(float64(size), "frame-bytes")
	})
	b.Run("provisional-read", func(b *testing.B) {
		e, err := rollup.New(reporter.NewForTest(nil), rollup.DefaultConfiguration()) // delay 5 s
		if err != nil {
			b.Fatal(err)
		}
		t := recs[0].End.Add(-10 * time.Second)
		e.Tick(t)
		rows := 0
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			b.StopTimer()
			t = t.Add(time.Second)
			e.Tick(t)
			fresh := append([]flow.Record(nil), recs...)
			for i := range fresh {
				fresh[i].Received, fresh[i].Start, fresh[i].End = t, t, t
			}
			e.Write(fresh)
			t = t.Add(time.Second)
			b.StartTimer()
			e.Provisional(t.Add(600*time.Millisecond), 500*time.Millisecond, func(s *rollup.Snapshot) { rows = len(s.Rows) })
		}
		b.ReportMetric(float64(rows), "rows")
	})
	b.Run("peer-json-snapshot", func(b *testing.B) {
		size := 0
		b.ReportAllocs()
		for range b.N {
			out, _ := json.Marshal(snap)
			size = len(out)
		}
		b.ReportMetric(float64(size), "frame-bytes")
	})
	b.Run("peer-rollup-tick", func(b *testing.B) {
		e, snap, _ := benchSnapshot(b) // no view subscribed
		t := snap.Time
		b.ReportAllocs()
		for range b.N {
			t = t.Add(time.Second)
			e.Tick(t)
		}
	})
}
