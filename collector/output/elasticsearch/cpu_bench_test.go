package elasticsearch

import (
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/testutil"
)

// BenchmarkClientCPU measures the CPU the output itself spends per
// document (encoding, ids, bulk bodies, response handling, garbage
// collection) against a server that takes every bulk request and answers
// that every document was created. On a host that also runs Elasticsearch
// this CPU is taken from the cluster. The server's own CPU (reading the
// body, writing the answer) is in the figure too.
func BenchmarkClientCPU(b *testing.B) {
	o, _ := startWithStub(b, false, `{"create":{"status":201}}`)
	const n = 100000
	recs, _ := genRecords(n, time.Date(2002, 1, 1, 0, 0, 0, 0, time.UTC), 1)
	b.ResetTimer()
	cpu0 := testutil.CPUTime()
	for i := 0; i < b.N; i++ {
		for j := 0; j < n; j += 500 {
			// As fast as the output takes them without spooling, like
			// the cluster benchmarks.
			for o.queued.Load() > int64(o.config.QueueSize/2) {
				time.Sleep(time.Millisecond)
			}
			if err := o.Write(recs[j : j+500]); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := o.Stop(); err != nil {
		b.Fatal(err)
	}
	cpu := testutil.CPUTime() - cpu0
	if docs, _ := o.spool.Stats(); docs > 0 {
		b.Fatalf("%d documents went to the spool", docs)
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(n*b.N), "cpu-ns/doc")
	b.ReportMetric(0, "ns/op")
}
