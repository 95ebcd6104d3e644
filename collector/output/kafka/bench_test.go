package kafka

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spanflow/spanflow/collector/output/ndjson"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// benchBatches are datagrams' worth of records (30 flows each, as an IPFIX
// datagram of the exporter's template holds) from 500 exporters.
func benchBatches() [][]flow.Record {
	now := time.Now()
	batches := make([][]flow.Record, 500)
	for e := range batches {
		a := netip.AddrFrom4([4]byte{198, 18, byte(e >> 8), byte(e)})
		recs := make([]flow.Record, 30)
		for i := range recs {
			recs[i] = flow.Record{Kind: flow.KindIPFIX, ObserverIP: a, ExporterAddr: a, ObservationDomain: 1, Received: now,
				Start: now.Add(-time.Minute), End: now, SrcAddr: netip.AddrFrom4([4]byte{10, 0, byte(e), byte(i)}),
				DstAddr: netip.MustParseAddr("10.255.0.1"), SrcPort: uint16(40000 + i), DstPort: 443, Proto: 6,
				Bytes: 123456, Packets: 100, InIf: 3, OutIf: 4, TCPFlags: 0x1b, Locality: "internal", Direction: "east-west"}
		}
		batches[e] = recs
	}
	return batches
}

// BenchmarkOutputs writes the same batches through the Kafka output to the
// real broker (until acknowledged) and, as the peer measured in the same
// run, through the NDJSON output (the collector's default, the JSON
// documents Elasticsearch would get) to io.Discard. flows/cpu-s is flows
// per second of this process's CPU time: one core's throughput, whatever
// else (the broker) runs on the machine.
func BenchmarkOutputs(b *testing.B) {
	brokers := testutil.Kafka(b)
	batches := benchBatches()
	perLoop := 0
	for _, recs := range batches {
		perLoop += len(recs)
	}
	run := func(b *testing.B, w flow.Sink, flush func()) {
		cpu0, start := testutil.CPUTime(), time.Now()
		flows := 0
		for b.Loop() {
			for _, recs := range batches {
				if err := w.Write(recs); err != nil {
					b.Fatal(err)
				}
			}
			flows += perLoop
		}
		flush()
		cpu := testutil.CPUTime() - cpu0
		b.ReportMetric(float64(flows)/cpu.Seconds(), "flows/cpu-s")
		b.ReportMetric(float64(flows)/time.Since(start).Seconds(), "acked-flows/s")
	}
	b.Run("kafka", func(b *testing.B) {
		c := DefaultConfiguration()
		c.Connection.Brokers, c.Connection.Topic = []string{brokers}, fmt.Sprintf("spanflow-bench-%d", time.Now().UnixNano())
		c.CreatePartitions = 8
		o, err := New(reporter.NewForTest(nil), c)
		if err != nil {
			b.Fatal(err)
		}
		if err := o.Start(); err != nil {
			b.Fatal(err)
		}
		defer o.Stop()
		run(b, o, func() {
			if err := o.client.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
		})
		b.ReportMetric(promtest.ToFloat64(o.records.WithLabelValues("buffer_full")), "dropped-flows")
	})
	b.Run("ndjson-peer", func(b *testing.B) {
		o, err := ndjson.New(reporter.NewForTest(nil), ndjson.DefaultConfiguration(), io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		if err := o.Start(); err != nil {
			b.Fatal(err)
		}
		defer o.Stop()
		run(b, o, func() {})
	})
}
