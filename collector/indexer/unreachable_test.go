package indexer_test

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spanflow/spanflow/collector/indexer"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

// syncBuffer is a log both the client's goroutines and the test use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestUnreachableBrokersWarn: an indexer whose brokers do not answer says
// so (which brokers, the error, what to check) instead of looking idle,
// and counts it. No broker needed: a port nothing listens on.
func TestUnreachableBrokersWarn(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var logs syncBuffer
	r := reporter.NewForTest(&logs)
	cfg := indexerConfig(addr, "flows", "g")
	ix, err := indexer.New(r, cfg, indexer.Dependencies{Sinks: []indexer.NamedSink{{Name: "none",
		Sink: indexer.SinkFunc(func(context.Context, []flow.Record) error { return nil })}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Start(); err != nil {
		t.Fatal(err)
	}
	defer ix.Stop()
	deadline := time.Now().Add(30 * time.Second) // a generous bound, not a timing assertion
	for !strings.Contains(logs.String(), "cannot connect to the Kafka brokers") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "cannot connect to the Kafka brokers") {
			line = l
			break
		}
	}
	if line == "" || !strings.Contains(line, "level=WARN") || !strings.Contains(line, addr) || !strings.Contains(line, "check kafka-brokers") || !strings.Contains(line, "err=") {
		t.Fatalf("no warning naming the brokers, the error and what to check; logs:\n%s", logs.String())
	}
	if n, err := testutil.GatherAndCount(r.Registry, "spanflow_indexer_kafka_errors_total"); err != nil || n != 2 {
		t.Errorf("metric: %d series, %v", n, err)
	}
	mfs, _ := r.Registry.Gather()
	for _, mf := range mfs {
		if strings.HasSuffix(mf.GetName(), "indexer_kafka_errors_total") {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == "connect" && m.GetCounter().GetValue() < 1 {
					t.Errorf("connect failures not counted")
				}
			}
		}
	}
	t.Logf("%s", line)
}
