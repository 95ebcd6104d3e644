package pipeline_test

import (
	"fmt"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/spanflow/spanflow/bench/ipfixgen"
	"github.com/spanflow/spanflow/collector/output/ndjson"
	"github.com/spanflow/spanflow/collector/pipeline"
	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// streams are the traffic mixes of issue #22: small datagrams as pmacct,
// softflowd and routers with short export timers send them (1 and 6
// records), large ones (25), from one exporter and from 500.
var streams = []struct{ perMsg, exporters int }{
	{1, 1}, {6, 1}, {25, 1}, {6, 500}, {25, 500},
}

// BenchmarkHandle measures the pipeline from a received datagram to the
// NDJSON bytes (decode, normalize, metrics, encode, the output's buffer;
// written to io.Discard), per flow: what one core does per record,
// per-datagram costs included. batch=1 hands datagrams one by one (Handle,
// as IPFIX over TCP), batch=32 as the UDP listener does with recvmmsg
// (HandleBatch).
func BenchmarkHandle(b *testing.B) {
	for _, s := range streams {
		for _, batch := range []int{1, 32} {
			handleBench(b, s.perMsg, s.exporters, batch)
		}
	}
}

func handleBench(b *testing.B, perMsg, exporters, batch int) {
	s := struct{ perMsg, exporters int }{perMsg, exporters}
	b.Run(fmt.Sprintf("records=%d/exporters=%d/batch=%d", s.perMsg, s.exporters, batch), func(b *testing.B) {
		r := reporter.NewForTest(nil)
		nd, err := ndjson.New(r, ndjson.DefaultConfiguration(), io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		p, err := pipeline.New(r, pipeline.DefaultConfiguration(), pipeline.Dependencies{
			Outputs: []pipeline.Output{{Name: "stdout", Sink: nd}}})
		if err != nil {
			b.Fatal(err)
		}
		if err := nd.Start(); err != nil {
			b.Fatal(err)
		}
		defer nd.Stop()
		w := p.NewWorker()
		now := time.Now()
		// 16 data messages per exporter, sent in turn.
		var dgs []decoders.Datagram
		for e := range s.exporters {
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(e >> 8), byte(e)}), 4739)
			g := ipfixgen.New(uint32(e+1), s.perMsg)
			w.Handle(decoders.Datagram{Source: src, Payload: g.Template(), Received: now})
			for range 16 {
				dgs = append(dgs, decoders.Datagram{Source: src, Payload: g.AppendData(nil), Received: now})
			}
		}
		order := make([]decoders.Datagram, 0, len(dgs))
		for i := range 16 {
			for e := range s.exporters {
				order = append(order, dgs[e*16+i])
			}
		}
		b.ReportAllocs()
		cpu0 := testutil.CPUTime()
		b.ResetTimer()
		flows := 0
		for i := 0; flows < b.N; i += batch {
			if batch == 1 {
				w.Handle(order[i%len(order)])
			} else {
				j := i % len(order)
				w.HandleBatch(order[j:min(j+batch, len(order))])
				flows += (min(j+batch, len(order)) - j - 1) * s.perMsg
			}
			flows += s.perMsg
		}
		b.StopTimer()
		b.ReportMetric(float64(flows)/(testutil.CPUTime()-cpu0).Seconds(), "flows/cpu-s")
	})
}
