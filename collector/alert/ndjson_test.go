package alert

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spanflow/spanflow/internal/flow"
)

// TestReadFlows: documents written by the flow encoder (the NDJSON output's)
// read back into the fields the rollups and detectors use (the protocol,
// sampling and biflowDirection too: the rollups' server port reads them).
func TestReadFlows(t *testing.T) {
	in := flow.Record{Kind: flow.KindIPFIX, ObserverIP: netip.MustParseAddr("10.1.0.3"),
		Received: t0.Add(time.Second), Start: t0.Add(-4 * time.Second), End: t0,
		SrcAddr: netip.MustParseAddr("10.2.0.10"), DstAddr: netip.MustParseAddr("2001:db8::1"),
		SrcPort: 40000, DstPort: 443, Proto: 6, TCPFlags: 0x1b, Bytes: 1500, Packets: 3,
		InIf: 3, OutIf: 4, InIfName: "vmnic0", OutIfName: "vmnic1",
		TCP:      flow.TCPPerf{RTTClient: 250 * time.Microsecond, Retransmissions: 2, ZeroWindows: 1},
		Src:      flow.Endpoint{VSphere: &flow.VSphere{VMName: "pay-db-1", Project: "payments"}},
		Dst:      flow.Endpoint{Network: &flow.NetworkInfo{Name: "internet", Project: "edge"}},
		Locality: "external", Direction: "north-south",
		SamplingRate: 10, Extra: []flow.Extra{{Name: "biflow_direction", Num: 2}}}
	var enc flow.Encoder
	doc := append(enc.AppendDocument(nil, &in), '\n')
	var got []flow.Record
	n, err := ReadFlows(bytes.NewReader(doc), 10, func(r []flow.Record) error { got = append(got, r...); return nil })
	if err != nil || n != 1 {
		t.Fatalf("%d records, %v", n, err)
	}
	want := in
	if d := cmp.Diff(got[0], want, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("(-got, +want)\n%s", d)
	}
	if _, err := ReadFlows(bytes.NewReader([]byte("{}\nnot json\n")), 10, func([]flow.Record) error { return nil }); err == nil || err.Error()[:7] != "line 2:" {
		t.Errorf("bad line: %v", err)
	}
}
