package kafka

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestLargeWriteSplit: one Write of 60,000 records from one exporter (a
// datagram of tiny IPFIX records decodes to that many) reaches the topic
// whole: one message for them all would be past the brokers' message size
// (1 MiB by default) and refused.
func TestLargeWriteSplit(t *testing.T) {
	broker := testutil.Kafka(t)
	r := reporter.NewForTest(nil)
	c := DefaultConfiguration()
	c.Connection.Brokers = []string{broker}
	c.Connection.Topic = fmt.Sprintf("spanflow-large-%d", rand.Uint32())
	c.CreatePartitions = 1
	o, err := New(r, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	exp := netip.MustParseAddr("192.0.2.7")
	now := time.Now().UTC()
	vm := strings.Repeat("payments-frontend-", 3)
	recs := make([]flow.Record, 60000)
	for i := range recs {
		recs[i] = flow.Record{Kind: flow.KindIPFIX, ObserverIP: exp, ExporterAddr: exp, Received: now, End: now,
			SrcAddr: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), DstAddr: netip.MustParseAddr("10.255.0.1"),
			Proto: 17, SrcPort: uint16(i), DstPort: 53, Bytes: 100, Packets: 1,
			Src: flow.Endpoint{VSphere: &flow.VSphere{VMName: vm + fmt.Sprint(i%10), Project: "payments"}}}
	}
	if err := o.Write(recs); err != nil {
		t.Fatal(err)
	}
	// And records of 2 KB each (long names): 1,024 of them would pass the
	// message size too.
	long := strings.Repeat("x", 2000)
	big := make([]flow.Record, 3000)
	for i := range big {
		big[i] = recs[i]
		big[i].Src = flow.Endpoint{VSphere: &flow.VSphere{VMName: long + fmt.Sprint(i), Project: "payments"}}
	}
	if err := o.Write(big); err != nil {
		t.Fatal(err)
	}
	recs = append(recs, big...)
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	if failed := promtest.ToFloat64(o.records.WithLabelValues("delivery_failed")); failed != 0 {
		t.Errorf("%v records refused by the broker", failed)
	}
	if sent := promtest.ToFloat64(o.sent); sent != float64(len(recs)) {
		t.Errorf("%v records sent, want %d", sent, len(recs))
	}
	if got := topicFlows(t, broker, o.Topic()); got != len(recs) {
		t.Errorf("the topic holds %d records, want %d", got, len(recs))
	}
}
