package indexer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/indexer"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestConnectWarningNamesTheSetting: the real broker (a plaintext listener
// without SASL) refuses an indexer set for SASL, and one set for TLS; the
// warning says which setting to check. Before, both said to check
// kafka-brokers and that the host reaches them, which it did.
func TestConnectWarningNamesTheSetting(t *testing.T) {
	brokers := testutil.Kafka(t)
	t.Setenv("SPANFLOW_KAFKA_USER", "spanflow")
	t.Setenv("SPANFLOW_KAFKA_PASSWORD", "s3cret")
	for name, c := range map[string]struct {
		set  func(*indexer.Configuration)
		want string
	}{
		"sasl": {func(c *indexer.Configuration) { c.Connection.SASL = "scram-sha-512" }, "check kafka-sasl"},
		"tls":  {func(c *indexer.Configuration) { c.Connection.TLS = true }, "check kafka-tls"},
	} {
		t.Run(name, func(t *testing.T) {
			var logs testutil.SyncBuffer
			cfg := indexerConfig(brokers, "flows-hint", "g-hint")
			c.set(&cfg)
			ix, err := indexer.New(reporter.NewForTest(&logs), cfg, indexer.Dependencies{Sinks: []indexer.NamedSink{{Name: "none",
				Sink: indexer.SinkFunc(func(context.Context, []flow.Record) error { return nil })}}})
			if err != nil {
				t.Fatal(err)
			}
			if err := ix.Start(); err != nil {
				t.Fatal(err)
			}
			defer ix.Stop()
			for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs.String(), "cannot connect to the Kafka brokers"); time.Sleep(50 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("no warning within 30 s:\n%s", logs.String())
				}
			}
			if !strings.Contains(logs.String(), c.want) {
				t.Errorf("the warning does not say %q:\n%s", c.want, logs.String())
			}
		})
	}
}
