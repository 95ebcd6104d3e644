package elasticsearch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestCountersBeyondLong: flows whose bytes, packets, an unsigned
// netflow.* element or an interface counter are past 2^63-1 (an exporter's
// bug, or a hostile one) are indexed on the real cluster, not refused to
// the dead-letter file: the value stays exact in _source, the field is
// listed in _ignored, the sums are those of the sane flows, and the
// documents are counted. Before, Elasticsearch's long refused each whole
// document (document_parsing_exception), so the flow was missing from
// every search.
func TestCountersBeyondLong(t *testing.T) {
	url := testutil.Elasticsearch(t)
	day := time.Date(2001, 4, 17, 0, 0, 0, 0, time.UTC)
	c, index := freshDayIndex(t, url, day)
	recs, tr := genRecords(100, day, 17)
	hostile := make([]flow.Record, 4)
	for i := range hostile {
		hostile[i] = recs[i]
		hostile[i].SrcPort, hostile[i].DstPort = 7, uint16(60000+i) // distinct flows
	}
	hostile[0].Bytes = math.MaxUint64
	hostile[1].Packets = 1 << 63
	hostile[2].Extra = []flow.Extra{{Name: "post_octet_delta_count", Num: math.MaxUint64}}
	hostile[3].Kind, hostile[3].Counters = flow.KindSFlow, &flow.IfCounters{Index: 3, Type: 6, InOctets: math.MaxUint64 - 1}
	o, logs := newTestOutput(t, []string{url}, t.TempDir(), nil)
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	if o.Layout().DataStream {
		o.Stop()
		t.Skip("cluster uses a data stream; this test checks daily indices")
	}
	writeAll(t, o, append(recs, hostile...), 50)
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := count(t, c, index, ""); got != len(recs)+len(hostile) || metric(o, "dead_letter") != 0 {
		t.Errorf("%s holds %d documents, %v dead-lettered; want all %d indexed\n%s", index, got, metric(o, "dead_letter"),
			len(recs)+len(hostile), logs)
	}
	if got := count(t, c, index, `{"query":{"exists":{"field":"_ignored"}}}`); got != len(hostile) {
		t.Errorf("%d documents list a field in _ignored, want the %d with a number past 2^63-1", got, len(hostile))
	}
	var m dto.Metric
	if err := o.metrics.beyondLong.Write(&m); err != nil || m.GetCounter().GetValue() != float64(len(hostile)) {
		t.Errorf("documents_beyond_long_total is %v, want %d", m.GetCounter().GetValue(), len(hostile))
	}
	// The sums are the sane values: the ignored ones are not summed.
	var agg struct {
		Aggregations struct {
			Bytes, Packets struct{ Value float64 }
		}
	}
	request(t, c, http.MethodPost, "/"+index+"/_search",
		`{"size":0,"aggs":{"bytes":{"sum":{"field":"network.bytes"}},"packets":{"sum":{"field":"network.packets"}}}}`, &agg)
	wantBytes := tr.bytesTotal + hostile[1].Bytes + hostile[2].Bytes
	wantPackets := tr.pkts + hostile[0].Packets + hostile[2].Packets
	if uint64(agg.Aggregations.Bytes.Value) != wantBytes || uint64(agg.Aggregations.Packets.Value) != wantPackets {
		t.Errorf("sums: %.0f bytes, %.0f packets; want %d, %d", agg.Aggregations.Bytes.Value, agg.Aggregations.Packets.Value,
			wantBytes, wantPackets)
	}
	// The exact value is in _source.
	var hits struct {
		Hits struct {
			Hits []struct {
				Source json.RawMessage `json:"_source"`
			}
		}
	}
	request(t, c, http.MethodPost, "/"+index+"/_search",
		fmt.Sprintf(`{"query":{"term":{"destination.port":%d}}}`, hostile[0].DstPort), &hits)
	var doc struct {
		Network struct{ Bytes json.Number }
	}
	if len(hits.Hits.Hits) != 1 {
		t.Fatalf("%d documents of the flow with 2^64-1 bytes, want 1", len(hits.Hits.Hits))
	}
	d := json.NewDecoder(bytes.NewReader(hits.Hits.Hits[0].Source))
	d.UseNumber()
	if err := d.Decode(&doc); err != nil || doc.Network.Bytes != "18446744073709551615" {
		t.Errorf("_source network.bytes is %q (%v), want 18446744073709551615", doc.Network.Bytes, err)
	}
}
