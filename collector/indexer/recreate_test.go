package indexer_test

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/indexer"
	"github.com/spanflow/spanflow/collector/output/elasticsearch"
	"github.com/spanflow/spanflow/internal/kafkaconn"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestTopicDeletedAndCreatedAgain: the flow topic is deleted while an
// indexer runs and created again (by a collector, or an operator) at once
// or 15 s later, with another partition count; the flows published to the new instance all
// reach Elasticsearch, once each, without restarting the indexer. Before,
// franz-go refused to consume from the new instance and the indexer sat
// idle until restarted.
func TestTopicDeletedAndCreatedAgain(t *testing.T) {
	for _, gap := range []time.Duration{0, 15 * time.Second} {
		t.Run("after "+gap.String(), func(t *testing.T) { testTopicDeletedAndCreatedAgain(t, gap) })
	}
}

func testTopicDeletedAndCreatedAgain(t *testing.T, gap time.Duration) {
	brokers, esURL := testutil.Kafka(t), testutil.Elasticsearch(t)
	const n, exporters = 2000, 20
	domain1, domain2 := rand.Uint32N(1<<31)+1, rand.Uint32N(1<<31)+1
	run := strconv.FormatUint(uint64(domain1), 36)
	conn := kafkaconn.DefaultConfiguration()
	conn.Brokers, conn.Topic = []string{brokers}, "spanflow-recreated-"+run
	var log testutil.SyncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(log.String())
		}
	})
	out := esOutput(t, esURL)
	defer out.Stop()
	ix, err := indexer.New(reporter.NewForTest(&log), indexerConfig(brokers, conn.Topic, "g-"+run), indexer.Dependencies{
		Sinks: []indexer.NamedSink{{Name: "elasticsearch", Sink: indexer.SinkFunc(out.IndexNow)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Start(); err != nil {
		t.Fatal(err)
	}
	defer ix.Stop()
	waitCount := func(domain uint32, want int, within time.Duration) {
		t.Helper()
		got := 0
		for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(time.Second) {
			if got = countDomain(t, esURL, domain); got >= want {
				break
			}
		}
		time.Sleep(2 * time.Second) // a late duplicate would show now
		if got = countDomain(t, esURL, domain); got != want {
			t.Fatalf("%d documents in Elasticsearch for %d flows published", got, want)
		}
	}
	publish(t, conn, genFlows(n, exporters, domain1), exporters)
	waitCount(domain1, n, 2*time.Minute)

	// The indexer polls a topic that is gone for gap.
	testutil.RecreateTopic(t, testutil.KafkaAdmin(t, brokers), ix.Topic(), 3, gap)
	recs := genFlows(n, exporters, domain2)
	publish(t, conn, recs, exporters)
	waitCount(domain2, n, 3*time.Minute)
	ids := make([]string, n)
	for i := range recs {
		ids[i] = elasticsearch.DocumentID(&recs[i])
	}
	if missing := missingIDs(t, esURL, ids); len(missing) > 0 {
		t.Fatalf("%d flows missing, e.g. %v", len(missing), missing[:min(5, len(missing))])
	}
	if !strings.Contains(log.String(), "Kafka topic was deleted") {
		t.Errorf("no warning that the topic was deleted:\n%s", log.String())
	}
}
