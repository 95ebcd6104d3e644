package rollup_test

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/spanflow/spanflow/bench/ipfixgen"
	"github.com/spanflow/spanflow/collector/rollup"
	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// BenchmarkRollup measures, in one run, the rollups' cost per flow on one
// core against the peer: decoding the same flows from IPFIX (goflow2 plus
// our normalisation). ns/op is per flow in both.
func BenchmarkRollup(b *testing.B) {
	const perMsg = 20
	g := ipfixgen.New(1, perMsg)
	dec, _ := decoders.New(decoders.DefaultConfiguration())
	src := netip.MustParseAddrPort("192.0.2.1:40000")
	t0 := time.Unix(1_700_000_000, 0)
	if _, _, err := dec.Decode(decoders.Datagram{Source: src, Payload: g.Template(), Received: t0}, nil); err != nil {
		b.Fatal(err)
	}
	msgs := make([][]byte, 64)
	var batches [][]flow.Record
	for i := range msgs {
		msgs[i] = g.AppendData(nil)
		recs, _, err := dec.Decode(decoders.Datagram{Source: src, Payload: msgs[i], Received: t0}, nil)
		if err != nil || len(recs) != perMsg {
			b.Fatalf("decoded %d records: %v", len(recs), err)
		}
		// What enrichment would add: 8 lines, 20 projects, 400 VMs, and
		// spans of up to 5 s (the fresh-counters active timeout).
		for j := range recs {
			n := i*perMsg + j
			r := &recs[j]
			r.InIf, r.OutIf, r.InIfName, r.OutIfName = uint32(n%8+1), uint32((n+3)%8+1), "", ""
			r.Src.VSphere = &flow.VSphere{VMName: fmt.Sprintf("vm-%d", n%400), Project: fmt.Sprintf("project-%d", n%20)}
			r.Start, r.End = t0.Add(-time.Duration(n%5)*time.Second), t0
			r.Proto, r.TCP.RTTServer = 6, time.Duration(n%50+1)*time.Millisecond
		}
		batches = append(batches, recs)
	}

	b.Run("decode", func(b *testing.B) {
		var recs []flow.Record
		b.ReportAllocs()
		cpu0 := testutil.CPUTime()
		for i := 0; i < b.N; i += perMsg {
			recs, _, _ = dec.Decode(decoders.Datagram{Source: src, Payload: msgs[(i/perMsg)%len(msgs)], Received: t0}, recs[:0])
		}
		reportCPU(b, cpu0)
	})
	b.Run("rollup", func(b *testing.B) {
		cfg := rollup.DefaultConfiguration()
		e, err := rollup.New(reporter.NewForTest(nil), cfg)
		if err != nil {
			b.Fatal(err)
		}
		// Event time: 1,000 batches of 20 flows per second, ticking as the
		// second changes, so the ticks' cost is in the figure.
		now := t0
		b.ReportAllocs()
		cpu0 := testutil.CPUTime()
		for i := 0; i < b.N; i += perMsg {
			batch := batches[(i/perMsg)%len(batches)]
			now = now.Add(time.Millisecond)
			for j := range batch {
				batch[j].Received = now
			}
			e.Write(batch)
			if now.Nanosecond() == 0 {
				e.Tick(now)
			}
		}
		reportCPU(b, cpu0)
	})
	// The realistic mix (mixRecords), the rollups alone, with 100 rules
	// (issue #14's measure) and with the detectors too: 262,144 records (2.6 s at 100,000 flows a
	// second; 15,700 distinct sources in each 100,000 flows, 32,000 in
	// all) replayed in a loop.
	mix := mixRecords(1 << 18)
	b.Run("mix", func(b *testing.B) { benchMix(b, mix, false, false) })
	b.Run("mix+100rules", func(b *testing.B) { benchMix(b, mix, true, false) })
	b.Run("mix+100rules+detectors", func(b *testing.B) { benchMix(b, mix, true, true) })
	// A flood: 500 exporters with two lines each, every flow from a source
	// address of its own (bench/collector-streams.sh's 500-exporter
	// streams; a DDoS), at 100,000 flows a second as benchMix replays.
	b.Run("flood-1000lines", func(b *testing.B) { benchMix(b, floodRecords(1<<18), false, false) })
}

// floodRecords is n flows from 500 exporters (ingress 3, egress 4 each:
// 1,000 lines), each from a source address of its own.
func floodRecords(n int) []flow.Record {
	recs := make([]flow.Record, n)
	t0 := time.Unix(1_700_000_000, 0)
	for i := range recs {
		recs[i] = flow.Record{
			ObserverIP: netip.AddrFrom4([4]byte{127, 0, byte(1 + i%500/250), byte(1 + i%250)}),
			SrcAddr:    netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}),
			DstAddr:    netip.AddrFrom4([4]byte{10, 255, 0, 1}), SrcPort: uint16(1024 + i%60000), DstPort: 443, Proto: 6,
			Bytes: uint64(1000 + i%1000), Packets: uint64(10 + i%10), InIf: 3, OutIf: 4,
			Start: t0, End: t0.Add(1500 * time.Millisecond),
		}
	}
	return recs
}

// reportCPU reports CPU time per flow: the machine running benchmarks is
// often shared, and CPU time says what one core does whatever the wall
// clock says.
func reportCPU(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64(testutil.CPUTime()-cpu0)/float64(b.N), "cpu-ns/flow")
}

// BenchmarkRollupMemory reports the heap the engine holds after a million
// flows from a million distinct source addresses on 8 lines and 20
// projects (bytes/engine), and the same for ten thousand addresses: the
// talkers' sketches keep the two alike.
func BenchmarkRollupMemory(b *testing.B) {
	for _, sources := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprintf("sources=%d", sources), func(b *testing.B) {
			for range b.N {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				e, _ := rollup.New(reporter.NewForTest(nil), rollup.DefaultConfiguration())
				t0 := time.Unix(1_700_000_000, 0)
				e.Tick(t0)
				recs := make([]flow.Record, 1000)
				for i := 0; i < 1_000_000; i += len(recs) {
					for j := range recs {
						n := uint32((i + j) % sources)
						recs[j] = flow.Record{ObserverIP: netip.MustParseAddr("192.0.2.1"), Received: t0,
							SrcAddr: netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}), DstAddr: netip.MustParseAddr("10.200.0.1"),
							Proto: 17, SrcPort: 40000, DstPort: 53, Bytes: 100, Packets: 1, InIf: uint32(j%8 + 1),
							Src: flow.Endpoint{Network: &flow.NetworkInfo{Project: fmt.Sprint("project-", j%20)}}}
					}
					e.Write(recs)
				}
				e.Tick(t0.Add(time.Second))
				runtime.GC()
				runtime.ReadMemStats(&after)
				st := e.State()
				b.ReportMetric(float64(after.HeapAlloc)-float64(before.HeapAlloc), "bytes/engine")
				b.ReportMetric(float64(st.TalkerCounters), "talker-counters")
				runtime.KeepAlive(e)
				runtime.KeepAlive(recs)
			}
		})
	}
}
