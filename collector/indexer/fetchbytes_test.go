package indexer_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/indexer"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestFetchMaxBytesBound: a kafka-fetch-max-bytes past what the fetch
// request's 32-bit field holds (3,000,000,000) is refused by the
// configuration's check, naming the setting, as is one past franz-go's
// bound of a broker response (1 GiB: its client refused to start, after
// `indexer check` had said OK). Before, 3,000,000,000 was taken, and the
// real broker answered every fetch with UNKNOWN_SERVER_ERROR: the indexer
// consumed nothing. The largest value taken (100 MiB) consumes from the
// real broker.
func TestFetchMaxBytesBound(t *testing.T) {
	brokers := testutil.Kafka(t)
	topic := fmt.Sprintf("spanflow-fetch-bytes-%d", rand.Uint32())
	cfg := indexerConfig(brokers, topic, topic)
	var indexed atomic.Int64
	deps := counting(&indexed)
	for _, n := range []int{3_000_000_000, 1 << 30} {
		cfg.FetchMaxBytes = n
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "kafka-fetch-max-bytes") {
			t.Errorf("kafka-fetch-max-bytes %d: err = %v", n, err)
		}
	}
	cfg.FetchMaxBytes = 100 << 20
	publish(t, cfg.Connection, genFlows(500, 5, 3), 5)
	ix, err := indexer.New(reporter.NewForTest(nil), cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Start(); err != nil {
		t.Fatal(err)
	}
	defer ix.Stop()
	for deadline := time.Now().Add(time.Minute); indexed.Load() < 500; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("kafka-fetch-max-bytes 100 MiB: %d of 500 records indexed", indexed.Load())
		}
	}
}
