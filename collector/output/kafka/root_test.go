package kafka

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	tu "github.com/spanflow/spanflow/internal/testutil"
)

// records makes n records of exporter e.
func records(n int, e byte) []flow.Record {
	recs := make([]flow.Record, n)
	for i := range recs {
		a := netip.AddrFrom4([4]byte{192, 0, 2, e})
		recs[i] = flow.Record{Kind: flow.KindIPFIX, ExporterAddr: a, ObserverIP: a, SrcPort: uint16(i), Bytes: 1}
	}
	return recs
}

// With the brokers away, records wait in the bounded buffer; what does not
// fit is dropped and counted at once (Write never waits), and what is still
// buffered when the drain timeout ends the stop is counted too: every
// record is accounted for.
func TestBufferBoundWithBrokersAway(t *testing.T) {
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	away := l.Addr().String()
	l.Close()

	var log tu.SyncBuffer
	r := reporter.NewForTest(&log)
	c := DefaultConfiguration()
	c.Connection.Brokers, c.Connection.DialTimeout = []string{away}, time.Second
	c.MaxBufferedRecords, c.DrainTimeout, c.CreatePartitions = 50, time.Second, 0
	o, err := New(r, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	const messages, perMessage = 200, 10
	start := time.Now()
	for i := range messages {
		if err := o.Write(records(perMessage, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Write waited for the brokers: %s for %d messages", d, messages)
	}
	// Promises are delivered by franz-go's promise goroutine, soon after.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && o.inFlight.Load() > 50*perMessage; {
		time.Sleep(10 * time.Millisecond)
	}
	if got := testutil.ToFloat64(o.records.WithLabelValues("buffer_full")); got != (messages-50)*perMessage {
		t.Errorf("buffer_full = %v, want %d", got, (messages-50)*perMessage)
	}
	// The warnings add up to the loss, not to the lines logged (they said
	// records=10, the first message's, and suppressed=N lines).
	for deadline := time.Now().Add(30 * time.Second); loggedRecords(log.String(), "buffer full") < (messages-50)*perMessage && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if got := loggedRecords(log.String(), "buffer full"); got != (messages-50)*perMessage {
		t.Errorf("the buffer-full warnings add up to %d records, want %d:\n%s", got, (messages-50)*perMessage, log.String())
	}
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(o.records.WithLabelValues("stopped")); got != 50*perMessage {
		t.Errorf("stopped = %v, want %d (the buffered ones)", got, 50*perMessage)
	}
	if got := o.inFlight.Load(); got != 0 {
		t.Errorf("%d records unaccounted for", got)
	}
	if err := o.Write(records(1, 1)); err == nil {
		t.Error("Write after Stop succeeded")
	}
	tu.LintMetrics(t, r.Registry, "spanflow_kafka_output_")
}

// loggedRecords adds up the records= of the log lines holding msg.
func loggedRecords(log, msg string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, msg) {
			continue
		}
		if _, v, ok := strings.Cut(line, " records="); ok {
			k, _ := strconv.Atoi(strings.Fields(v)[0])
			n += k
		}
	}
	return n
}

func TestConfigurationErrorsNameTheFlag(t *testing.T) {
	for name, mod := range map[string]func(*Configuration){
		"kafka-brokers":               func(c *Configuration) { c.Connection.Brokers = []string{"nohost"} },
		"kafka-compression":           func(c *Configuration) { c.Compression = "brotli" },
		"kafka-max-buffered-messages": func(c *Configuration) { c.MaxBufferedRecords = 0 },
		"kafka-sasl":                  func(c *Configuration) { c.Connection.SASL = "kerberos" },
		"kafka-topic":                 func(c *Configuration) { c.Connection.Topic = "a/b" },
	} {
		c := DefaultConfiguration()
		mod(&c)
		if err := c.Validate(); err == nil || !containsPrefix(err.Error(), name+": ") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func containsPrefix(s, p string) bool {
	for len(s) >= len(p) {
		if s[:len(p)] == p {
			return true
		}
		s = s[1:]
	}
	return false
}
