package report

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
)

// ifFields are the interface ids a flow needs to be on a line.
var ifFields = []string{"observer.ingress.interface.id", "observer.egress.interface.id"}

// whyEmpty says why a report over q found no line: no index matches the
// pattern, the indices hold no flow, none in the range (and then the
// range the flows cover), or the flows in the range carry no interface id
// (and how many). It asks the cluster once.
func whyEmpty(ctx context.Context, client *elasticsearch.Client, q Query) (string, error) {
	flows := map[string]any{"term": map[string]any{"event.kind": "event"}}
	var withIf []any
	for _, f := range ifFields {
		withIf = append(withIf, map[string]any{"exists": map[string]any{"field": f}})
	}
	res, err := searchAnswer(ctx, client, q.index(), map[string]any{
		"size": 0, "track_total_hits": true,
		"query": map[string]any{"bool": map[string]any{"filter": []any{flows}}},
		"aggs": map[string]any{
			"first": map[string]any{"min": map[string]any{"field": "@timestamp"}},
			"last":  map[string]any{"max": map[string]any{"field": "@timestamp"}},
			"range": map[string]any{"filter": rangeFilter(q), "aggs": map[string]any{
				"lines": map[string]any{"filter": map[string]any{"bool": map[string]any{
					"filter": []any{map[string]any{"exists": map[string]any{"field": "observer.ip"}}},
					"should": withIf, "minimum_should_match": 1,
				}}},
			}},
		},
	})
	if err != nil {
		return "", err
	}
	var a struct {
		Shards struct {
			Total int `json:"total"`
		} `json:"_shards"`
		Hits struct {
			Total struct {
				Value int64 `json:"value"`
			} `json:"total"`
		} `json:"hits"`
		Aggregations struct {
			First, Last struct {
				Value *float64 `json:"value"`
			}
			Range struct {
				DocCount int64 `json:"doc_count"`
				Lines    struct {
					DocCount int64 `json:"doc_count"`
				} `json:"lines"`
			} `json:"range"`
		} `json:"aggregations"`
	}
	if err := json.Unmarshal(res, &a); err != nil {
		return "", fmt.Errorf("search %s: answer: %w", q.index(), err)
	}
	ag := a.Aggregations
	switch {
	case a.Shards.Total == 0:
		return fmt.Sprintf("no index matches %q (the collector writes %s; --index names another pattern)", q.index(), DefaultIndex), nil
	case a.Hits.Total.Value == 0 || ag.First.Value == nil || ag.Last.Value == nil:
		return fmt.Sprintf("the indices matching %q hold no flow", q.index()), nil
	case ag.Range.DocCount == 0:
		return fmt.Sprintf("no flow from %s to %s; the flows in %q go from %s to %s", stamp(q.From), stamp(q.To), q.index(),
			stamp(time.UnixMilli(int64(*ag.First.Value))), stamp(time.UnixMilli(int64(*ag.Last.Value)))), nil
	case ag.Range.Lines.DocCount == 0:
		return fmt.Sprintf("%d %s in the range, none with an interface id (%s or %s): line reports need them; "+
			"have the exporters send the ingress and egress interface (IPFIX and NetFlow v9 elements 10 and 14)",
			ag.Range.DocCount, plural(ag.Range.DocCount, "flow", "flows"), ifFields[0], ifFields[1]), nil
	}
	return "", nil
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// maxBuckets bounds the utilisation series of one line.
const maxBuckets = 100_000

// fittingInterval is the smallest usual interval that cuts span into at
// most maxBuckets buckets.
func fittingInterval(span time.Duration) time.Duration {
	for _, d := range []time.Duration{time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
		time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
		time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour} {
		if span/d <= maxBuckets {
			return d
		}
	}
	days := (span/maxBuckets + 24*time.Hour - 1) / (24 * time.Hour)
	return days * 24 * time.Hour
}

// shortDuration writes a duration as a flag takes it: 5m, not 5m0s.
func shortDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}

// spanText writes a range's length for people: days beyond two.
func spanText(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%.0f days", d.Hours()/24)
	}
	return shortDuration(d)
}
