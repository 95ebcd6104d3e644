package meter

import (
	"encoding/binary"
	"runtime"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

type nullSink struct{}

func (nullSink) Write([]flow.Record) error { return nil }

// BenchmarkTableMemory reports the heap the table takes per active flow
// (entry, index slot, chunk slack) with 500k flows in it.
func BenchmarkTableMemory(b *testing.B) {
	const flows = 500000
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		table, err := New(reporter.NewForTest(nil), Configuration{ActiveTimeout: time.Hour, IdleTimeout: time.Hour, MaxFlows: 1 << 20}, nullSink{})
		if err != nil {
			b.Fatal(err)
		}
		var p decode.Packet
		p.Proto, p.IPLength, p.DstPort = 17, 100, 53
		for f := 0; f < flows; f++ {
			binary.BigEndian.PutUint32(p.SrcAddr[:], uint32(f))
			p.SrcPort = uint16(f)
			table.Add(&p, int64(f))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if table.Len() != flows {
			b.Fatalf("%d flows in the table", table.Len())
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/flows, "bytes/flow")
		runtime.KeepAlive(table)
	}
}

// BenchmarkAdd meters packets of 64k concurrent flows; one op is one packet.
func BenchmarkAdd(b *testing.B) {
	table, err := New(reporter.NewForTest(nil), DefaultConfiguration(), nullSink{})
	if err != nil {
		b.Fatal(err)
	}
	var p decode.Packet
	p.Proto, p.IPLength, p.DstPort = 6, 1500, 443
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		binary.BigEndian.PutUint32(p.SrcAddr[:], uint32(i&0xffff))
		p.TCPSeq = uint32(i) * 1460
		p.Payload = 1460
		p.TCPFlags = 0x10
		p.TCPWindow = 1000
		table.Add(&p, int64(i)*1000)
	}
}
