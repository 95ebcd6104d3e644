package indexer_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/indexer"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestTopicCreatedAfterTheIndexer: the indexer starts, joins its group and
// polls before any collector has created the topic; once one does and
// publishes, the indexer takes the topic's partitions and indexes every
// flow, without a restart.
func TestTopicCreatedAfterTheIndexer(t *testing.T) {
	brokers := testutil.Kafka(t)
	topic := fmt.Sprintf("spanflow-late-indexer-%d", rand.Uint32())
	cfg := indexerConfig(brokers, topic, topic)
	var indexed atomic.Int64
	ix, err := indexer.New(reporter.NewForTest(nil), cfg, counting(&indexed))
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Start(); err != nil {
		t.Fatal(err)
	}
	defer ix.Stop()
	time.Sleep(10 * time.Second) // joined, polling a topic that is not there
	const n = 2000
	start := time.Now()
	publish(t, cfg.Connection, genFlows(n, 20, rand.Uint32N(1<<31)+1), 20)
	for deadline := time.Now().Add(3 * time.Minute); indexed.Load() < n; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d flows indexed %s after the topic was created", indexed.Load(), n, time.Since(start))
		}
	}
	t.Logf("all %d flows indexed %s after the topic was created", n, time.Since(start).Round(time.Second))
	if got := indexed.Load(); got != n {
		t.Errorf("%d flows indexed, want %d", got, n)
	}
}

// counting is the dependencies of an indexer whose only sink counts the
// records it is given into n.
func counting(n *atomic.Int64) indexer.Dependencies {
	return indexer.Dependencies{Sinks: []indexer.NamedSink{{Name: "count", Sink: indexer.SinkFunc(func(_ context.Context, recs []flow.Record) error {
		n.Add(int64(len(recs)))
		return nil
	})}}}
}
