package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/spanflow/spanflow/collector/output/elasticsearch/setup"
	"github.com/spanflow/spanflow/internal/esconn"
	"github.com/spanflow/spanflow/internal/lifecycle"
	"github.com/spanflow/spanflow/internal/reporter"
)

// Names of the alerts index.
const (
	AlertsIndexPrefix  = "spanflow-alerts-" // daily: spanflow-alerts-YYYY.MM.DD (UTC)
	AlertsTemplateName = "spanflow-alerts"
)

// Index writes every alert change as a document into spanflow-alerts-*
// (its own template, installed before the first document), through the
// Elasticsearch output's connection settings. A document the cluster does
// not take is retried with backoff, in order, like the webhook.
type Index struct {
	r      *reporter.Reporter
	m      *metrics
	client *elasticsearch.Client
	setup  setup.Configuration
	prefix string
	q      *queue
	t      lifecycle.Tracker
	warn   *reporter.Limited
	tmpl   bool
}

// NewIndex connects as the Elasticsearch output does.
func NewIndex(r *reporter.Reporter, conn esconn.Configuration, st setup.Configuration, queueSize int) (*Index, error) {
	client, err := esconn.New(conn)
	if err != nil {
		return nil, err
	}
	return &Index{r: r, client: client, setup: st, prefix: AlertsIndexPrefix, warn: reporter.NewLimited(r.Log, time.Minute),
		q: &queue{name: "elasticsearch", ch: make(chan Alert, queueSize), warn: reporter.NewLimited(r.Log, time.Minute)}}, nil
}

// Name of the sink.
func (x *Index) Name() string { return "elasticsearch" }

// bind gives the sink the component's metrics.
func (x *Index) bind(m *metrics) { x.m, x.q.m = m, m }

// Send queues a document.
func (x *Index) Send(a Alert) { x.q.put(a) }

// Start runs the writer.
func (x *Index) Start() error {
	x.t.Go(func(ctx context.Context) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case a := <-x.q.ch:
				backoff := 100 * time.Millisecond
				for {
					err := x.index(ctx, &a)
					if err == nil {
						x.m.deliveredAt(x.Name(), &a, time.Now())
						x.q.done()
						break
					}
					x.m.errors.WithLabelValues(x.Name()).Inc()
					x.warn.Warn("index", "alert not indexed; retrying", "err", err)
					select {
					case <-ctx.Done():
						x.m.dropped.WithLabelValues(x.Name()).Inc()
						return nil
					case <-time.After(backoff):
					}
					backoff = min(2*backoff, 30*time.Second)
				}
			}
		}
	})
	return nil
}

// Stop stops the writer once what is queued is indexed, or after
// stopGrace.
func (x *Index) Stop() error {
	x.q.drain(stopGrace)
	return x.t.Stop()
}

// AlertDocument is an alert change as indexed.
func AlertDocument(a *Alert, now time.Time) map[string]any {
	doc := map[string]any{
		"@timestamp": now.UTC().Format(time.RFC3339Nano), "status": a.Status(), "rule": a.Rule,
		"severity": a.Severity, "scope": a.Scope, "key": a.Key, "fingerprint": a.Fingerprint(),
		"labels": a.Labels, "annotations": a.Annotations, "value": a.Value,
		"starts_at": a.StartsAt.UTC().Format(time.RFC3339Nano), "fired_at": a.FiredAt.UTC().Format(time.RFC3339Nano),
	}
	if !a.Firing() {
		doc["ends_at"] = a.EndsAt.UTC().Format(time.RFC3339Nano)
	}
	if a.DiscoverURL != "" {
		doc["discover_url"] = a.DiscoverURL
	}
	return doc
}

func (x *Index) index(ctx context.Context, a *Alert) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !x.tmpl {
		// Named after the prefix (spanflow-alerts for the default one).
		name := strings.TrimSuffix(x.prefix, "-")
		if err := x.perform(ctx, http.MethodPut, "/_index_template/"+name, AlertsTemplate(x.setup, x.prefix)); err != nil {
			return fmt.Errorf("install index template %s: %w", name, err)
		}
		x.tmpl = true
	}
	now := time.Now()
	// The id makes a retried document replace itself, not repeat.
	id := a.Fingerprint() + "-" + a.Status() + "-" + a.StartsAt.UTC().Format("20060102T150405.000000000")
	return x.perform(ctx, http.MethodPut, "/"+x.prefix+now.UTC().Format("2006.01.02")+"/_doc/"+id, AlertDocument(a, now))
}

func (x *Index) perform(ctx context.Context, method, path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := x.client.Perform(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	if res.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, strings.TrimSpace(string(answer)))
	}
	return nil
}

// AlertsTemplate is the body of PUT _index_template/spanflow-alerts.
func AlertsTemplate(c setup.Configuration, prefix string) map[string]any {
	kw := map[string]any{"type": "keyword", "ignore_above": 1024}
	date := map[string]any{"type": "date", "format": "strict_date_optional_time||epoch_millis"}
	settings := map[string]any{"number_of_shards": 1, "number_of_replicas": c.Replicas, "refresh_interval": "1s"}
	return map[string]any{
		"index_patterns": []string{prefix + "*"},
		"priority":       200,
		"template": map[string]any{"settings": map[string]any{"index": settings}, "mappings": map[string]any{
			"dynamic": "false",
			"dynamic_templates": []any{
				map[string]any{"labels": map[string]any{"path_match": "labels.*", "mapping": kw}},
				map[string]any{"annotations": map[string]any{"path_match": "annotations.*", "mapping": map[string]any{"type": "text"}}},
			},
			"properties": map[string]any{
				"@timestamp": date, "starts_at": date, "ends_at": date, "fired_at": date,
				"status": kw, "rule": kw, "severity": kw, "scope": kw, "key": kw, "fingerprint": kw,
				"value":        map[string]any{"type": "double"},
				"discover_url": map[string]any{"type": "keyword", "index": false},
				"labels":       map[string]any{"type": "object", "dynamic": "true"},
				"annotations":  map[string]any{"type": "object", "dynamic": "true"},
			},
		}},
		"_meta": map[string]any{"managed_by": "spanflow"},
	}
}
