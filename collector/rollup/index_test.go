package rollup

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

func esRequest(t *testing.T, method, url string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, b)
		}
	}
	return res.StatusCode
}

// TestIndexRollups indexes the rollups of known traffic into the real
// Elasticsearch and reads back the documents and the mapping the cluster
// made of them.
func TestIndexRollups(t *testing.T) {
	url := testutil.Elasticsearch(t)
	prefix := fmt.Sprintf("test-rollups-%08x-", rand.Uint32())
	icfg := DefaultIndexerConfiguration()
	icfg.Connection.URLs = []string{url}
	icfg.Setup.RefreshInterval = "1s"
	icfg.Prefix = prefix
	e := newTestEngine(t, func(c *Configuration) { c.Delay = 0 })
	x, err := NewIndexer(reporter.NewForTest(nil), icfg, e)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		esRequest(t, http.MethodDelete, url+"/"+prefix+"*", nil)
		esRequest(t, http.MethodDelete, url+"/_index_template/"+strings.TrimSuffix(prefix, "-"), nil)
	})
	e.Tick(at(1_700_000_000))
	// 20 s of 4000 B/s on a line, from one talker, with a handshake.
	for i := range 20 {
		r := lineRecord(at(1_700_000_000.5+float64(i)), 0, 4000)
		r.Proto, r.DstPort, r.TCP.RTTServer = 6, 443, 20*time.Millisecond
		r.Src.VSphere = &flow.VSphere{VMName: "pay-db-1", Project: "payments"}
		e.Write([]flow.Record{r})
		e.Tick(at(1_700_000_001 + float64(i)))
	}
	if err := x.Stop(); err != nil {
		t.Fatal(err)
	}
	esRequest(t, http.MethodPost, url+"/"+prefix+"*/_refresh", nil)

	// Ticks ending at ...010 and ...020 are indexed: 5 rows each.
	var found struct {
		Hits struct {
			Total struct{ Value int } `json:"total"`
			Hits  []struct {
				Source struct {
					Timestamp string             `json:"@timestamp"`
					Scope     string             `json:"scope"`
					Key       string             `json:"key"`
					Labels    map[string]string  `json:"labels"`
					Values    map[string]float64 `json:"values"`
					Top       []struct {
						IP             string  `json:"ip"`
						BytesPerSecond float64 `json:"bytes_per_second"`
					} `json:"top"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	esRequest(t, http.MethodGet, url+"/"+prefix+"*/_search?size=100&sort=@timestamp:asc,scope:asc", &found)
	if n := found.Hits.Total.Value; n != 10 {
		t.Fatalf("%d rollup documents, want 10 (5 rows at 2 ticks)", n)
	}
	line := found.Hits.Hits[0].Source
	for _, h := range found.Hits.Hits {
		if h.Source.Scope == ScopeLine {
			line = h.Source
			break
		}
	}
	if line.Timestamp != "2023-11-14T22:13:30.000Z" || line.Key != "10.0.0.1 eth0" || line.Labels["interface"] != "eth0" {
		t.Errorf("first line document: %+v", line)
	}
	if v := line.Values[BytesPerSecond]; v != 4000 {
		t.Errorf("line bytes_per_second %v, want 4000", v)
	}
	if v := line.Values[RTTp95]; math.Abs(v-20)/20 > 0.01 {
		t.Errorf("line rtt_p95_ms %v, want 20 within 1%%", v)
	}
	if len(line.Top) != 1 || line.Top[0].IP != "192.0.2.1" {
		t.Errorf("line talkers %+v, want 192.0.2.1", line.Top)
	}

	var mapping map[string]struct {
		Mappings struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"mappings"`
	}
	esRequest(t, http.MethodGet, url+"/"+prefix+"*/_mapping", &mapping)
	if len(mapping) != 1 {
		t.Fatalf("%d indices, want 1: %v", len(mapping), mapping)
	}
	for index, m := range mapping {
		if !strings.HasPrefix(index, prefix+"2023.11.14") {
			t.Errorf("index %s, want %s2023.11.14", index, prefix)
		}
		typeOf := func(path ...string) string {
			props := m.Mappings.Properties
			for i, p := range path {
				var field struct {
					Type       string                     `json:"type"`
					Properties map[string]json.RawMessage `json:"properties"`
				}
				json.Unmarshal(props[p], &field)
				if i == len(path)-1 {
					return field.Type
				}
				props = field.Properties
			}
			return ""
		}
		for _, c := range []struct {
			path []string
			want string
		}{
			{[]string{"@timestamp"}, "date"}, {[]string{"scope"}, "keyword"}, {[]string{"key"}, "keyword"},
			{[]string{"labels", "exporter"}, "keyword"}, {[]string{"labels", "project"}, "keyword"},
			{[]string{"values", BytesPerSecond}, "double"}, {[]string{"values", RTTp99}, "double"},
			{[]string{"values", SeriesAgeSeconds}, "double"},
			{[]string{"top", "ip"}, "ip"}, {[]string{"top", "bytes_per_second"}, "double"},
		} {
			if got := typeOf(c.path...); got != c.want {
				t.Errorf("%s mapped as %q, want %q", strings.Join(c.path, "."), got, c.want)
			}
		}
	}
}

// TestAppendDocumentIsJSON checks a document with awkward labels decodes.
func TestAppendDocumentIsJSON(t *testing.T) {
	r := Row{Scope: ScopeVM, Key: "vm \"quoted\"\n", Labels: map[string]string{"vm": "vm \"quoted\"\n"},
		Values: ValuesOf(map[string]float64{BytesPerSecond: 1.5e10}), Top: []Talker{{Addr: netip.MustParseAddr("2001:db8::1"), BytesPerSecond: 3}}}
	b := AppendDocument(nil, &r, "2024-01-01T00:00:00.000Z")
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if doc["key"] != r.Key || doc["values"].(map[string]any)[BytesPerSecond] != 1.5e10 {
		t.Errorf("decoded %v", doc)
	}
}
