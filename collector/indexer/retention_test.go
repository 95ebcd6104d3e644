package indexer_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/spanflow/spanflow/collector/indexer"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestRetentionOvertookTheGroup: an indexer group is stopped; the
// collectors publish on; retention deletes messages the group had not
// read (DeleteRecords moves the partitions' log start past its committed
// offsets, as a retention would). The indexer started again resumes at
// the log start (auto.offset.reset earliest) and indexes what is left, and
// says how many messages it skipped: the metric and the warning add up to
// what the brokers say was deleted past the group's offsets. Before, the
// skip was silent.
func TestRetentionOvertookTheGroup(t *testing.T) {
	brokers := testutil.Kafka(t)
	topic := fmt.Sprintf("spanflow-retention-%d", rand.Uint32())
	cfg := indexerConfig(brokers, topic, topic)
	const perMessage = 25 // publish's messages
	var indexed atomic.Int64
	var log testutil.SyncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(log.String())
		}
	})
	start := func() (*indexer.Indexer, *reporter.Reporter) {
		r := reporter.NewForTest(&log)
		ix, err := indexer.New(r, cfg, counting(&indexed))
		if err != nil {
			t.Fatal(err)
		}
		if err := ix.Start(); err != nil {
			t.Fatal(err)
		}
		return ix, r
	}
	waitIndexed := func(n int64) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); indexed.Load() < n; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d records indexed", indexed.Load(), n)
			}
		}
	}
	publish(t, cfg.Connection, genFlows(2000, 20, 5), 20)
	ix, _ := start()
	waitIndexed(2000)
	if err := ix.Stop(); err != nil {
		t.Fatal(err)
	}
	publish(t, cfg.Connection, genFlows(2000, 20, 6), 20)

	adm := testutil.KafkaAdmin(t, brokers)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	committed, err := adm.FetchOffsets(ctx, cfg.Group)
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, ix.Topic())
	if err != nil {
		t.Fatal(err)
	}
	// Retention: all but the last 2 messages of each partition are gone.
	del := kadm.Offsets{}
	ends.Each(func(o kadm.ListedOffset) {
		if c, ok := committed.Lookup(o.Topic, o.Partition); ok && o.Offset-2 > c.At {
			del.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: o.Offset - 2})
		}
	})
	if len(del) == 0 {
		t.Fatal("no partition has more than 2 messages past the group's offsets")
	}
	if res, err := adm.DeleteRecords(ctx, del); err != nil || res.Error() != nil {
		t.Fatalf("delete records: %v %v", err, res.Error())
	}
	starts, err := adm.ListStartOffsets(ctx, ix.Topic())
	if err != nil {
		t.Fatal(err)
	}
	var wantSkipped, wantMessages int64
	starts.Each(func(o kadm.ListedOffset) {
		c, _ := committed.Lookup(o.Topic, o.Partition)
		end, _ := ends.Lookup(o.Topic, o.Partition)
		wantSkipped += max(0, o.Offset-c.At)
		wantMessages += end.Offset - max(o.Offset, c.At)
	})
	t.Logf("retention deleted %d messages the group had not read; %d are left to read", wantSkipped, wantMessages)

	indexed.Store(0)
	ix, r := start()
	defer ix.Stop()
	waitIndexed(wantMessages * perMessage)
	time.Sleep(time.Second)
	if got := indexed.Load(); got != wantMessages*perMessage {
		t.Errorf("%d records indexed, want %d", got, wantMessages*perMessage)
	}
	var skipped float64
	fams, err := r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "spanflow_indexer_skipped_messages_total" {
			skipped = f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if int64(skipped) != wantSkipped {
		t.Errorf("spanflow_indexer_skipped_messages_total %v, the brokers deleted %d messages past the group's offsets", skipped, wantSkipped)
	}
	var logged int64
	for _, l := range strings.Split(log.String(), "\n") {
		if strings.Contains(l, "deleted by the topic's retention") {
			var n int64
			if _, err := fmt.Sscanf(l[strings.Index(l, " messages=")+1:], "messages=%d", &n); err == nil {
				logged += n
			}
		}
	}
	if logged != wantSkipped {
		t.Errorf("the warnings say %d messages were skipped, the brokers deleted %d", logged, wantSkipped)
	}
}
