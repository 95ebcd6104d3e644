package kafka

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// privateBroker starts a broker of its own with scripts/kafka (the test
// freezes it, which the shared one must not be) and returns its address
// and process id.
func privateBroker(t *testing.T) (string, int) {
	t.Helper()
	testutil.Kafka(t) // gated like every Kafka test; the jars are there when the shared broker is
	return privateBrokerAt(t, 20000+rand.IntN(20000))
}

// privateBrokerAt is privateBroker on port (and port+1, its controller's).
func privateBrokerAt(t *testing.T, port int) (string, int) {
	t.Helper()
	rundir := fmt.Sprintf("/tmp/spanflow-kafka-test-%d", port)
	script := filepath.Join(testutil.ModuleRoot(), "scripts", "kafka")
	env := append(os.Environ(), "SPANFLOW_KAFKA_PORT="+strconv.Itoa(port), "SPANFLOW_KAFKA_RUNDIR="+rundir)
	cmd := exec.Command(script, "start")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/kafka start: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		stop := exec.Command(script, "stop")
		stop.Env = env
		stop.Run()
		os.RemoveAll(rundir)
	})
	b, err := os.ReadFile(filepath.Join(rundir, "kafka.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port), pid
}

// topicFlows reads the topic from the start to its end and counts the flow
// records of its messages: what the broker really holds.
func topicFlows(t *testing.T, broker, topic string) int {
	t.Helper()
	return len(topicRecords(t, broker, topic))
}

// topicRecords reads the topic from the start to its end and decodes the
// flow records of its messages.
func topicRecords(t *testing.T, broker, topic string) []flow.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []flow.Record
	for idle := 0; idle < 3; {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		if fs.NumRecords() == 0 {
			idle++
			continue
		}
		idle = 0
		fs.EachRecord(func(m *kgo.Record) {
			if recs, err = flow.DecodeWire(m.Value, recs); err != nil {
				t.Fatalf("offset %d: %v", m.Offset, err)
			}
		})
	}
	return recs
}

// TestBrokerFrozenThenBack: the broker stops answering (SIGSTOP) for 60 s
// in the middle of a run (the "broker stopped for 60 s") while
// records keep coming at a modest rate. The output keeps taking records
// without waiting, never holds more than its bound; the rest are dropped
// and counted; when the broker answers again (SIGCONT) the buffer drains
// and the output goes on. The topic then holds exactly the records counted
// as sent: none lost among those kept, none twice.
func TestBrokerFrozenThenBack(t *testing.T) {
	broker, pid := privateBroker(t)
	r := reporter.NewForTest(nil)
	c := DefaultConfiguration()
	c.Connection.Brokers, c.Connection.Topic = []string{broker}, "spanflow-frozen"
	c.MaxBufferedRecords, c.CreatePartitions = 200, 4
	o, err := New(r, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	defer o.Stop()
	const perMessage = 10
	write := func(messages int) {
		for i := range messages {
			if err := o.Write(records(perMessage, byte(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	settled := func(within time.Duration) {
		t.Helper()
		for deadline := time.Now().Add(within); o.inFlight.Load() > 0; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d records still buffered after %s", o.inFlight.Load(), within)
			}
		}
	}
	count := func(result string) int { return int(promtest.ToFloat64(o.records.WithLabelValues(result))) }

	write(100)
	settled(time.Minute)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := true
	defer func() {
		if frozen {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	// 60 s frozen, 20 messages a second: 1,200 messages for a bound of 200.
	const frozenFor, every, bound = 60 * time.Second, 50 * time.Millisecond, 200 * perMessage
	// The bound is the client's: at most 200 messages buffered. inFlight
	// (the buffered_records gauge) also counts, for a moment, the records
	// the client has refused and not yet reported: it is checked at rest.
	frozenWritten, maxBuffered, slowest := 0, int64(0), time.Duration(0)
	for start, next := time.Now(), time.Now(); time.Since(start) < frozenFor; frozenWritten++ {
		w := time.Now()
		if err := o.Write(records(perMessage, byte(frozenWritten))); err != nil {
			t.Fatal(err)
		}
		slowest = max(slowest, time.Since(w))
		maxBuffered = max(maxBuffered, o.client.BufferedProduceRecords())
		next = next.Add(every)
		time.Sleep(time.Until(next))
	}
	if slowest > time.Second {
		t.Errorf("Write waited for the frozen broker: %s", slowest)
	}
	if maxBuffered > 200 {
		t.Errorf("%d messages buffered, above the bound of 200", maxBuffered)
	}
	time.Sleep(time.Second)
	if got := o.inFlight.Load(); got > bound {
		t.Errorf("%d records buffered, above the bound of %d", got, bound)
	}
	if want := (frozenWritten-200)*perMessage - count("delivery_failed"); count("buffer_full") < want {
		t.Errorf("buffer_full = %d after %d messages into a buffer of 200, want at least %d", count("buffer_full"), frozenWritten, want)
	}
	t.Logf("frozen %s: %d messages written, at most %d messages buffered, buffer_full %d records",
		frozenFor, frozenWritten, maxBuffered, count("buffer_full"))
	syscall.Kill(pid, syscall.SIGCONT)
	frozen = false
	settled(2 * time.Minute)
	before := count("sent")
	write(100) // and it goes on
	settled(time.Minute)
	if got := count("sent") - before; got != 100*perMessage {
		t.Errorf("after the thaw %d of %d records sent", got, 100*perMessage)
	}
	sent, full, failed := count("sent"), count("buffer_full"), count("delivery_failed")
	if written := (200 + frozenWritten) * perMessage; sent+full+failed != written {
		t.Errorf("sent %d + buffer_full %d + delivery_failed %d != %d written", sent, full, failed, written)
	}
	if got := topicFlows(t, broker, o.Topic()); got != sent {
		t.Errorf("the topic holds %d flows, the output counted %d sent", got, sent)
	}
	t.Logf("sent %d, buffer_full %d, delivery_failed %d", sent, full, failed)
}
