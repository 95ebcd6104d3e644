package indexer_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/indexer"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestPartitionsGaugeCountsIdlePartitions: the only indexer of a group holds
// every partition of the topic, those without traffic too (one exporter
// fills one partition of four); spanflow_indexer_partitions says so, as the
// brokers' partition count does. Before, it counted only the partitions that
// had given records, 1.
func TestPartitionsGaugeCountsIdlePartitions(t *testing.T) {
	brokers := testutil.Kafka(t)
	topic := fmt.Sprintf("spanflow-idle-partitions-%d", rand.Uint32())
	cfg := indexerConfig(brokers, topic, topic)
	publish(t, cfg.Connection, genFlows(100, 1, 8), 1) // 4 partitions, one exporter
	var indexed atomic.Int64
	r := reporter.NewForTest(nil)
	ix, err := indexer.New(r, cfg, counting(&indexed))
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Start(); err != nil {
		t.Fatal(err)
	}
	defer ix.Stop()
	for deadline := time.Now().Add(time.Minute); indexed.Load() < 100; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 100 records indexed", indexed.Load())
		}
	}
	td, err := testutil.KafkaAdmin(t, brokers).ListTopics(context.Background(), ix.Topic())
	if err != nil {
		t.Fatal(err)
	}
	want := len(td[ix.Topic()].Partitions)
	fams, err := r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := -1.0
	for _, f := range fams {
		if f.GetName() == "spanflow_indexer_partitions" {
			got = f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	if int(got) != want || want < 2 {
		t.Errorf("spanflow_indexer_partitions %v, the topic has %d partitions, all held by this indexer", got, want)
	}
}
