package exporter

import (
	"testing"

	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/exporter/ipfix"
	"github.com/spanflow/spanflow/exporter/meter"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

type discard struct{ n int }

func (d *discard) Send(b []byte) error { d.n += len(b); return nil }

// BenchmarkPipeline measures decode+meter+encode per packet on the bulk mix
// (plain, 802.1Q, VXLAN, ERSPAN II/III, GRE; TCP/UDP/ICMP; IPv4/IPv6) on
// one core; one op is one packet. 200,000 frames lie back to back in memory
// as in a capture reader's buffer and are replayed with their time shifted
// by one second of flow time per pass.
//
//   - replay: the capture as it is: about 17,700 flows live in the table and
//     go on from pass to pass (ending at their active timeout).
//   - churn: each pass is new traffic (source addresses changed): flows keep
//     starting and ending at their idle timeout, about 280,000 live in the
//     table and 9% of packets end a flow; measured after 16 passes of
//     warm-up, in the steady state.
//
// The plain-replay and plain-churn cases do the same with the plain mix
// (synth.NewPlain: untunnelled, short connections), issue #22's other
// traffic.
func BenchmarkPipeline(b *testing.B) {
	pipelineBench(b, "", synth.NewBulk(base))
	pipelineBench(b, "plain-", synth.NewPlain(base))
}

func pipelineBench(b *testing.B, prefix string, g *synth.Bulk) {
	const n = 200000
	pkts := g.Packets(n)
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
	for _, mode := range []struct {
		name  string
		churn bool
		warm  int
	}{{"replay", false, n}, {"churn", true, 16 * n}} {
		b.Run(prefix+mode.name, func(b *testing.B) {
			enc, err := ipfix.New(nil, ipfix.DefaultConfiguration(), &discard{})
			if err != nil {
				b.Fatal(err)
			}
			table, err := meter.New(reporter.NewForTest(nil), meter.DefaultConfiguration(), enc)
			if err != nil {
				b.Fatal(err)
			}
			d := decode.New()
			// As the exporter meters: in batches through a Feeder.
			feeder := meter.NewFeeder(table)
			run := func(i int) {
				k, pass := i%n, uint32(i/n+1)
				now := pkts[k].Time + int64(pass)*span
				p := feeder.Slot()
				if d.Decode(decode.LinkEthernet, pkts[k].Data, len(pkts[k].Data)+600, p) == decode.ReasonOK {
					if mode.churn {
						p.SrcAddr[3] ^= byte(pass)
						p.SrcAddr[2] ^= byte(pass >> 8)
					}
					feeder.Commit(now, now)
					if feeder.Full() {
						feeder.Flush()
					}
				}
			}
			for i := 0; i < mode.warm; i++ {
				run(i)
			}
			feeder.Flush()
			exported := table.Stats().Exported()
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := testutil.CPUTime()
			for i := 0; i < b.N; i++ {
				run(mode.warm + i)
			}
			feeder.Flush()
			cpu := testutil.CPUTime() - cpu0
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
			// The machine is shared: packets per second of CPU time used by
			// this process says what one core does, whatever else runs.
			b.ReportMetric(float64(b.N)/cpu.Seconds(), "pkts/cpu-s")
			b.ReportMetric(float64(table.Len()), "flows")
			b.ReportMetric(float64(table.Stats().Exported()-exported)/float64(b.N), "exported/pkt")
		})
	}
}
