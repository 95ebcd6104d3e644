package meter

import (
	"encoding/binary"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

type nullSink struct{}

func (nullSink) Write(time.Time, []flow.Record) error { return nil }

// BenchmarkTableMemory reports the memory the table takes per active flow
// with 500k flows in it: the growth of the process's resident set (the
// table's entries and index live outside the Go heap, so the heap does not
// show them), heap growth included.
func BenchmarkTableMemory(b *testing.B) {
	const flows = 500000
	for i := 0; i < b.N; i++ {
		runtime.GC()
		before := residentBytes(b)
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
		after := residentBytes(b)
		if table.Len() != flows {
			b.Fatalf("%d flows in the table", table.Len())
		}
		b.ReportMetric(float64(after-before)/flows, "bytes/flow")
		table.mem.release()
		runtime.KeepAlive(table)
	}
}

// residentBytes is the process's resident set size, from /proc/self/statm.
func residentBytes(tb testing.TB) int64 { return statm(tb, 1) }

// statm reads field i of /proc/self/statm (0: address space, 1: resident
// set) in bytes.
func statm(tb testing.TB, i int) int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		tb.Skipf("no /proc/self/statm here: %v", err)
	}
	f := strings.Fields(string(data))
	pages, err := strconv.ParseInt(f[i], 10, 64)
	if err != nil {
		tb.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
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
