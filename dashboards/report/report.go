// Package report builds the line-load and Top-IP reports from Elasticsearch
// aggregations over the flow documents. A line is one exporter interface:
// observer.ip with observer.ingress.interface.id (traffic in on it) and
// observer.egress.interface.id (traffic out on it). Reports are written as
// CSV, Markdown or one self-contained HTML page (format.go), once or on a
// schedule into a directory or by mail (schedule.go).
package report

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/spanflow/spanflow/internal/esconn"
)

// LineID names a line.
type LineID struct {
	Exporter  string // observer.ip
	Interface string // interface id (SNMP ifIndex) as indexed
}

// Point is one bucket of a utilisation series: [Time, End), and its bytes
// × 8 over its length (a whole bucket's also when --to cuts it).
type Point struct {
	Time, End time.Time
	Bps       float64
}

// Line is the load of one line over the range.
type Line struct {
	LineID
	Name                  string // interface name, when the exporter gives one
	InBytes, OutBytes     uint64
	InPackets, OutPackets uint64
	InFlows, OutFlows     uint64
	// Average over the whole range and peak over the interval buckets, in
	// bits per second.
	InAvgBps, OutAvgBps   float64
	InPeakBps, OutPeakBps float64
	In, Out               []Point // non-empty buckets, in time order
}

// LineLoad is a line-load report.
type LineLoad struct {
	Query Query
	Lines []Line // busiest first (in + out bytes)
	// Empty says why there is no line (see EmptyReason).
	Empty string
}

// IP is one address of a Top-IP list.
type IP struct {
	Rank           int
	IP             string
	Bytes, Packets uint64
	Flows          uint64
}

// LineIPs is the Top-IP lists of one line: the addresses that sent (source)
// and received (destination) the most bytes through it, in or out.
type LineIPs struct {
	Line
	Sources, Destinations []IP
}

// TopIP is a Top-IP report.
type TopIP struct {
	Query Query
	Lines []LineIPs
	// Empty says why there is no line (see EmptyReason).
	Empty string
}

// search runs one search and returns its aggregations.
func search(ctx context.Context, client *elasticsearch.Client, index string, body map[string]any) (map[string]json.RawMessage, error) {
	out, err := searchAnswer(ctx, client, index, body)
	if err != nil {
		return nil, err
	}
	var r struct {
		Aggregations map[string]json.RawMessage `json:"aggregations"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("search %s: answer: %w", index, err)
	}
	return r.Aggregations, nil
}

// searchAnswer runs one search and returns the answer. An error answer
// gives Elasticsearch's root cause: a failed search says only "all shards
// failed" at its top.
func searchAnswer(ctx context.Context, client *elasticsearch.Client, index string, body map[string]any) ([]byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "/"+index+"/_search?ignore_unavailable=true&allow_no_indices=true", bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Perform(req)
	if err != nil {
		return nil, fmt.Errorf("search %s: %w", index, err)
	}
	defer res.Body.Close()
	out, err := io.ReadAll(io.LimitReader(res.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("search %s: %w", index, err)
	}
	if res.StatusCode != http.StatusOK {
		err := esconn.StatusError(res.Status, out)
		if strings.Contains(err.Error(), "Fielddata is disabled") {
			// A text field where the template maps an ip or keyword.
			return nil, fmt.Errorf("search %s: %w (an index created without spanflow's template: 'spanflow es setup' lists them)", index, err)
		}
		return nil, fmt.Errorf("search %s: %w", index, err)
	}
	return out, nil
}

// bucketsOf is the date histogram of q's series: whole intervals from
// q.From. Aligned to the epoch instead (Elasticsearch's default), a range
// starting off the interval (09:30 with 1h) began and ended with partial
// buckets, whose bytes over a whole interval read a rate too low.
func bucketsOf(q Query) map[string]any {
	secs := int64(q.Interval / time.Second)
	h := map[string]any{"field": "@timestamp", "fixed_interval": fmt.Sprintf("%ds", secs)}
	if off := ((q.From.Unix() % secs) + secs) % secs; off != 0 {
		h["offset"] = fmt.Sprintf("+%ds", off)
	}
	return h
}

// series reads the bytes, packets and flows of every line (exporter and
// the interface id in field) per bucket of bounds, and gives each
// non-empty bucket to add. Buckets of one length (UTC, any zone with
// sub-day intervals, whole days without a clock change) are a date
// histogram; calendar days of unequal length (a day of the clock change
// has 23 or 25 hours) are a date_range of the bounds, which a fixed
// interval would drift off after the change.
func series(ctx context.Context, client *elasticsearch.Client, q Query, field string, bounds []time.Time,
	add func(id LineID, p Point, bytes, packets, flows uint64)) error {
	sources := []any{
		map[string]any{"exporter": map[string]any{"terms": map[string]any{"field": "observer.ip"}}},
		map[string]any{"interface": map[string]any{"terms": map[string]any{"field": field}}},
	}
	sums := map[string]any{
		"bytes":   map[string]any{"sum": map[string]any{"field": "network.bytes"}},
		"packets": map[string]any{"sum": map[string]any{"field": "network.packets"}},
	}
	point := func(from, to time.Time, bytes uint64) Point {
		return Point{Time: from, End: to, Bps: float64(bytes) * 8 / to.Sub(from).Seconds()}
	}
	uniform := true
	for i := 1; i < len(bounds); i++ {
		uniform = uniform && bounds[i].Sub(bounds[i-1]) == q.Interval
	}
	if uniform {
		sources = append(sources, map[string]any{"t": map[string]any{"date_histogram": bucketsOf(q)}})
		return composite(ctx, client, q, 1000, []any{rangeFilter(q)}, sources, sums, func(key, b map[string]json.RawMessage) error {
			var ms int64
			var flows uint64
			json.Unmarshal(key["t"], &ms)
			json.Unmarshal(b["doc_count"], &flows)
			from := time.UnixMilli(ms).UTC()
			bytes := uint64(value(b["bytes"]))
			add(LineID{Exporter: keyString(key["exporter"]), Interface: keyString(key["interface"])},
				point(from, from.Add(q.Interval), bytes), bytes, uint64(value(b["packets"])), flows)
			return nil
		})
	}
	ranges := make([]any, len(bounds)-1)
	for i := range ranges {
		ranges[i] = map[string]any{"from": bounds[i].UnixMilli(), "to": bounds[i+1].UnixMilli()}
	}
	sub := map[string]any{"t": map[string]any{
		"date_range": map[string]any{"field": "@timestamp", "format": "epoch_millis", "ranges": ranges},
		"aggs":       sums,
	}}
	// Every line's page holds all its ranges: keep a page under
	// Elasticsearch's search.max_buckets (65,536 by default).
	size := max(1, min(1000, 60_000/(len(ranges)+1)))
	return composite(ctx, client, q, size, []any{rangeFilter(q)}, sources, sub, func(key, b map[string]json.RawMessage) error {
		var res struct {
			Buckets []struct {
				From     float64         `json:"from"`
				To       float64         `json:"to"`
				DocCount uint64          `json:"doc_count"`
				Bytes    json.RawMessage `json:"bytes"`
				Packets  json.RawMessage `json:"packets"`
			} `json:"buckets"`
		}
		if err := json.Unmarshal(b["t"], &res); err != nil {
			return fmt.Errorf("read date ranges: %w", err)
		}
		id := LineID{Exporter: keyString(key["exporter"]), Interface: keyString(key["interface"])}
		for _, r := range res.Buckets {
			if r.DocCount == 0 {
				continue
			}
			bytes := uint64(value(r.Bytes))
			add(id, point(time.UnixMilli(int64(r.From)).UTC(), time.UnixMilli(int64(r.To)).UTC(), bytes), bytes, uint64(value(r.Packets)), r.DocCount)
		}
		return nil
	})
}

func rangeFilter(q Query) map[string]any {
	return map[string]any{"range": map[string]any{"@timestamp": map[string]any{
		"gte": q.From.UnixMilli(), "lt": q.To.UnixMilli(), "format": "epoch_millis"}}}
}

// composite pages through a composite aggregation and calls fn with every
// bucket.
func composite(ctx context.Context, client *elasticsearch.Client, q Query, size int, filters []any, sources []any, sub map[string]any,
	fn func(key map[string]json.RawMessage, bucket map[string]json.RawMessage) error) error {
	var after json.RawMessage
	for {
		comp := map[string]any{"size": size, "sources": sources}
		if after != nil {
			comp["after"] = after
		}
		agg := map[string]any{"composite": comp}
		if sub != nil {
			agg["aggs"] = sub
		}
		aggs, err := search(ctx, client, q.index(), map[string]any{
			"size": 0, "track_total_hits": false,
			"query": map[string]any{"bool": map[string]any{"filter": filters}},
			"aggs":  map[string]any{"c": agg},
		})
		if err != nil {
			return err
		}
		if aggs["c"] == nil {
			return nil // no index matches
		}
		var res struct {
			AfterKey json.RawMessage              `json:"after_key"`
			Buckets  []map[string]json.RawMessage `json:"buckets"`
		}
		if err := json.Unmarshal(aggs["c"], &res); err != nil {
			return fmt.Errorf("read composite aggregation: %w", err)
		}
		for _, b := range res.Buckets {
			var key map[string]json.RawMessage
			if err := json.Unmarshal(b["key"], &key); err != nil {
				return fmt.Errorf("read composite key: %w", err)
			}
			if err := fn(key, b); err != nil {
				return err
			}
		}
		if len(res.Buckets) == 0 || len(res.AfterKey) == 0 {
			return nil
		}
		after = res.AfterKey
	}
}

// keyString reads a composite key part: a string (ip, keyword) or a number.
func keyString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return string(raw)
}

func value(raw json.RawMessage) float64 {
	var v struct {
		Value *float64 `json:"value"`
	}
	if json.Unmarshal(raw, &v) != nil || v.Value == nil {
		return 0
	}
	return *v.Value
}

var directions = []struct{ name, field, nameField string }{
	{"in", "observer.ingress.interface.id", "observer.ingress.interface.name"},
	{"out", "observer.egress.interface.id", "observer.egress.interface.name"},
}

// lines collects every line's load in the range.
func lines(ctx context.Context, client *elasticsearch.Client, q Query) ([]Line, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	byID := map[LineID]*Line{}
	get := func(id LineID) *Line {
		l, ok := byID[id]
		if !ok {
			l = &Line{LineID: id}
			byID[id] = l
		}
		return l
	}
	bounds := q.bounds()
	nameFlows := map[LineID]map[string]uint64{}
	for _, d := range directions {
		add := func(id LineID, p Point, bytes, packets, flows uint64) {
			l := get(id)
			if d.name == "in" {
				l.InBytes += bytes
				l.InPackets += packets
				l.InFlows += flows
				l.In = append(l.In, p)
				l.InPeakBps = math.Max(l.InPeakBps, p.Bps)
			} else {
				l.OutBytes += bytes
				l.OutPackets += packets
				l.OutFlows += flows
				l.Out = append(l.Out, p)
				l.OutPeakBps = math.Max(l.OutPeakBps, p.Bps)
			}
		}
		if err := series(ctx, client, q, d.field, bounds, add); err != nil {
			return nil, fmt.Errorf("line load (%s): %w", d.name, err)
		}
		// Interface names: the one most flows carry.
		sources := []any{
			map[string]any{"exporter": map[string]any{"terms": map[string]any{"field": "observer.ip"}}},
			map[string]any{"interface": map[string]any{"terms": map[string]any{"field": d.field}}},
			map[string]any{"name": map[string]any{"terms": map[string]any{"field": d.nameField}}},
		}
		err := composite(ctx, client, q, 1000, []any{rangeFilter(q)}, sources, nil, func(key, b map[string]json.RawMessage) error {
			id := LineID{Exporter: keyString(key["exporter"]), Interface: keyString(key["interface"])}
			var n uint64
			json.Unmarshal(b["doc_count"], &n)
			if nameFlows[id] == nil {
				nameFlows[id] = map[string]uint64{}
			}
			nameFlows[id][keyString(key["name"])] += n
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("interface names (%s): %w", d.name, err)
		}
	}
	span := q.To.Sub(q.From).Seconds()
	out := make([]Line, 0, len(byID))
	for id, l := range byID {
		var best uint64
		for name, n := range nameFlows[id] {
			if n > best || n == best && name < l.Name {
				l.Name, best = name, n
			}
		}
		l.InAvgBps = float64(l.InBytes) * 8 / span
		l.OutAvgBps = float64(l.OutBytes) * 8 / span
		sort.Slice(l.In, func(i, j int) bool { return l.In[i].Time.Before(l.In[j].Time) })
		sort.Slice(l.Out, func(i, j int) bool { return l.Out[i].Time.Before(l.Out[j].Time) })
		out = append(out, *l)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].InBytes+out[i].OutBytes, out[j].InBytes+out[j].OutBytes
		if a != b {
			return a > b
		}
		if out[i].Exporter != out[j].Exporter {
			return out[i].Exporter < out[j].Exporter
		}
		return compareIfIndex(out[i].Interface, out[j].Interface)
	})
	return out, nil
}

// compareIfIndex orders interface ids numerically when they are numbers.
func compareIfIndex(a, b string) bool {
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	if err1 == nil && err2 == nil {
		return x < y
	}
	return a < b
}

// BuildLineLoad queries the load of every line and keeps the q.Top busiest.
func BuildLineLoad(ctx context.Context, client *elasticsearch.Client, q Query) (LineLoad, error) {
	ls, err := lines(ctx, client, q)
	if err != nil {
		return LineLoad{}, err
	}
	if q.Top > 0 && len(ls) > q.Top {
		ls = ls[:q.Top]
	}
	r := LineLoad{Query: q, Lines: ls}
	if len(ls) == 0 {
		if r.Empty, err = whyEmpty(ctx, client, q); err != nil {
			return LineLoad{}, fmt.Errorf("line load: %w", err)
		}
	}
	return r, nil
}

// BuildTopIP finds, for each of the q.Lines busiest lines, the q.Top source
// and destination addresses with the most bytes through it (in or out).
func BuildTopIP(ctx context.Context, client *elasticsearch.Client, q Query) (TopIP, error) {
	ls, err := lines(ctx, client, q)
	if err != nil {
		return TopIP{}, err
	}
	if q.Lines > 0 && len(ls) > q.Lines {
		ls = ls[:q.Lines]
	}
	report := TopIP{Query: q}
	if len(ls) == 0 {
		if report.Empty, err = whyEmpty(ctx, client, q); err != nil {
			return TopIP{}, fmt.Errorf("top IP: %w", err)
		}
	}
	for _, l := range ls {
		li := LineIPs{Line: l}
		filters := []any{rangeFilter(q), map[string]any{"term": map[string]any{"observer.ip": l.Exporter}},
			map[string]any{"bool": map[string]any{"should": []any{
				map[string]any{"term": map[string]any{"observer.ingress.interface.id": l.Interface}},
				map[string]any{"term": map[string]any{"observer.egress.interface.id": l.Interface}},
			}, "minimum_should_match": 1}}}
		if li.Sources, li.Destinations, err = topAddresses(ctx, client, q, filters); err != nil {
			return TopIP{}, fmt.Errorf("top IPs of %s %s: %w", l.Exporter, l.Interface, err)
		}
		report.Lines = append(report.Lines, li)
	}
	return report, nil
}

// topAddresses ranks every source and every destination address among the
// flows that filters select by bytes (then address), and keeps the q.Top
// first of each. Every address is summed over all the indices: a terms
// aggregation would rank on each shard (each daily index) apart and miss,
// or undercount, an address that is not among a shard's first, which a
// multi-day report over daily indices meets.
func topAddresses(ctx context.Context, client *elasticsearch.Client, q Query, filters []any) (src, dst []IP, err error) {
	type ranked struct {
		IP
		seq int // composite order: the address order of the ip field
	}
	fields := []string{"source.ip", "destination.ip"}
	lists := make([][]ranked, len(fields))
	order := func(list []ranked) {
		sort.Slice(list, func(i, j int) bool {
			if list[i].Bytes != list[j].Bytes {
				return list[i].Bytes > list[j].Bytes
			}
			return list[i].seq < list[j].seq
		})
	}
	sub := map[string]any{
		"bytes":   map[string]any{"sum": map[string]any{"field": "network.bytes"}},
		"packets": map[string]any{"sum": map[string]any{"field": "network.packets"}},
	}
	// Both sides page in the same searches (10,000 addresses a page): each
	// search reads the line's flows again.
	after := make([]json.RawMessage, len(fields))
	done := make([]bool, len(fields))
	seen := make([]int, len(fields)) // addresses read, for the order of ties
	for {
		aggs := map[string]any{}
		for i, f := range fields {
			if done[i] {
				continue
			}
			comp := map[string]any{"size": 10_000,
				"sources": []any{map[string]any{"ip": map[string]any{"terms": map[string]any{"field": f}}}}}
			if after[i] != nil {
				comp["after"] = after[i]
			}
			aggs[strconv.Itoa(i)] = map[string]any{"composite": comp, "aggs": sub}
		}
		if len(aggs) == 0 {
			break
		}
		res, err := search(ctx, client, q.index(), map[string]any{
			"size": 0, "track_total_hits": false,
			"query": map[string]any{"bool": map[string]any{"filter": filters}},
			"aggs":  aggs,
		})
		if err != nil {
			return nil, nil, err
		}
		for i := range fields {
			if done[i] {
				continue
			}
			var page struct {
				AfterKey json.RawMessage              `json:"after_key"`
				Buckets  []map[string]json.RawMessage `json:"buckets"`
			}
			if raw := res[strconv.Itoa(i)]; raw == nil {
				done[i] = true // no index matches
				continue
			} else if err := json.Unmarshal(raw, &page); err != nil {
				return nil, nil, fmt.Errorf("read composite aggregation: %w", err)
			}
			for _, b := range page.Buckets {
				var key map[string]json.RawMessage
				if err := json.Unmarshal(b["key"], &key); err != nil {
					return nil, nil, fmt.Errorf("read composite key: %w", err)
				}
				var flows uint64
				json.Unmarshal(b["doc_count"], &flows)
				lists[i] = append(lists[i], ranked{IP: IP{IP: keyString(key["ip"]), Bytes: uint64(value(b["bytes"])),
					Packets: uint64(value(b["packets"])), Flows: flows}, seq: seen[i]})
				seen[i]++
			}
			if q.Top > 0 && len(lists[i]) >= 4*q.Top+4096 { // bound the memory a line with many addresses takes
				order(lists[i])
				lists[i] = lists[i][:q.Top]
			}
			after[i] = page.AfterKey
			done[i] = len(page.Buckets) == 0 || len(page.AfterKey) == 0
		}
	}
	out := make([][]IP, len(fields))
	for i, list := range lists {
		order(list)
		if q.Top > 0 && len(list) > q.Top {
			list = list[:q.Top]
		}
		out[i] = make([]IP, len(list))
		for j := range list {
			out[i][j] = list[j].IP
			out[i][j].Rank = j + 1
		}
	}
	return out[0], out[1], nil
}
