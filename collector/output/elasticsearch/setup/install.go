package setup

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/spanflow/spanflow/internal/esconn"
)

// Capabilities are what the cluster offers for the lifecycle.
type Capabilities struct {
	ILM         bool
	DataStreams bool
}

// Layout says where flow documents go.
type Layout struct {
	// DataStream is true when documents are written to the data stream
	// (with op_type create), false for daily indices.
	DataStream bool
}

// Index is the index (or data stream) a document with timestamp t goes to.
func (l Layout) Index(t time.Time) string {
	if l.DataStream {
		return DataStream
	}
	return DailyPrefix + t.UTC().Format(DailyLayout)
}

// Action is the bulk action for a document with a deterministic id: a data
// stream accepts only create (a replayed document then answers 409, which
// means "already there"); a daily index takes index, which overwrites the
// same document with itself.
func (l Layout) Action() string {
	if l.DataStream {
		return "create"
	}
	return "index"
}

// Retarget is where a document spooled for index goes under this layout: a
// document spooled for a daily index while the cluster's layout was not
// known yet (it did not answer at start) goes to the data stream when the
// cluster has one.
func (l Layout) Retarget(index string) string {
	if l.DataStream && index != DataStream && strings.HasPrefix(index, DailyPrefix) {
		return DataStream
	}
	return index
}

func (l Layout) String() string {
	if l.DataStream {
		return "data stream " + DataStream + " with ILM policy " + PolicyName
	}
	return "daily indices " + DailyPrefix + "YYYY.MM.DD"
}

// do sends one request and returns the status and body. A status >= 400 is
// not an error here; callers decide.
func do(ctx context.Context, client *elasticsearch.Client, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := client.Perform(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	return res.StatusCode, b, err
}

// reason extracts Elasticsearch's error reason from a response body, its
// root causes first.
func reason(status int, body []byte) string {
	return esconn.StatusError(strconv.Itoa(status), body).Error()
}

// Detect asks the cluster whether it has ILM and data streams: a cluster
// without a module answers its endpoints with 400/404/405 ("no handler").
func Detect(ctx context.Context, client *elasticsearch.Client) (Capabilities, error) {
	var c Capabilities
	status, body, err := do(ctx, client, http.MethodGet, "/_ilm/status", nil)
	if err != nil {
		return c, fmt.Errorf("ask Elasticsearch for ILM: %w", err)
	}
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		return c, fmt.Errorf("ask Elasticsearch for ILM: %s", reason(status, body))
	}
	c.ILM = status == http.StatusOK
	status, body, err = do(ctx, client, http.MethodGet, "/_data_stream/"+url.PathEscape(DataStream), nil)
	if err != nil {
		return c, fmt.Errorf("ask Elasticsearch for data streams: %w", err)
	}
	// 404 with index_not_found/resource_not_found means the API exists but
	// the stream does not yet; a cluster without the module treats
	// "_data_stream" as an index name and answers 400.
	c.DataStreams = status == http.StatusOK || (status == http.StatusNotFound && bytes.Contains(body, []byte("not_found")))
	return c, nil
}

// Choose picks the layout for the configured lifecycle and the cluster's
// capabilities.
func Choose(c Configuration, caps Capabilities) (Layout, error) {
	switch c.Lifecycle {
	case LifecycleDaily:
		return Layout{}, nil
	case LifecycleDataStream:
		if !caps.ILM || !caps.DataStreams {
			return Layout{}, fmt.Errorf("es lifecycle data-stream needs ILM and data streams, and this cluster has ILM=%t data streams=%t: use --es-lifecycle daily", caps.ILM, caps.DataStreams)
		}
		return Layout{DataStream: true}, nil
	}
	return Layout{DataStream: caps.ILM && caps.DataStreams}, nil
}

// Install puts the ILM policy (data-stream layout) and the index template on
// the cluster and, for a data stream, creates it. It is idempotent: run it at
// every collector start.
func Install(ctx context.Context, client *elasticsearch.Client, c Configuration) (Layout, error) {
	if err := c.Validate(); err != nil {
		return Layout{}, err
	}
	caps, err := Detect(ctx, client)
	if err != nil {
		return Layout{}, err
	}
	layout, err := Choose(c, caps)
	if err != nil {
		return Layout{}, err
	}
	if layout.DataStream {
		status, body, err := do(ctx, client, http.MethodPut, "/_ilm/policy/"+PolicyName, ILMPolicy(c))
		if err != nil {
			return layout, fmt.Errorf("install ILM policy %s: %w", PolicyName, err)
		}
		if status >= 300 {
			return layout, fmt.Errorf("install ILM policy %s: %s", PolicyName, reason(status, body))
		}
	}
	tmpl, err := IndexTemplate(c, layout.DataStream)
	if err != nil {
		return layout, err
	}
	status, body, err := do(ctx, client, http.MethodPut, "/_index_template/"+TemplateName, tmpl)
	if err != nil {
		return layout, fmt.Errorf("install index template %s: %w", TemplateName, err)
	}
	if status >= 300 {
		return layout, fmt.Errorf("install index template %s: %s", TemplateName, reason(status, body))
	}
	if layout.DataStream {
		status, body, err := do(ctx, client, http.MethodPut, "/_data_stream/"+DataStream, nil)
		if err != nil {
			return layout, fmt.Errorf("create data stream %s: %w", DataStream, err)
		}
		if status >= 300 && !bytes.Contains(body, []byte("already_exists")) {
			return layout, fmt.Errorf("create data stream %s: %s", DataStream, reason(status, body))
		}
	}
	return layout, nil
}

// DailyIndices lists the daily indices on the cluster with their day (UTC):
// those named prefix+YYYY.MM.DD for each prefix given, or the flow indices
// (DailyPrefix) when none is.
func DailyIndices(ctx context.Context, client *elasticsearch.Client, prefixes ...string) (map[string]time.Time, error) {
	if len(prefixes) == 0 {
		prefixes = []string{DailyPrefix}
	}
	out := map[string]time.Time{}
	for _, prefix := range prefixes {
		pattern := prefix + "*"
		status, body, err := do(ctx, client, http.MethodGet,
			"/_cat/indices/"+pattern+"?format=json&h=index&expand_wildcards=open,closed", nil)
		if err != nil {
			return nil, fmt.Errorf("list %s indices: %w", pattern, err)
		}
		if status == http.StatusNotFound {
			continue
		}
		if status >= 300 {
			return nil, fmt.Errorf("list %s indices: %s", pattern, reason(status, body))
		}
		var rows []struct {
			Index string `json:"index"`
		}
		if err := json.Unmarshal(body, &rows); err != nil {
			return nil, fmt.Errorf("list %s indices: %w", pattern, err)
		}
		for _, r := range rows {
			day, ok := strings.CutPrefix(r.Index, prefix)
			if !ok {
				continue
			}
			t, err := time.Parse(DailyLayout, day)
			if err != nil {
				continue
			}
			out[r.Index] = t
		}
	}
	return out, nil
}

// Expired returns, sorted, the daily indices whose whole day ended more than
// olderThan before now.
func Expired(indices map[string]time.Time, olderThan time.Duration, now time.Time) []string {
	cutoff := now.Add(-olderThan)
	var out []string
	for name, day := range indices {
		if !day.Add(24 * time.Hour).After(cutoff) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Prune deletes the daily indices older than olderThan and returns their
// names: those of each prefix given (spanflow-flows-, spanflow-rollups-,
// spanflow-alerts-), or the flow indices when none is. With dryRun it only
// returns them.
func Prune(ctx context.Context, client *elasticsearch.Client, olderThan time.Duration, now time.Time, dryRun bool, prefixes ...string) ([]string, error) {
	indices, err := DailyIndices(ctx, client, prefixes...)
	if err != nil {
		return nil, err
	}
	expired := Expired(indices, olderThan, now)
	if dryRun {
		return expired, nil
	}
	var deleted []string
	// One request per index: a long comma list could exceed the URL limit,
	// and a failure names the index.
	for _, name := range expired {
		status, body, err := do(ctx, client, http.MethodDelete, "/"+url.PathEscape(name), nil)
		if err != nil {
			return deleted, fmt.Errorf("delete index %s: %w", name, err)
		}
		if status >= 300 && status != http.StatusNotFound {
			return deleted, fmt.Errorf("delete index %s: %s", name, reason(status, body))
		}
		deleted = append(deleted, name)
	}
	return deleted, nil
}
