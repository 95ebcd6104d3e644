package rollup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spanflow/spanflow/collector/output/elasticsearch/setup"
	"github.com/spanflow/spanflow/internal/esconn"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

// Names of the rollups index.
const (
	// IndexPattern matches the rollups indices.
	IndexPattern = "spanflow-rollups-*"
	// IndexPrefix starts the daily index names: spanflow-rollups-YYYY.MM.DD
	// (UTC), like the flows' daily indices.
	IndexPrefix = "spanflow-rollups-"
	// TemplateName is the rollups' composable index template.
	TemplateName = "spanflow-rollups"
)

// IndexerConfiguration says where and how often rollups are indexed.
type IndexerConfiguration struct {
	Connection esconn.Configuration
	// Setup gives shards, replicas, refresh interval and codec (the flow
	// index's settings).
	Setup setup.Configuration
	// Interval: the snapshot of every tick that ends on a multiple of it
	// is indexed, one document per row.
	Interval time.Duration
	// QueueSize bounds the bulk requests waiting for the cluster; more are
	// dropped and counted.
	QueueSize int
	// Prefix starts the daily index names (IndexPrefix); the template is
	// named after it, without its last dash, and matches Prefix*.
	Prefix string
}

func (c IndexerConfiguration) templateName() string { return strings.TrimSuffix(c.Prefix, "-") }

// DefaultIndexerConfiguration indexes every 10 s.
func DefaultIndexerConfiguration() IndexerConfiguration {
	return IndexerConfiguration{Connection: esconn.DefaultConfiguration(), Setup: setup.DefaultConfiguration(),
		Interval: 10 * time.Second, QueueSize: 60, Prefix: IndexPrefix}
}

// Indexer writes rollups into spanflow-rollups-* (its own template,
// installed at start and retried before each request until it is in).
// It subscribes to an Engine; its Rollup only encodes and queues, never
// waiting for the cluster.
type Indexer struct {
	r      *reporter.Reporter
	cfg    IndexerConfiguration
	client *elasticsearch.Client
	queue  chan bulkBody
	wg     sync.WaitGroup

	mu       sync.Mutex
	last     time.Time // snapshot indexed last
	template bool      // installed

	docs, dropped, failed prometheus.Counter
}

type bulkBody struct {
	body []byte
	docs int
}

// NewIndexer builds an indexer and subscribes it to e (call before the
// engine starts).
func NewIndexer(r *reporter.Reporter, cfg IndexerConfiguration, e *Engine) (*Indexer, error) {
	if cfg.Interval <= 0 {
		return nil, errors.New("rollup-index-interval: must be positive")
	}
	if cfg.QueueSize < 1 {
		return nil, errors.New("rollup index queue: must be at least 1")
	}
	if cfg.Prefix == "" {
		return nil, errors.New("rollup index prefix: must not be empty")
	}
	if err := cfg.Setup.Validate(); err != nil {
		return nil, err
	}
	client, err := esconn.New(cfg.Connection)
	if err != nil {
		return nil, err
	}
	f := r.Factory("rollup_index")
	x := &Indexer{r: r, cfg: cfg, client: client,
		docs:    f.Counter("documents_total", "rollup documents the cluster took"),
		dropped: f.Counter("dropped_documents_total", "rollup documents dropped: the queue of bulk requests was full"),
		failed:  f.Counter("failed_documents_total", "rollup documents the cluster refused or that could not be sent"),
	}
	e.Subscribe(x)
	return x, nil
}

// Name names the indexer in lifecycle errors.
func (x *Indexer) Name() string { return "rollups index" }

// Start installs the template (a failure is logged and retried later: the
// cluster may come after the collector) and starts the sender.
func (x *Indexer) Start() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := x.install(ctx); err != nil {
		x.r.Log.Warn("cannot install the rollups index template yet; retried before each bulk request", "error", err)
	}
	q := make(chan bulkBody, x.cfg.QueueSize)
	x.mu.Lock()
	x.queue = q
	x.mu.Unlock()
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		for b := range q {
			x.send(b)
		}
	}()
	return nil
}

// Stop sends what is queued and returns.
func (x *Indexer) Stop() error {
	x.mu.Lock()
	q := x.queue
	x.queue = nil
	x.mu.Unlock()
	if q != nil {
		close(q)
		x.wg.Wait()
	}
	return nil
}

// Rollup encodes the snapshot when it is the first to end at or past a
// multiple of the interval.
func (x *Indexer) Rollup(s *Snapshot) {
	if len(s.Rows) == 0 {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	// The first snapshot at or past each multiple of the interval: a late
	// clock tick may have closed the one ending on it with the next.
	iv, t := int64(x.cfg.Interval), s.Time.UnixNano()
	if x.last.IsZero() && t%iv != 0 {
		x.last = s.Time // the first interval starts here
		return
	}
	if x.queue == nil || (!x.last.IsZero() && t/iv <= x.last.UnixNano()/iv) {
		return
	}
	x.last = s.Time
	b := bulkBody{body: AppendBulk(nil, x.cfg.Prefix, s), docs: len(s.Rows)}
	select {
	case x.queue <- b:
	default:
		x.dropped.Add(float64(b.docs))
	}
}

// AppendBulk appends the bulk request body indexing one document per row
// of s into its daily index (prefix, then YYYY.MM.DD); the ids are deterministic (scope, key and
// time), so indexing a snapshot again overwrites it.
func AppendBulk(b []byte, prefix string, s *Snapshot) []byte {
	index := prefix + s.Time.UTC().Format(setup.DailyLayout)
	ts := s.Time.UTC().Format("2006-01-02T15:04:05.000Z")
	nanos := strconv.FormatInt(s.Time.UnixNano(), 10)
	for i := range s.Rows {
		r := &s.Rows[i]
		b = append(b, `{"index":{"_index":`...)
		b = flow.AppendJSONString(b, index)
		b = append(b, `,"_id":`...)
		b = flow.AppendJSONString(b, r.Scope+"|"+r.Key+"|"+nanos)
		b = append(b, "}}\n"...)
		b = AppendDocument(b, r, ts)
		b = append(b, '\n')
	}
	return b
}

// AppendDocument appends a row's document.
func AppendDocument(b []byte, r *Row, timestamp string) []byte {
	b = append(b, `{"@timestamp":"`...)
	b = append(b, timestamp...)
	b = append(b, `","scope":`...)
	b = flow.AppendJSONString(b, r.Scope)
	b = append(b, `,"key":`...)
	b = flow.AppendJSONString(b, r.Key)
	b = append(b, `,"labels":{`...)
	first := true
	for k, v := range r.Labels {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = flow.AppendJSONString(b, k)
		b = append(b, ':')
		b = flow.AppendJSONString(b, v)
	}
	b = append(b, `},"values":{`...)
	first = true
	r.Values.Each(func(k string, v float64) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = flow.AppendJSONString(b, k)
		b = append(b, ':')
		b = strconv.AppendFloat(b, v, 'g', -1, 64)
	})
	b = append(b, '}')
	if len(r.Top) > 0 {
		b = append(b, `,"top":[`...)
		for i, t := range r.Top {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"ip":"`...)
			b = t.Addr.AppendTo(b)
			b = append(b, `","bytes_per_second":`...)
			b = strconv.AppendFloat(b, t.BytesPerSecond, 'g', -1, 64)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func (x *Indexer) send(b bulkBody) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := x.install(ctx); err != nil {
		x.failed.Add(float64(b.docs))
		x.r.Log.Warn("rollups not indexed: no index template", "error", err, "documents", b.docs)
		return
	}
	res, err := x.client.Bulk(bytes.NewReader(b.body), x.client.Bulk.WithContext(ctx),
		x.client.Bulk.WithFilterPath("errors", "items.*.status", "items.*.error.reason"))
	if err != nil {
		x.failed.Add(float64(b.docs))
		x.r.Log.Warn("rollups not indexed", "error", err, "documents", b.docs)
		return
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if res.StatusCode >= 300 {
		x.failed.Add(float64(b.docs))
		x.r.Log.Warn("rollups not indexed", "status", res.StatusCode, "answer", truncate(body), "documents", b.docs)
		return
	}
	var answer struct {
		Errors bool `json:"errors"`
		Items  []map[string]struct {
			Status int `json:"status"`
			Error  struct {
				Reason string `json:"reason"`
			} `json:"error"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		x.failed.Add(float64(b.docs))
		return
	}
	bad := 0
	reason := ""
	for _, it := range answer.Items {
		for _, r := range it {
			if r.Status >= 300 {
				bad++
				reason = r.Error.Reason
			}
		}
	}
	x.docs.Add(float64(b.docs - bad))
	if bad > 0 {
		x.failed.Add(float64(bad))
		x.r.Log.Warn("the cluster refused rollup documents", "refused", bad, "reason", reason)
	}
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

func (x *Indexer) install(ctx context.Context) error {
	x.mu.Lock()
	done := x.template
	x.mu.Unlock()
	if done {
		return nil
	}
	body, err := json.Marshal(IndexTemplate(x.cfg.Setup, x.cfg.Prefix))
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "/_index_template/"+x.cfg.templateName(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := x.client.Perform(req)
	if err != nil {
		return fmt.Errorf("install index template %s: %w", x.cfg.templateName(), err)
	}
	defer res.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode >= 300 {
		return fmt.Errorf("install index template %s: %d %s", x.cfg.templateName(), res.StatusCode, truncate(answer))
	}
	x.mu.Lock()
	x.template = true
	x.mu.Unlock()
	return nil
}

// IndexTemplate is the body of PUT _index_template/spanflow-rollups, for
// indices named prefix + day.
func IndexTemplate(c setup.Configuration, prefix string) map[string]any {
	values := map[string]any{}
	for _, v := range valueNames {
		values[v] = map[string]any{"type": "double"}
	}
	settings := map[string]any{"number_of_shards": c.Shards, "number_of_replicas": c.Replicas,
		"refresh_interval": c.RefreshInterval}
	if c.BestCompression {
		settings["codec"] = "best_compression"
	}
	mappings := map[string]any{
		"dynamic": "false",
		"dynamic_templates": []any{
			map[string]any{"labels": map[string]any{"path_match": "labels.*", "mapping": map[string]any{"type": "keyword", "ignore_above": 1024}}},
			map[string]any{"values": map[string]any{"path_match": "values.*", "mapping": map[string]any{"type": "double"}}},
		},
		"properties": map[string]any{
			"@timestamp": map[string]any{"type": "date", "format": "strict_date_optional_time||epoch_millis"},
			"scope":      map[string]any{"type": "keyword"},
			"key":        map[string]any{"type": "keyword", "ignore_above": 1024},
			"labels":     map[string]any{"type": "object", "dynamic": "true"},
			"values":     map[string]any{"type": "object", "dynamic": "true", "properties": values},
			"top": map[string]any{"type": "object", "properties": map[string]any{
				"ip":               map[string]any{"type": "ip"},
				"bytes_per_second": map[string]any{"type": "double"},
			}},
		},
	}
	return map[string]any{
		"index_patterns": []string{prefix + "*"},
		"priority":       200,
		"template":       map[string]any{"settings": map[string]any{"index": settings}, "mappings": mappings},
		"_meta":          map[string]any{"managed_by": "spanflow"},
	}
}
