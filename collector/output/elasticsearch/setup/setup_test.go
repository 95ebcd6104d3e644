package setup

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/esconn"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/testutil"
)

// lookup walks a mapping's properties along a dotted name.
func lookup(mapping map[string]any, name string) map[string]any {
	props := mapping["properties"].(map[string]any)
	segs := strings.Split(name, ".")
	for i, seg := range segs {
		v, ok := props[seg].(map[string]any)
		if !ok {
			return nil
		}
		if i == len(segs)-1 {
			return v
		}
		props, _ = v["properties"].(map[string]any)
	}
	return nil
}

// TestMappingCoversFieldTable checks every field of internal/flow's table has
// an explicit mapping of its type, and that nothing can become text.
func TestMappingCoversFieldTable(t *testing.T) {
	m, err := Mapping()
	if err != nil {
		t.Fatal(err)
	}
	if m["dynamic"] != false {
		t.Errorf("root dynamic = %v, want false", m["dynamic"])
	}
	for _, f := range flow.Fields() {
		if f.Type == "dynamic" {
			continue
		}
		got := lookup(m, f.Name)
		if got == nil {
			t.Errorf("%s: no mapping", f.Name)
			continue
		}
		if got["type"] != f.Type {
			t.Errorf("%s: mapped as %v, the field table says %s", f.Name, got["type"], f.Type)
		}
	}
	if nf := lookup(m, "netflow"); nf == nil || nf["dynamic"] != true {
		t.Errorf("netflow object = %v, want dynamic true for its elements without an ECS home", nf)
	}
	b, _ := json.Marshal(m)
	if strings.Contains(string(b), `"text"`) {
		t.Errorf("mapping has a text field: %s", b)
	}
	want := `[{"netflow_numbers":{"mapping":{"ignore_malformed":true,"type":"long"},"match_mapping_type":"long","path_match":"netflow.*"}},` +
		`{"netflow_strings":{"mapping":{"ignore_above":1024,"type":"keyword"},"match_mapping_type":"string","path_match":"netflow.*"}},` +
		`{"spanflow_counters_numbers":{"mapping":{"ignore_malformed":true,"type":"long"},"match_mapping_type":"long","path_match":"spanflow.counters.*"}},` +
		`{"spanflow_counters_strings":{"mapping":{"ignore_above":1024,"type":"keyword"},"match_mapping_type":"string","path_match":"spanflow.counters.*"}}]`
	got, _ := json.Marshal(m["dynamic_templates"])
	if string(got) != want {
		t.Errorf("dynamic templates:\n got %s\nwant %s", got, want)
	}
}

// TestTemplateBodies pins the request bodies for both layouts, including the
// ILM policy and data stream ones the test cluster cannot accept.
func TestTemplateBodies(t *testing.T) {
	c := DefaultConfiguration()
	c.Shards, c.Replicas, c.RetentionDays = 2, 1, 14
	daily, err := IndexTemplate(c, false)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := IndexTemplate(c, true)
	if err != nil {
		t.Fatal(err)
	}
	settings := func(tmpl map[string]any) string {
		b, _ := json.Marshal(tmpl["template"].(map[string]any)["settings"])
		return string(b)
	}
	if got, want := settings(daily), `{"index":{"codec":"best_compression","mapping":{"total_fields":{"ignore_dynamic_beyond_limit":true,"limit":2000}},"number_of_replicas":1,"number_of_shards":2,"refresh_interval":"30s"}}`; got != want {
		t.Errorf("daily settings:\n got %s\nwant %s", got, want)
	}
	if got, want := settings(ds), `{"index":{"codec":"best_compression","lifecycle":{"name":"spanflow-flows"},"mapping":{"total_fields":{"ignore_dynamic_beyond_limit":true,"limit":2000}},"number_of_replicas":1,"number_of_shards":2,"refresh_interval":"30s"}}`; got != want {
		t.Errorf("data stream settings:\n got %s\nwant %s", got, want)
	}
	if _, ok := daily["data_stream"]; ok {
		t.Error("daily template declares a data stream")
	}
	if _, ok := ds["data_stream"]; !ok {
		t.Error("data stream template does not declare data_stream")
	}
	if got := daily["index_patterns"].([]string); len(got) != 1 || got[0] != "spanflow-flows-*" {
		t.Errorf("index patterns %v", got)
	}
	policy, _ := json.Marshal(ILMPolicy(c))
	if want := `{"policy":{"_meta":{"managed_by":"spanflow"},"phases":{"delete":{"actions":{"delete":{}},"min_age":"14d"},` +
		`"hot":{"actions":{"rollover":{"max_age":"1d","max_primary_shard_size":"50gb"}},"min_age":"0ms"}}}}`; string(policy) != want {
		t.Errorf("ILM policy:\n got %s\nwant %s", policy, want)
	}
}

func TestChoose(t *testing.T) {
	both := Capabilities{ILM: true, DataStreams: true}
	for _, tc := range []struct {
		lifecycle string
		caps      Capabilities
		want      Layout
		err       bool
	}{
		{lifecycle: LifecycleAuto, caps: both, want: Layout{DataStream: true}},
		{lifecycle: LifecycleAuto, caps: Capabilities{DataStreams: true}, want: Layout{}},
		{lifecycle: LifecycleAuto, caps: Capabilities{}, want: Layout{}},
		{lifecycle: LifecycleDaily, caps: both, want: Layout{}},
		{lifecycle: LifecycleDataStream, caps: both, want: Layout{DataStream: true}},
		{lifecycle: LifecycleDataStream, caps: Capabilities{ILM: true}, err: true},
	} {
		c := DefaultConfiguration()
		c.Lifecycle = tc.lifecycle
		got, err := Choose(c, tc.caps)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("Choose(%s, %+v) = %+v, %v; want %+v, error %t", tc.lifecycle, tc.caps, got, err, tc.want, tc.err)
		}
	}
	l := Layout{}
	if got := l.Index(time.Date(2026, 11, 25, 23, 59, 59, 0, time.FixedZone("x", -3600))); got != "spanflow-flows-2026.11.26" {
		t.Errorf("daily index of a time 1 h west of UTC = %s, want the UTC day", got)
	}
	if got := (Layout{DataStream: true}).Action(); got != "create" {
		t.Errorf("data stream action %s", got)
	}
}

func TestExpiredAndParseAge(t *testing.T) {
	d, err := ParseAge("30d")
	if err != nil || d != 30*24*time.Hour {
		t.Fatalf("ParseAge(30d) = %v, %v", d, err)
	}
	for _, bad := range []string{"", "d", "-1d", "30x", "thirty"} {
		if _, err := ParseAge(bad); err == nil {
			t.Errorf("ParseAge(%q) accepted", bad)
		}
	}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	day := func(s string) time.Time { t, _ := time.Parse(DailyLayout, s); return t }
	got := Expired(map[string]time.Time{
		"spanflow-flows-2026.10.25": day("2026.10.25"), // ended 2026-10-26 00:00, before the cutoff 10-26 12:00
		"spanflow-flows-2026.10.26": day("2026.10.26"), // still holds flows newer than the cutoff
		"spanflow-flows-2026.11.25": day("2026.11.25"),
		"spanflow-flows-2025.01.01": day("2025.01.01"),
	}, 30*24*time.Hour, now)
	if fmt.Sprint(got) != "[spanflow-flows-2025.01.01 spanflow-flows-2026.10.25]" {
		t.Errorf("expired = %v", got)
	}
}

// TestInstallOnRealCluster installs the template on the test cluster (which
// has neither ILM nor data streams, so the daily layout is chosen), indexes
// a document into a daily index it governs, reads the mapping back, and
// prunes.
func TestInstallOnRealCluster(t *testing.T) {
	url := testutil.Elasticsearch(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client, err := esconn.New(esconn.Configuration{URLs: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	caps, err := Detect(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("capabilities: %+v", caps)
	layout, err := Install(ctx, client, DefaultConfiguration())
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	if caps.ILM && caps.DataStreams {
		if !layout.DataStream {
			t.Fatalf("cluster has ILM and data streams but layout is %s", layout)
		}
		t.Skip("cluster has ILM and data streams: the daily fallback is not what this cluster uses")
	}
	if layout.DataStream {
		t.Fatalf("layout %s on a cluster without ILM/data streams", layout)
	}
	c := DefaultConfiguration()
	c.Lifecycle = LifecycleDataStream
	if _, err := Install(ctx, client, c); err == nil || !strings.Contains(err.Error(), "needs ILM") {
		t.Errorf("data-stream lifecycle on this cluster: error %v, want one saying it needs ILM", err)
	}

	// Years in the past so Prune cannot touch anyone else's indices.
	old := []string{"spanflow-flows-2001.01.01", "spanflow-flows-2001.01.02", "spanflow-flows-2001.02.01"}
	for _, name := range old {
		doc := `{"@timestamp":"2001-01-01T10:00:00.000Z","source":{"ip":"10.0.0.1"},"network":{"bytes":3},"netflow":{"some_counter":5,"some_name":"x"}}`
		status, body, err := do(ctx, client, http.MethodPut, "/"+name+"/_doc/1?refresh=true", json.RawMessage(doc))
		if err != nil || status >= 300 {
			t.Fatalf("index into %s: %d %s %v", name, status, body, err)
		}
	}
	t.Cleanup(func() {
		for _, name := range old {
			do(context.Background(), client, http.MethodDelete, "/"+name, nil)
		}
	})
	status, body, err := do(ctx, client, http.MethodGet, "/"+old[0]+"/_mapping", nil)
	if err != nil || status != 200 {
		t.Fatalf("get mapping: %d %s %v", status, body, err)
	}
	var got map[string]struct {
		Mappings map[string]any `json:"mappings"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	m := got[old[0]].Mappings
	for name, typ := range map[string]string{"source.ip": "ip", "@timestamp": "date", "network.bytes": "long",
		"network.community_id": "keyword", "netflow.some_counter": "long", "netflow.some_name": "keyword"} {
		if p := lookup(m, name); p == nil || p["type"] != typ {
			t.Errorf("%s mapped as %v on the cluster, want %s", name, p, typ)
		}
	}
	status, body, err = do(ctx, client, http.MethodGet, "/"+old[0]+"/_settings?flat_settings=true", nil)
	// (Not the refresh interval: tests of other packages install the
	// template with their own at the same time; the body test pins it.)
	if err != nil || status != 200 || !strings.Contains(string(body), `"index.codec":"best_compression"`) ||
		!strings.Contains(string(body), `"index.mapping.total_fields.ignore_dynamic_beyond_limit":"true"`) {
		t.Errorf("settings of %s: %d %s %v", old[0], status, body, err)
	}

	// More netflow.* elements than the field limit: the flow is still
	// indexed (the extra elements stay in _source only).
	var many strings.Builder
	many.WriteString(`{"@timestamp":"2001-02-01T10:00:00.000Z","netflow":{`)
	for i := range 2100 {
		if i > 0 {
			many.WriteByte(',')
		}
		fmt.Fprintf(&many, `"element_%d":%d`, i, i)
	}
	many.WriteString("}}")
	status, body, err = do(ctx, client, http.MethodPut, "/"+old[2]+"/_doc/many", json.RawMessage(many.String()))
	if err != nil || status >= 300 {
		t.Errorf("a flow with 2100 netflow.* elements was refused: %d %.300s %v", status, body, err)
	}

	now := time.Date(2001, 2, 2, 12, 0, 0, 0, time.UTC)
	dry, err := Prune(ctx, client, 30*24*time.Hour, now, true)
	if err != nil || fmt.Sprint(dry) != "[spanflow-flows-2001.01.01 spanflow-flows-2001.01.02]" {
		t.Fatalf("prune dry run = %v, %v", dry, err)
	}
	deleted, err := Prune(ctx, client, 30*24*time.Hour, now, false)
	if err != nil || fmt.Sprint(deleted) != fmt.Sprint(dry) {
		t.Fatalf("prune = %v, %v; want %v", deleted, err, dry)
	}
	left, err := DailyIndices(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := left["spanflow-flows-2001.02.01"]; !ok {
		t.Error("prune deleted spanflow-flows-2001.02.01, which is newer than 30 days")
	}
	for _, name := range dry {
		if _, ok := left[name]; ok {
			t.Errorf("%s still there after prune", name)
		}
	}

	// The rollups' and alerts' daily indices, pruned with the same age
	// when their prefixes are given; an index that only starts like them is
	// left alone.
	others := []string{"spanflow-rollups-2001.01.01", "spanflow-alerts-2001.01.02", "spanflow-rollups-2001.02.01", "spanflow-rollups-2001.01.01-mine"}
	for _, name := range others {
		status, body, err := do(ctx, client, http.MethodPut, "/"+name, json.RawMessage(`{"settings":{"number_of_shards":1,"number_of_replicas":0}}`))
		if err != nil || status >= 300 {
			t.Fatalf("create %s: %d %s %v", name, status, body, err)
		}
	}
	t.Cleanup(func() {
		for _, name := range others {
			do(context.Background(), client, http.MethodDelete, "/"+name, nil)
		}
	})
	deleted, err = Prune(ctx, client, 30*24*time.Hour, now, false, DailyPrefix, "spanflow-rollups-", "spanflow-alerts-")
	if err != nil || fmt.Sprint(deleted) != "[spanflow-alerts-2001.01.02 spanflow-rollups-2001.01.01]" {
		t.Fatalf("prune of rollups and alerts = %v, %v", deleted, err)
	}
	left, err = DailyIndices(ctx, client, "spanflow-rollups-", "spanflow-alerts-")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := left["spanflow-rollups-2001.02.01"]; !ok {
		t.Errorf("prune deleted spanflow-rollups-2001.02.01, which is newer than 30 days (left: %v)", left)
	}
	for _, name := range deleted {
		if _, ok := left[name]; ok {
			t.Errorf("%s still there after prune", name)
		}
	}
	status, _, err = do(ctx, client, http.MethodHead, "/spanflow-rollups-2001.01.01-mine", nil)
	if err != nil || status != http.StatusOK {
		t.Errorf("prune deleted spanflow-rollups-2001.01.01-mine, not a daily index: %d %v", status, err)
	}
}

// TestRetarget: documents spooled for daily indices before the cluster's
// layout was known go to the data stream when it has one, and stay where
// they were named otherwise.
func TestRetarget(t *testing.T) {
	for _, tc := range []struct {
		layout      Layout
		index, want string
	}{
		{Layout{DataStream: true}, "spanflow-flows-2026.01.02", DataStream},
		{Layout{DataStream: true}, DataStream, DataStream},
		{Layout{}, "spanflow-flows-2026.01.02", "spanflow-flows-2026.01.02"},
		{Layout{}, DataStream, DataStream},
	} {
		if got := tc.layout.Retarget(tc.index); got != tc.want {
			t.Errorf("%v.Retarget(%s) = %s, want %s", tc.layout, tc.index, got, tc.want)
		}
	}
}
