package alert

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/output/elasticsearch/setup"
	"github.com/spanflow/spanflow/internal/esconn"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestIndex: a firing and a resolved alert land in spanflow-alerts-* under
// their own template, searchable by rule and status.
func TestIndex(t *testing.T) {
	url := testutil.Elasticsearch(t)
	r := reporter.NewForTest(nil)
	conn := esconn.DefaultConfiguration()
	conn.URLs = []string{url}
	st := setup.DefaultConfiguration()
	x, err := NewIndex(r, conn, st, 10)
	if err != nil {
		t.Fatal(err)
	}
	// Not under spanflow-alerts-*: the real template would match too.
	x.prefix = "spanflow-test-alerts-" + strings.ToLower(t.Name()) + "-"
	x.bind(newMetrics(r))
	x.Start()
	defer x.Stop()
	defer func() {
		for _, path := range []string{"/" + x.prefix + "*", "/_index_template/" + strings.TrimSuffix(x.prefix, "-")} {
			req, _ := http.NewRequest(http.MethodDelete, url+path, nil)
			http.DefaultClient.Do(req)
		}
	}()
	a := testAlert("line_saturated", "esx-a03 vmnic0", time.Now().Add(-time.Minute))
	a.DiscoverURL = "http://kibana/app/discover#/"
	x.Send(a)
	a.EndsAt = time.Now()
	x.Send(a)
	var hits struct {
		Hits struct {
			Hits []struct {
				Source map[string]any `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	waitFor(t, "two alert documents", 30*time.Second, func() bool {
		resp, err := http.Get(url + "/" + x.prefix + "*/_search?q=rule:line_saturated&sort=@timestamp:asc")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		json.NewDecoder(resp.Body).Decode(&hits)
		return len(hits.Hits.Hits) == 2
	})
	if s := hits.Hits.Hits[0].Source; s["status"] != "firing" || s["key"] != "esx-a03 vmnic0" || s["labels"].(map[string]any)["line"] != "esx-a03 vmnic0" {
		t.Errorf("first document %v", s)
	}
	if s := hits.Hits.Hits[1].Source; s["status"] != "resolved" || s["ends_at"] == nil {
		t.Errorf("second document %v", s)
	}
	resp, err := http.Get(url + "/" + x.prefix + "*/_mapping")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var mapping map[string]struct {
		Mappings struct {
			Properties map[string]struct {
				Type string `json:"type"`
			} `json:"properties"`
		} `json:"mappings"`
	}
	json.NewDecoder(resp.Body).Decode(&mapping)
	for _, m := range mapping {
		if m.Mappings.Properties["starts_at"].Type != "date" || m.Mappings.Properties["rule"].Type != "keyword" {
			t.Errorf("mapping %+v: the template was not applied", m.Mappings.Properties)
		}
	}
}
