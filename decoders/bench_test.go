package decoders_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/spanflow/spanflow/bench/ipfixgen"
	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/testutil"
)

// ipfixBench is a decoder that knows the generator's template and 64 data
// messages of perMsg flows from its exporter.
func ipfixBench(b *testing.B, perMsg int) (*decoders.Decoder, netip.AddrPort, time.Time, [][]byte) {
	g := ipfixgen.New(1, perMsg)
	dec, _ := decoders.New(decoders.DefaultConfiguration())
	src := netip.MustParseAddrPort("192.0.2.1:40000")
	now := time.Now()
	if _, _, err := dec.Decode(decoders.Datagram{Source: src, Payload: g.Template(), Received: now}, nil); err != nil {
		b.Fatal(err)
	}
	msgs := make([][]byte, 64)
	for i := range msgs {
		msgs[i] = g.AppendData(nil)
	}
	return dec, src, now, msgs
}

// BenchmarkIPFIXDecodeEncode measures the collector's per-flow work on one
// core: decode an IPFIX message (goflow2), normalize into flow.Record and
// encode every record as an NDJSON line. ns/op and allocs/op are per flow.
func BenchmarkIPFIXDecodeEncode(b *testing.B) {
	const perMsg = 20
	dec, src, now, msgs := ipfixBench(b, perMsg)
	var recs []flow.Record
	var enc flow.Encoder
	out := make([]byte, 0, 64<<10)
	b.ReportAllocs()
	cpu0 := testutil.CPUTime()
	b.ResetTimer()
	for i := 0; i < b.N; i += perMsg {
		var err error
		recs, _, err = dec.Decode(decoders.Datagram{Source: src, Payload: msgs[(i/perMsg)%len(msgs)], Received: now}, recs[:0])
		if err != nil || len(recs) != perMsg {
			b.Fatalf("decoded %d records: %v", len(recs), err)
		}
		out = out[:0]
		for j := range recs {
			out = enc.AppendDocument(out, &recs[j])
			out = append(out, '\n')
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
	// The machine running the benchmarks is often shared: CPU time says
	// what one core does, whatever the wall clock says.
	b.ReportMetric(float64(b.N)/(testutil.CPUTime()-cpu0).Seconds(), "flows/cpu-s")
}

// BenchmarkIPFIXDecode measures decoding alone, per datagram of 20 flows:
// the per-datagram work (exporter lookup, template state, limits) shows
// here, not hidden by the encoding.
func BenchmarkIPFIXDecode(b *testing.B) {
	const perMsg = 20
	dec, src, now, msgs := ipfixBench(b, perMsg)
	var recs []flow.Record
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		var err error
		recs, _, err = dec.Decode(decoders.Datagram{Source: src, Payload: msgs[i%len(msgs)], Received: now}, recs[:0])
		if err != nil || len(recs) != perMsg {
			b.Fatalf("decoded %d records: %v", len(recs), err)
		}
	}
}
