package indexer_test

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/indexer"
	"github.com/spanflow/spanflow/internal/kafkaconn"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// BenchmarkIndexers measures indexing throughput from the real broker into
// the real cluster with one indexer, then with two in one group (each with
// its own Elasticsearch output, as two processes would have), on the same
// cluster: the figure docs/performance.md reports is the ratio.
func BenchmarkIndexers(b *testing.B) {
	brokers, esURL := testutil.Kafka(b), testutil.Elasticsearch(b)
	const n, exporters = 60000, 200
	var perIndexers [3]float64
	for _, count := range []int{1, 2} {
		b.Run(strconv.Itoa(count), func(b *testing.B) {
			for b.Loop() {
				domain := rand.Uint32N(1<<31) + 1
				run := strconv.FormatUint(uint64(domain), 36)
				conn := kafkaconn.DefaultConfiguration()
				conn.Brokers, conn.Topic = []string{brokers}, "spanflow-bench-"+run
				// The indexers hold their partitions before the clock starts:
				// steady state, not the group's first assignment. A few
				// flows published first make every partition non-empty.
				var ixs []*indexer.Indexer
				for range count {
					out := esOutput(b, esURL)
					defer out.Stop()
					c := indexer.DefaultConfiguration()
					c.Connection, c.Group = conn, "bench-"+run
					ix, err := indexer.New(reporter.NewForTest(nil), c, indexer.Dependencies{
						Sinks: []indexer.NamedSink{{Name: "elasticsearch", Sink: indexer.SinkFunc(out.IndexNow)}}})
					if err != nil {
						b.Fatal(err)
					}
					if err := ix.Start(); err != nil {
						b.Fatal(err)
					}
					ixs = append(ixs, ix)
				}
				warm := genFlows(400, exporters, domain+1)
				publish(b, conn, warm, exporters)
				for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
					held := 0
					for _, ix := range ixs {
						held += min(ix.Partitions(), 1)
					}
					if held == count && countDomain(b, esURL, domain+1) == len(warm) {
						break
					}
					if time.Now().After(deadline) {
						b.Fatal("the indexers did not all get partitions within a minute")
					}
				}
				start := time.Now()
				publish(b, conn, genFlows(n, exporters, domain), exporters)
				for deadline := time.Now().Add(5 * time.Minute); countDomain(b, esURL, domain) < n; time.Sleep(time.Second) {
					if time.Now().After(deadline) {
						b.Fatalf("%d indexers: %d of %d flows after 5 minutes", count, countDomain(b, esURL, domain), n)
					}
				}
				el := time.Since(start)
				for _, ix := range ixs {
					ix.Stop()
				}
				perIndexers[count] = n / el.Seconds()
				b.ReportMetric(perIndexers[count], "flows/s")
			}
		})
	}
	if perIndexers[1] > 0 && perIndexers[2] > 0 {
		b.Logf("two indexers / one indexer: %.2f", perIndexers[2]/perIndexers[1])
	}
}
