package exporter

import (
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/exporter/ipfix"
	"github.com/spanflow/spanflow/exporter/meter"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/reporter"
)

type discard struct{ n int }

func (d *discard) Send(b []byte) error { d.n += len(b); return nil }

// BenchmarkPipeline measures decode+meter+encode per packet on the bulk mix
// (plain, 802.1Q, VXLAN, ERSPAN II/III, GRE; TCP/UDP/ICMP; IPv4/IPv6) on
// one core; one op is one packet. The frames are replayed with their time
// shifted on each pass, and their source addresses changed, so that flows
// keep starting, ending and being exported (about 15 passes of flows live
// in the table at the default 15 s idle timeout).
func BenchmarkPipeline(b *testing.B) {
	const n = 200000
	pkts := synth.NewBulk(base).Packets(n)
	// Frames sit back to back, as in a capture reader's buffer.
	var arena []byte
	for i := range pkts {
		arena = append(arena, pkts[i].Data...)
	}
	for i, off := 0, 0; i < n; i++ {
		l := len(pkts[i].Data)
		pkts[i].Data = arena[off : off+l : off+l]
		off += l
	}
	span := pkts[n-1].Time - pkts[0].Time + 5000
	var now int64
	clock := func() int64 { return now }
	enc, err := ipfix.New(nil, ipfix.DefaultConfiguration(), &discard{}, func() time.Time { return unixNano(clock()) }, nil)
	if err != nil {
		b.Fatal(err)
	}
	table, err := meter.New(reporter.NewForTest(nil), meter.DefaultConfiguration(), enc)
	if err != nil {
		b.Fatal(err)
	}
	d := decode.New()
	var p decode.Packet
	run := func(i int) {
		k, pass := i%n, uint32(i/n+1)
		now = pkts[k].Time + int64(pass)*span
		if d.Decode(decode.LinkEthernet, pkts[k].Data, len(pkts[k].Data)+600, &p) == decode.ReasonOK {
			// Each pass is new traffic: its flows are new, the previous
			// passes' flows go idle and are exported.
			p.SrcAddr[3] ^= byte(pass)
			p.SrcAddr[2] ^= byte(pass >> 8)
			table.Add(&p, now)
		}
	}
	// Warm up until flows leave the table as fast as they come (16 s of
	// flow time with the 15 s idle timeout): the steady state.
	const warm = 16 * n
	for i := 0; i < warm; i++ {
		run(i)
	}
	exported := table.Stats().Exported()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run(warm + i)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
	b.ReportMetric(float64(table.Len()), "flows")
	b.ReportMetric(float64(table.Stats().Exported()-exported)/float64(b.N), "exported/pkt")
}

func unixNano(ns int64) time.Time { return time.Unix(0, ns) }
