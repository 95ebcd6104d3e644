package kafka

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// lateWriter writes numbered messages of records to o and remembers them,
// to compare with what the topic holds.
type lateWriter struct {
	t       *testing.T
	o       *Output
	written []flow.Record
	from    int // the topic holds written[from:] (it was deleted before)
}

func (w *lateWriter) write(messages int, phase uint64) {
	w.t.Helper()
	for i := range messages {
		recs := records(10, byte(i))
		for j := range recs {
			recs[j].Bytes = phase
		}
		if err := w.o.Write(recs); err != nil {
			w.t.Fatal(err)
		}
		w.written = append(w.written, recs...)
	}
}

// delivered waits until every record written is settled, failing at once
// if one was dropped, then compares the topic's records with those written.
func (w *lateWriter) delivered(broker string, within time.Duration) {
	w.t.Helper()
	o := w.o
	count := func(result string) int { return int(promtest.ToFloat64(o.records.WithLabelValues(result))) }
	for deadline := time.Now().Add(within); o.inFlight.Load() > 0 || count("sent") < len(w.written); time.Sleep(100 * time.Millisecond) {
		if lost := count("delivery_failed") + count("buffer_full"); lost > 0 {
			w.t.Fatalf("%d records dropped (delivery_failed %d, buffer_full %d) of %d written; the topic was not there yet",
				lost, count("delivery_failed"), count("buffer_full"), len(w.written))
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%d of %d records sent after %s, %d still buffered", count("sent"), len(w.written), within, o.inFlight.Load())
		}
	}
	got := map[string]int{}
	for _, r := range topicRecords(w.t, broker, o.Topic()) {
		got[string(flow.AppendWire(nil, []flow.Record{r}))]++
	}
	missing := 0
	for _, r := range w.written[w.from:] {
		k := string(flow.AppendWire(nil, []flow.Record{r}))
		if got[k] == 0 {
			missing++
			continue
		}
		got[k]--
	}
	extra := 0
	for _, n := range got {
		extra += n
	}
	if missing > 0 || extra > 0 {
		w.t.Errorf("the topic lacks %d of the %d records written and holds %d others", missing, len(w.written)-w.from, extra)
	}
}

// No broker answers when the output starts, so the topic cannot be
// created; records are written then, and again once a broker answers at
// that address. Every one must reach the topic. The output used to try
// creating the topic once, at start; franz-go, which does not create
// topics, then failed every record with UNKNOWN_TOPIC_OR_PARTITION
// (delivery_failed) until the collector restarted.
func TestTopicCreatedWhenTheBrokerComesBack(t *testing.T) {
	testutil.Kafka(t)
	port := 20000 + rand.IntN(20000)
	broker := fmt.Sprintf("127.0.0.1:%d", port)
	var log testutil.SyncBuffer
	c := DefaultConfiguration()
	c.Connection.Brokers, c.Connection.Topic, c.Connection.DialTimeout = []string{broker}, "spanflow-late", time.Second
	c.CreatePartitions = 4
	o, err := New(reporter.NewForTest(&log), c)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	defer o.Stop()
	w := &lateWriter{t: t, o: o}
	w.write(50, 1) // the broker away
	for deadline := time.Now().Add(time.Minute); !strings.Contains(log.String(), "Kafka topic not ready"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no warning that the topic is not ready:\n%s", log.String())
		}
	}
	privateBrokerAt(t, port)
	w.write(50, 2) // the broker back, the topic perhaps not yet
	w.delivered(broker, 3*time.Minute)
	w.write(50, 3) // and it goes on
	w.delivered(broker, time.Minute)
	if !o.topicReady.Load() {
		t.Error("topic_ready is 0 after the records were delivered")
	}
}

// A topic the output does not create (kafka-partitions 0) and that the
// operator creates late: the records written before wait for it, however
// many metadata refreshes did not know it (franz-go failed them after 4,
// about 10 s), and are all delivered once it is there.
func TestRecordsWaitForATopicCreatedLater(t *testing.T) {
	brokers := testutil.Kafka(t)
	c := DefaultConfiguration()
	c.Connection.Brokers, c.Connection.Topic = []string{brokers}, fmt.Sprintf("spanflow-later-%d", rand.Uint32())
	c.CreatePartitions = 0
	o, err := New(reporter.NewForTest(nil), c)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	defer o.Stop()
	w := &lateWriter{t: t, o: o}
	w.write(50, 1)
	time.Sleep(30 * time.Second) // the operator takes a while
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := testutil.KafkaAdmin(t, brokers).CreateTopic(ctx, 3, 1, nil, o.Topic()); err != nil {
		t.Fatal(err)
	}
	w.write(50, 2)
	w.delivered(brokers, 2*time.Minute)
}

// The topic is deleted while the output runs (an operator, a retention
// tool): the output notices, creates it again, and the records written
// meanwhile reach it. Before, franz-go held them without end, then dropped
// them as buffer_full, until the collector restarted.
func TestTopicDeletedIsCreatedAgain(t *testing.T) {
	brokers := testutil.Kafka(t)
	every := topicCheckEvery
	t.Cleanup(func() { topicCheckEvery = every }) // after the output's stop, registered later
	topicCheckEvery = 300 * time.Millisecond
	var log testutil.SyncBuffer
	c := DefaultConfiguration()
	c.Connection.Brokers, c.Connection.Topic = []string{brokers}, fmt.Sprintf("spanflow-deleted-%d", rand.Uint32())
	c.CreatePartitions = 2
	o := started(t, c, &log)
	w := &lateWriter{t: t, o: o}
	w.write(20, 1)
	w.delivered(brokers, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := testutil.KafkaAdmin(t, brokers).DeleteTopic(ctx, o.Topic()); err != nil {
		t.Fatal(err)
	}
	// What the topic held went with it: compare what is written from now.
	w.from = len(w.written)
	w.write(20, 2)
	w.delivered(brokers, 2*time.Minute)
	if !strings.Contains(log.String(), "Kafka topic is gone") {
		t.Errorf("no warning that the topic went:\n%s", log.String())
	}
}

// The topic is deleted and at once created again by someone else (an
// operator, kafka-partitions 0), between two of the output's lookups: the
// client, which knew the first instance, had every record refused with
// UNKNOWN_TOPIC_ID. The output adopts the new instance and produces the
// refused records again.
func TestTopicRecreatedByOthers(t *testing.T) {
	brokers := testutil.Kafka(t)
	every := topicCheckEvery
	t.Cleanup(func() { topicCheckEvery = every }) // after the output's stop, registered later
	topicCheckEvery = 500 * time.Millisecond
	adm := testutil.KafkaAdmin(t, brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var log testutil.SyncBuffer
	c := DefaultConfiguration()
	c.Connection.Brokers, c.Connection.Topic = []string{brokers}, fmt.Sprintf("spanflow-recreated-%d", rand.Uint32())
	c.CreatePartitions = 0
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, c.Connection.TopicName()); err != nil {
		t.Fatal(err)
	}
	o := started(t, c, &log)
	w := &lateWriter{t: t, o: o}
	w.write(20, 1)
	w.delivered(brokers, time.Minute)
	testutil.RecreateTopic(t, adm, o.Topic(), 3, 0)
	w.from = len(w.written)
	w.write(20, 2)
	w.delivered(brokers, time.Minute)
	if !strings.Contains(log.String(), "deleted and created again") {
		t.Errorf("no warning that the topic was created again:\n%s", log.String())
	}
}

// started starts an output logging to log, stopped (and its log shown if
// the test failed) at the test's end.
func started(t *testing.T, c Configuration, log *testutil.SyncBuffer) *Output {
	t.Helper()
	o, err := New(reporter.NewForTest(log), c)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		o.Stop()
		if t.Failed() {
			t.Log(log.String())
		}
	})
	return o
}
