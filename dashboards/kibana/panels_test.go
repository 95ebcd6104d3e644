package kibana

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/spanflow/spanflow/dashboards/internal/groundtruth"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/testutil"
)

// This test runs every Lens panel of the saved objects file against the real
// Elasticsearch: it translates the panel's layer into the aggregation Lens
// sends (the panel's KQL as filters, its bucket columns nested in column
// order — date histogram, top values ranked by their metric, filters — and
// its metrics), runs it on an index of generated records, and compares every
// bucket and metric with the same panel evaluated in Go over the records
// themselves. Two things differ from Kibana on purpose: the date histogram
// uses a fixed 1h interval instead of "auto", and per-second normalisation
// (timeScale) is left out on both sides, since it only divides each bucket by
// its length.

// kqlClause is field : "value" or field : *.
var kqlClause = regexp.MustCompile(`^\s*([A-Za-z@][A-Za-z0-9_.@]*)\s*:\s*(\*|"([^"]*)")\s*$`)

type clause struct{ field, value string } // value "" means exists

// parseKQL parses the KQL the panels use: clauses joined by "and".
func parseKQL(t *testing.T, q string) []clause {
	t.Helper()
	var out []clause
	if strings.TrimSpace(q) == "" {
		return nil
	}
	for _, part := range strings.Split(q, " and ") {
		m := kqlClause.FindStringSubmatch(part)
		if m == nil {
			t.Fatalf("KQL %q: clause %q is not field : \"value\" or field : *", q, part)
		}
		out = append(out, clause{field: m[1], value: m[3]})
	}
	return out
}

func esFilter(cs []clause) []any {
	var fs []any
	for _, c := range cs {
		if c.value == "" {
			fs = append(fs, map[string]any{"exists": map[string]any{"field": c.field}})
		} else {
			fs = append(fs, map[string]any{"term": map[string]any{c.field: c.value}})
		}
	}
	return fs
}

func matches(r *flow.Record, cs []clause) bool {
	for _, c := range cs {
		v, ok := groundtruth.Value(r, c.field)
		if !ok || (c.value != "" && v != c.value) {
			return false
		}
	}
	return true
}

// metric is a value a panel shows or ranks by.
type metric struct {
	op         string
	field      string
	percentile float64
	multiplier float64 // formula: sum(field) * multiplier
}

// plan is a panel's layer read from the saved object.
type plan struct {
	buckets []bucket
	metrics map[string]metric // visible metric columns by id
}

type bucket struct {
	id      string
	op      string
	fields  []string
	size    int
	rank    *metric // nil: alphabetical
	filters []struct {
		label   string
		clauses []clause
	}
}

func columnMetric(t *testing.T, layer lensLayer, c lensColumn) metric {
	t.Helper()
	switch c.OperationType {
	case "count":
		return metric{op: "count"}
	case "sum", "max", "average", "unique_count":
		return metric{op: c.OperationType, field: c.SourceField}
	case "percentile":
		return metric{op: "percentile", field: c.SourceField, percentile: c.Params.Percentile}
	case "formula":
		// formula -> math (multiply helper, constant) -> sum helper
		math := layer.Columns[c.References[0]]
		ast := math.Params.TinymathAst
		if ast == nil || ast.Name != "multiply" || len(ast.Args) != 2 {
			t.Fatalf("formula %q: only sum(field) * constant is translated", c.Params.Formula)
		}
		sum := layer.Columns[ast.Args[0].(string)]
		if sum.OperationType != "sum" {
			t.Fatalf("formula %q: helper is %s", c.Params.Formula, sum.OperationType)
		}
		return metric{op: "formula", field: sum.SourceField, multiplier: ast.Args[1].(float64)}
	}
	t.Fatalf("no translation for operation %s", c.OperationType)
	return metric{}
}

func readPlan(t *testing.T, a lensAttrs) plan {
	t.Helper()
	layer := a.State.DatasourceStates.FormBased.Layers[layerID]
	helpers := map[string]bool{}
	for _, c := range layer.Columns {
		for _, r := range c.References {
			helpers[r] = true
			for _, r2 := range layer.Columns[r].References {
				helpers[r2] = true
			}
		}
	}
	p := plan{metrics: map[string]metric{}}
	for _, id := range layer.ColumnOrder {
		c := layer.Columns[id]
		if helpers[id] {
			continue
		}
		if !c.IsBucketed {
			p.metrics[id] = columnMetric(t, layer, c)
			continue
		}
		b := bucket{id: id, op: c.OperationType}
		switch c.OperationType {
		case "date_histogram":
			b.fields = []string{c.SourceField}
		case "terms":
			b.fields = append([]string{c.SourceField}, c.Params.SecondaryFields...)
			b.size = c.Params.Size
			switch c.Params.OrderBy.Type {
			case "column":
				m := columnMetric(t, layer, layer.Columns[c.Params.OrderBy.ColumnID])
				b.rank = &m
			case "custom":
				m := columnMetric(t, layer, *c.Params.OrderAgg)
				b.rank = &m
			case "alphabetical":
			default:
				t.Fatalf("terms ordered by %q", c.Params.OrderBy.Type)
			}
		case "filters":
			for _, f := range c.Params.Filters {
				b.filters = append(b.filters, struct {
					label   string
					clauses []clause
				}{f.Label, parseKQL(t, f.Input.Query)})
			}
		default:
			t.Fatalf("bucket operation %s", c.OperationType)
		}
		p.buckets = append(p.buckets, b)
	}
	return p
}

// ---- Elasticsearch side ----

func metricAgg(m metric) map[string]any {
	switch m.op {
	case "sum", "formula":
		return map[string]any{"sum": map[string]any{"field": m.field}}
	case "max":
		return map[string]any{"max": map[string]any{"field": m.field}}
	case "average":
		return map[string]any{"avg": map[string]any{"field": m.field}}
	case "unique_count":
		return map[string]any{"cardinality": map[string]any{"field": m.field}}
	case "percentile":
		return map[string]any{"percentiles": map[string]any{"field": m.field, "percents": []float64{m.percentile}}}
	}
	return nil // count: doc_count
}

func aggsFor(p plan, level int) map[string]any {
	aggs := map[string]any{}
	if level == len(p.buckets) {
		for id, m := range p.metrics {
			if a := metricAgg(m); a != nil {
				aggs[id] = a
			}
		}
		return aggs
	}
	b := p.buckets[level]
	sub := aggsFor(p, level+1)
	var agg map[string]any
	switch b.op {
	case "date_histogram":
		agg = map[string]any{"date_histogram": map[string]any{"field": b.fields[0], "fixed_interval": "1h", "min_doc_count": 1}}
	case "filters":
		fs := map[string]any{}
		for _, f := range b.filters {
			fs[f.label] = map[string]any{"bool": map[string]any{"filter": esFilter(f.clauses)}}
		}
		agg = map[string]any{"filters": map[string]any{"filters": fs}}
	case "terms":
		order := map[string]any{"_key": "asc"}
		if b.rank != nil {
			if a := metricAgg(*b.rank); a != nil {
				sub["rank"] = a
				order = map[string]any{"rank": "desc"}
			} else {
				order = map[string]any{"_count": "desc"}
			}
		}
		if len(b.fields) == 1 {
			agg = map[string]any{"terms": map[string]any{"field": b.fields[0], "size": b.size, "order": order}}
		} else {
			var terms []any
			for _, f := range b.fields {
				terms = append(terms, map[string]any{"field": f})
			}
			agg = map[string]any{"multi_terms": map[string]any{"terms": terms, "size": b.size, "order": order}}
		}
	}
	agg["aggs"] = sub
	return map[string]any{b.id: agg}
}

// row is one leaf bucket: the keys along the way and the metric values.
type row struct {
	keys    string
	metrics map[string]float64
}

func esKey(raw json.RawMessage) string {
	var n json.Number
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return string(raw)
	}
	switch x := v.(type) {
	case json.Number:
		n = x
		return n.String()
	case string:
		return x
	case []any:
		var parts []string
		for _, e := range x {
			b, _ := json.Marshal(e)
			parts = append(parts, esKey(b))
		}
		return strings.Join(parts, "|")
	}
	return string(raw)
}

func esRows(p plan, level int, prefix string, agg map[string]json.RawMessage, out *[]row) {
	if level == len(p.buckets) {
		r := row{keys: prefix, metrics: map[string]float64{}}
		var docCount float64
		json.Unmarshal(agg["doc_count"], &docCount)
		for id, m := range p.metrics {
			var v struct {
				Value  *float64           `json:"value"`
				Values map[string]float64 `json:"values"`
			}
			switch m.op {
			case "count":
				r.metrics[id] = docCount
				continue
			case "percentile":
				json.Unmarshal(agg[id], &v)
				for _, x := range v.Values {
					r.metrics[id] = x
				}
				continue
			}
			json.Unmarshal(agg[id], &v)
			if v.Value == nil {
				r.metrics[id] = math.NaN()
				continue
			}
			r.metrics[id] = *v.Value * max(m.multiplier, 1)
		}
		*out = append(*out, r)
		return
	}
	b := p.buckets[level]
	var res struct {
		Buckets json.RawMessage `json:"buckets"`
	}
	json.Unmarshal(agg[b.id], &res)
	if b.op == "filters" {
		var keyed map[string]map[string]json.RawMessage
		json.Unmarshal(res.Buckets, &keyed)
		for label, sub := range keyed {
			var dc int
			json.Unmarshal(sub["doc_count"], &dc)
			if dc > 0 {
				esRows(p, level+1, prefix+"/"+label, sub, out)
			}
		}
		return
	}
	var list []map[string]json.RawMessage
	json.Unmarshal(res.Buckets, &list)
	for _, sub := range list {
		esRows(p, level+1, prefix+"/"+esKey(sub["key"]), sub, out)
	}
}

// postSearch sends a search request body to index and returns the answer's
// status and body, whatever the status.
func postSearch(t *testing.T, client *elasticsearch.Client, index string, b []byte) (status string, code int, out []byte) {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "/"+index+"/_search", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Perform(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ = io.ReadAll(res.Body)
	return res.Status, res.StatusCode, out
}

func search(t *testing.T, client *elasticsearch.Client, index string, body map[string]any) map[string]json.RawMessage {
	t.Helper()
	b, _ := json.Marshal(body)
	status, code, out := postSearch(t, client, index, b)
	if code != 200 {
		t.Fatalf("search: %s %.800s\nrequest %s", status, out, b)
	}
	var r struct {
		Aggregations map[string]json.RawMessage `json:"aggregations"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	if r.Aggregations == nil {
		r.Aggregations = map[string]json.RawMessage{}
	}
	// The top level of a panel without buckets has no doc_count: add it.
	var total struct {
		Hits struct {
			Total struct{ Value int } `json:"total"`
		} `json:"hits"`
	}
	json.Unmarshal(out, &total)
	r.Aggregations["doc_count"], _ = json.Marshal(total.Hits.Total.Value)
	return r.Aggregations
}

// ---- Go side ----

func evalMetric(m metric, recs []*flow.Record) float64 {
	var vals []float64
	for _, r := range recs {
		if m.op == "count" {
			continue
		}
		if v, ok := groundtruth.Value(r, m.field); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				panic(err)
			}
			vals = append(vals, f)
		}
	}
	switch m.op {
	case "count":
		return float64(len(recs))
	case "sum", "formula":
		s := 0.0
		for _, v := range vals {
			s += v
		}
		return s * max(m.multiplier, 1)
	case "max":
		if len(vals) == 0 {
			return math.NaN()
		}
		return slices.Max(vals)
	case "average":
		if len(vals) == 0 {
			return math.NaN()
		}
		s := 0.0
		for _, v := range vals {
			s += v
		}
		return s / float64(len(vals))
	case "unique_count":
		seen := map[float64]bool{}
		for _, v := range vals {
			seen[v] = true
		}
		return float64(len(seen))
	case "percentile":
		return percentile(vals, m.percentile)
	}
	panic("metric " + m.op)
}

// percentile of a small sample as Elasticsearch's t-digest computes it
// while it still keeps every value: the two values around rank q*n,
// interpolated.
func percentile(vals []float64, p float64) float64 {
	if len(vals) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vals)
	sort.Float64s(s)
	n := float64(len(s))
	idx := p / 100 * n
	switch {
	case idx < 0.5:
		return s[0]
	case idx > n-0.5:
		return s[len(s)-1]
	}
	lo := math.Floor(idx - 0.5)
	frac := idx - 0.5 - lo
	return s[int(lo)] + frac*(s[int(lo)+1]-s[int(lo)])
}

type group struct {
	key  string
	recs []*flow.Record
	rank float64
}

// goRows evaluates the panel over the records. tied collects the paths of
// top-values levels whose cut-off falls between equal ranks.
func goRows(p plan, level int, prefix string, recs []*flow.Record, out map[string]row, tied map[string]bool) {
	if level == len(p.buckets) {
		r := row{keys: prefix, metrics: map[string]float64{}}
		for id, m := range p.metrics {
			r.metrics[id] = evalMetric(m, recs)
		}
		out[prefix] = r
		return
	}
	b := p.buckets[level]
	var groups []*group
	for k, rs := range partition(b, recs) {
		groups = append(groups, &group{key: k, recs: rs})
	}
	if b.op == "terms" {
		for _, g := range groups {
			if b.rank != nil {
				g.rank = evalMetric(*b.rank, g.recs)
			}
		}
		sort.SliceStable(groups, func(i, j int) bool {
			if b.rank != nil && groups[i].rank != groups[j].rank {
				return groups[i].rank > groups[j].rank
			}
			return groups[i].key < groups[j].key
		})
		if len(groups) > b.size {
			if b.rank != nil && groups[b.size-1].rank == groups[b.size].rank {
				tied[prefix] = true
				cut := groups[b.size-1].rank
				n := b.size
				for n < len(groups) && groups[n].rank == cut {
					n++
				}
				groups = groups[:n]
			} else {
				groups = groups[:b.size]
			}
		}
	}
	for _, g := range groups {
		goRows(p, level+1, prefix+"/"+g.key, g.recs, out, tied)
	}
}

func near(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

// rankOf is the fraction of vals below v (half of those equal to v count).
func rankOf(v float64, vals []float64) float64 {
	below := 0.0
	for _, x := range vals {
		switch {
		case x < v:
			below++
		case x == v:
			below += 0.5
		}
	}
	return below / float64(len(vals))
}

// bucketValues returns the values of field in the records of the leaf
// bucket at path keys.
func bucketValues(p plan, keys string, recs []*flow.Record, field string) []float64 {
	var vals []float64
	var walk func(level int, prefix string, recs []*flow.Record)
	walk = func(level int, prefix string, recs []*flow.Record) {
		if level == len(p.buckets) {
			if prefix == keys {
				for _, r := range recs {
					if v, ok := groundtruth.Value(r, field); ok {
						f, _ := strconv.ParseFloat(v, 64)
						vals = append(vals, f)
					}
				}
			}
			return
		}
		for k, g := range partition(p.buckets[level], recs) {
			if strings.HasPrefix(keys, prefix+"/"+k) {
				walk(level+1, prefix+"/"+k, g)
			}
		}
	}
	walk(0, "", recs)
	return vals
}

// partition splits records into a bucket column's groups (all of them,
// before any top-values cut).
func partition(b bucket, recs []*flow.Record) map[string][]*flow.Record {
	out := map[string][]*flow.Record{}
	for _, r := range recs {
		switch b.op {
		case "date_histogram":
			ts := r.End // @timestamp: the end of a flow, the time of a metric document
			if ts.IsZero() {
				ts = r.Received
			}
			k := strconv.FormatInt(ts.Truncate(time.Hour).UnixMilli(), 10)
			out[k] = append(out[k], r)
		case "filters":
			for _, f := range b.filters {
				if matches(r, f.clauses) {
					out[f.label] = append(out[f.label], r)
				}
			}
		case "terms":
			var parts []string
			for _, f := range b.fields {
				v, ok := groundtruth.Value(r, f)
				if !ok {
					parts = nil
					break
				}
				parts = append(parts, v)
			}
			if parts != nil {
				k := strings.Join(parts, "|")
				out[k] = append(out[k], r)
			}
		}
	}
	return out
}

// TestPanelsAgainstElasticsearch is described at the top of this file.
func TestPanelsAgainstElasticsearch(t *testing.T) {
	url := testutil.Elasticsearch(t)
	client := groundtruth.Client(t, url)
	// Flows and the collector's exporter statistics documents: flow panels
	// must leave the latter out, the exporter panels read them.
	recs := append(groundtruth.Records(3000, 1), groundtruth.ExporterStats(1)...)
	index := groundtruth.Index(t, client, recs)

	// A line to filter the Line load dashboard's Top IP panels on, as the
	// network team does in Kibana.
	line := groundtruth.Lines[1]
	lineKQL := fmt.Sprintf(`observer.ip : "%s" and observer.ingress.interface.id : "%d"`, line.Observer, line.IfIndex)

	hasMultiTerms := probeMultiTerms(t, client, index)
	if !hasMultiTerms {
		t.Log("this cluster has no multi_terms aggregation (x-pack analytics module): multi-field top values are computed with a composite aggregation and ranked as multi_terms ranks them")
	}

	panels := 0
	for _, o := range parseFile(t) {
		if o.Type != "lens" {
			continue
		}
		var a lensAttrs
		if err := json.Unmarshal(o.Attributes, &a); err != nil {
			t.Fatal(err)
		}
		queries := []string{a.State.Query.Query}
		if strings.HasPrefix(o.ID, "spanflow-line-load-top-") || o.ID == "spanflow-line-load-conversations" {
			queries = append(queries, lineKQL)
		}
		for _, q := range queries {
			t.Run(o.ID+"/"+q, func(t *testing.T) {
				panels++
				p := readPlan(t, a)
				cs := parseKQL(t, q)
				var sel []*flow.Record
				for i := range recs {
					if matches(&recs[i], cs) {
						sel = append(sel, &recs[i])
					}
				}
				if len(sel) == 0 {
					t.Fatalf("no generated record matches %q: the dataset does not exercise this panel", q)
				}
				checkDocumentKinds(t, p, sel)
				body := map[string]any{
					"size": 0, "track_total_hits": true,
					"query": map[string]any{"bool": map[string]any{"filter": esFilter(cs)}},
					"aggs":  aggsFor(p, 0),
				}
				var got []row
				if len(p.buckets) > 0 && len(p.buckets[0].fields) > 1 && !hasMultiTerms {
					esRows(p, 0, "", compositeMultiTerms(t, client, index, p, body), &got)
				} else {
					esRows(p, 0, "", search(t, client, index, body), &got)
				}
				want, tied := map[string]row{}, map[string]bool{}
				goRows(p, 0, "", sel, want, tied)
				if len(got) == 0 {
					t.Fatalf("the panel's aggregation returned no bucket")
				}
				if len(tied) == 0 && len(got) != len(want) {
					t.Errorf("%d buckets from Elasticsearch, %d in the ground truth", len(got), len(want))
				}
				for _, g := range got {
					w, ok := want[g.keys]
					if !ok {
						t.Errorf("bucket %s from Elasticsearch is not in the ground truth", g.keys)
						continue
					}
					for id, v := range g.metrics {
						if m := p.metrics[id]; m.op == "percentile" {
							// t-digest is approximate: the value must sit at
							// the right rank of the bucket's values, within
							// one percentile point.
							if r := rankOf(v, bucketValues(p, g.keys, sel, m.field)); math.Abs(r-m.percentile/100) > 0.01 {
								t.Errorf("bucket %s, %s: Elasticsearch %v is at rank %.4f of the ground truth values, want %.2f", g.keys, id, v, r, m.percentile/100)
							}
							continue
						}
						if !near(v, w.metrics[id]) {
							t.Errorf("bucket %s, %s: Elasticsearch %v, ground truth %v", g.keys, id, v, w.metrics[id])
						}
					}
				}
			})
		}
	}
	if panels < 30 {
		t.Errorf("only %d panel queries ran", panels)
	}
}

// checkDocumentKinds fails a panel that counts documents over both flow
// documents and the collector's metric documents (exporter statistics,
// interface counters) in its buckets: its KQL must pick one kind.
func checkDocumentKinds(t *testing.T, p plan, sel []*flow.Record) {
	t.Helper()
	counts := false
	for _, m := range p.metrics {
		counts = counts || m.op == "count"
	}
	for _, b := range p.buckets {
		counts = counts || (b.rank != nil && b.rank.op == "count")
	}
	// Only the documents that land in the panel's buckets.
	for _, b := range p.buckets {
		var in []*flow.Record
		seen := map[*flow.Record]bool{}
		for _, g := range partition(b, sel) {
			for _, r := range g {
				if !seen[r] {
					seen[r] = true
					in = append(in, r)
				}
			}
		}
		sel = in
	}
	var flows, metrics int
	for _, r := range sel {
		if r.Exporter == nil && r.Counters == nil {
			flows++
		} else {
			metrics++
		}
	}
	if counts && flows > 0 && metrics > 0 {
		t.Errorf("the panel counts %d flow and %d metric documents together: filter event.kind", flows, metrics)
	}
}

// probeMultiTerms tells whether the cluster has the multi_terms aggregation
// Lens uses for multi-field top values. It comes with the x-pack analytics
// module of the default distribution; the integ-test-zip cluster of the
// tests lacks it.
func probeMultiTerms(t *testing.T, client *elasticsearch.Client, index string) bool {
	t.Helper()
	b := []byte(`{"size":0,"aggs":{"m":{"multi_terms":{"terms":[{"field":"observer.ip"},{"field":"network.type"}]}}}}`)
	status, code, out := postSearch(t, client, index, b)
	if code == 200 {
		return true
	}
	if !bytes.Contains(out, []byte("multi_terms")) {
		t.Fatalf("multi_terms probe: %s %.300s", status, out)
	}
	return false
}

// compositeMultiTerms answers a panel whose first bucket column is a
// multi-field top values on a cluster without multi_terms: a composite
// aggregation over the same fields (every combination, exactly, page by
// page) with the same sub-aggregations, ranked and cut as multi_terms does
// (rank metric descending, then key), returned in multi_terms' shape.
func compositeMultiTerms(t *testing.T, client *elasticsearch.Client, index string, p plan, body map[string]any) map[string]json.RawMessage {
	t.Helper()
	b := p.buckets[0]
	mt := body["aggs"].(map[string]any)[b.id].(map[string]any)
	sub := mt["aggs"].(map[string]any)
	var sources []any
	for i, f := range b.fields {
		sources = append(sources, map[string]any{fmt.Sprint(i): map[string]any{"terms": map[string]any{"field": f}}})
	}
	type entry struct {
		keys []any
		rank float64
		raw  map[string]json.RawMessage
	}
	var all []entry
	var after any
	for {
		comp := map[string]any{"sources": sources, "size": 500}
		if after != nil {
			comp["after"] = after
		}
		req := map[string]any{"size": 0, "query": body["query"], "aggs": map[string]any{b.id: map[string]any{"composite": comp, "aggs": sub}}}
		aggs := search(t, client, index, req)
		var res struct {
			AfterKey map[string]any               `json:"after_key"`
			Buckets  []map[string]json.RawMessage `json:"buckets"`
		}
		if err := json.Unmarshal(aggs[b.id], &res); err != nil {
			t.Fatal(err)
		}
		for _, bk := range res.Buckets {
			var key map[string]any
			json.Unmarshal(bk["key"], &key)
			e := entry{raw: bk}
			for i := range b.fields {
				e.keys = append(e.keys, key[fmt.Sprint(i)])
			}
			if b.rank != nil {
				if _, ok := sub["rank"]; ok {
					var v struct{ Value float64 }
					json.Unmarshal(bk["rank"], &v)
					e.rank = v.Value
				} else {
					json.Unmarshal(bk["doc_count"], &e.rank)
				}
			}
			all = append(all, e)
		}
		if len(res.Buckets) == 0 || res.AfterKey == nil {
			break
		}
		after = res.AfterKey
	}
	keyString := func(e entry) string {
		k, _ := json.Marshal(e.keys)
		return esKey(k)
	}
	sort.SliceStable(all, func(i, j int) bool {
		if b.rank != nil && all[i].rank != all[j].rank {
			return all[i].rank > all[j].rank
		}
		return keyString(all[i]) < keyString(all[j])
	})
	if len(all) > b.size {
		all = all[:b.size]
	}
	var buckets []map[string]json.RawMessage
	for _, e := range all {
		e.raw["key"], _ = json.Marshal(e.keys)
		buckets = append(buckets, e.raw)
	}
	out, _ := json.Marshal(map[string]any{"buckets": buckets})
	return map[string]json.RawMessage{b.id: out}
}
