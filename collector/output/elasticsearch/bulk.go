package elasticsearch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/spanflow/spanflow/collector/output/elasticsearch/setup"
	"github.com/spanflow/spanflow/internal/esconn"
	"github.com/spanflow/spanflow/internal/flow"
)

// bulkRequest is one bulk request: its NDJSON body and its documents in the
// same order (the cluster answers for them in that order). The documents
// of a request are all live or all from one spool replay (batch). A live
// request's body is the bulk lines Write encoded, where Write put them
// (lines); a replay's, or a half of a request split, is built by add
// (body).
//
// This replaces go-elasticsearch's esutil.BulkIndexer, which on this path
// cost more CPU than encoding the documents: per document it allocated a
// reader and an item, marshalled the action line through a buffer, copied
// the document twice, and decoded a response item into a map. Here the
// action line is written with the document, neither is copied before the
// socket, and an answer with no error is recognised by its first bytes and
// not decoded (docs/performance.md#elasticsearch-output).
type bulkRequest struct {
	body  []byte
	items []item
	batch *replayBatch // nil for live documents
	sent  time.Time    // when send was given it: an outage starts at the first failed request's
	// lines holds the bulk lines of the queue entries taken (live
	// documents), size their length; chunks their chunks, one reference
	// per entry, released once the request is settled.
	lines  [][]byte
	size   int
	chunks []*docChunk
}

// add appends a document and its action line.
func (r *bulkRequest) add(action string, it item) {
	b := appendAction(r.body, action, it.index, it.id)
	b = append(b, it.doc...)
	r.body = append(b, '\n')
	r.items = append(r.items, it)
}

// addLines appends a queue entry: documents whose bulk lines Write has
// written, sent from its chunk without a copy.
func (r *bulkRequest) addLines(e queueEntry) {
	r.lines = append(r.lines, e.lines)
	r.size += len(e.lines)
	r.items = append(r.items, e.items...)
	r.chunks = append(r.chunks, e.chunk)
}

// payload is the request's body: the lines of its queue entries, or the
// body add built.
func (r *bulkRequest) payload() [][]byte {
	if len(r.lines) > 0 {
		return r.lines
	}
	return [][]byte{r.body}
}

// appendAction appends a document's bulk action line.
func appendAction(b []byte, action, index string, id []byte) []byte {
	b = appendActionStart(b, action, index)
	b = flow.AppendJSONString(b, string(id))
	return append(b, "}}\n"...)
}

// appendActionStart appends an action line up to its id.
func appendActionStart(b []byte, action, index string) []byte {
	b = append(b, `{"`...)
	b = append(b, action...)
	b = append(b, `":{"_index":`...)
	b = flow.AppendJSONString(b, index)
	return append(b, `,"_id":`...)
}

// actionStarts keeps the action line's start for the day of the last
// document: the documents of a Write call mostly share it, and a daily
// index's name costs a time format and an allocation to work out.
type actionStarts struct {
	day   int64
	ok    bool
	index string
	start []byte
}

// of returns the index of a document with timestamp t, and the start of
// its action line.
func (a *actionStarts) of(l setup.Layout, action string, t time.Time) (string, []byte) {
	day := t.Unix() / 86400
	if t.Unix() < 0 && t.Unix()%86400 != 0 {
		day-- // the day a time before 1970 is in, as its date
	}
	if !a.ok || day != a.day {
		a.day, a.ok = day, true
		a.index = l.Index(t)
		a.start = appendActionStart(a.start[:0], action, a.index)
	}
	return a.index, a.start
}

func (r *bulkRequest) reset() {
	r.body = r.body[:0]
	clear(r.lines)
	r.lines = r.lines[:0]
	r.size = 0
	clear(r.chunks)
	r.chunks = r.chunks[:0]
	clear(r.items) // the documents' memory can go
	r.items = r.items[:0]
	r.batch = nil
	r.sent = time.Time{}
}

// bulkFilter keeps only what the outcome needs from a bulk answer: whether
// anything failed, and each item's status and error.
var bulkFilter = []string{"errors", "items.*.status", "items.*.error.type", "items.*.error.reason"}

// itemResult is the cluster's answer for one document.
type itemResult struct {
	Status int `json:"status"`
	Error  struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	} `json:"error"`
}

// parseBulkAnswer reads a filtered bulk answer for n documents. all is true
// when every document went in: the answer then starts `{"errors":false`
// and its items are not decoded. Otherwise results holds one entry per
// document, or err says why the answer cannot be used.
func parseBulkAnswer(b []byte, n int) (all bool, results []itemResult, err error) {
	if bytes.HasPrefix(b, []byte(`{"errors":false`)) && len(b) > len(`{"errors":false`) {
		if c := b[len(`{"errors":false`)]; c == ',' || c == '}' {
			return true, nil, nil
		}
	}
	var answer struct {
		Errors *bool                   `json:"errors"`
		Items  []map[string]itemResult `json:"items"`
	}
	if err := json.Unmarshal(b, &answer); err != nil {
		return false, nil, fmt.Errorf("unreadable bulk answer: %w", err)
	}
	if answer.Errors != nil && !*answer.Errors {
		return true, nil, nil
	}
	if len(answer.Items) != n {
		return false, nil, fmt.Errorf("bulk answer has %d items for %d documents", len(answer.Items), n)
	}
	results = make([]itemResult, n)
	for i, m := range answer.Items {
		if len(m) != 1 {
			return false, nil, fmt.Errorf("bulk answer item %d has %d operations", i, len(m))
		}
		for _, r := range m {
			results[i] = r
		}
	}
	return false, results, nil
}

var answerBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// send sends req and settles every document in it. It reports whether
// nothing reads req's documents any more: false when Stop gave up on the
// request and spools them itself.
func (o *Output) send(req *bulkRequest) (settled bool) {
	if len(req.items) == 0 {
		return true
	}
	req.sent = time.Now()
	// Live documents are tracked until the cluster answered for them, so a
	// stop that cannot wait for a hung cluster can spool them (replayed
	// documents are still in their spool segment).
	if req.batch == nil && !o.pending.add(req) {
		_ = o.toSpool(req.items)
		return true
	}
	all, results, err := o.post(req.payload(), req.items)
	if err != nil {
		o.metrics.bulkFails.Inc()
		o.limited.Warn("bulk-error", "Elasticsearch bulk request failed; its documents go to the spool", "error", err)
	}
	return o.settle(req, all, results, err)
}

// post sends one bulk body holding items and reads the answer, holding a
// slot of inflight from before the request leaves until its answer is
// read. A body refused as too large (413: the cluster's
// http.max_content_length, or a proxy's limit — nginx allows 1 MB by
// default) is split in two and each half posted, down to single documents;
// a document too large on its own is answered 413 and goes to the
// dead-letter file. Without this, such requests would be spooled and
// replayed for ever.
func (o *Output) post(body [][]byte, items []item) (all bool, results []itemResult, err error) {
	buf := answerBuffers.Get().(*bytes.Buffer)
	defer answerBuffers.Put(buf)
	buf.Reset()
	size := 0
	for _, p := range body {
		size += len(p)
	}
	o.inflight <- struct{}{}
	start := time.Now()
	answered := o.watch(start)
	res, err := o.bulk(body, size)
	if err == nil {
		_, err = buf.ReadFrom(res.Body)
		res.Body.Close()
	}
	answered()
	<-o.inflight
	o.stats.requests.Add(1)
	o.stats.ms.Add(uint64(time.Since(start).Milliseconds()))
	switch {
	case err != nil:
		return false, nil, err
	case res.StatusCode == http.StatusRequestEntityTooLarge:
		return o.split(items, size)
	case res.IsError():
		answer := buf.Bytes()
		if len(answer) > 200 {
			answer = answer[:200]
		}
		return false, nil, fmt.Errorf("bulk request: %s: %s", res.Status(), answer)
	}
	return parseBulkAnswer(buf.Bytes(), len(items))
}

// bulkQuery is the bulk request's query string.
var bulkQuery = url.Values{"filter_path": {strings.Join(bulkFilter, ",")}}.Encode()

// bulk posts a bulk request whose body is the concatenation of body's
// slices (size bytes), written to the connection from where they are:
// esapi.BulkRequest takes one reader, and the transport copies a reader
// it cannot rewind (GetBody) to retry it.
func (o *Output) bulk(body [][]byte, size int) (*esapi.Response, error) {
	req, err := http.NewRequest(http.MethodPost, "http:///_bulk?"+bulkQuery, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = int64(size)
	req.GetBody = func() (io.ReadCloser, error) { return esconn.NewSlicesReader(body), nil }
	req.Body, _ = req.GetBody()
	res, err := o.client.Perform(req)
	if err != nil {
		return nil, err
	}
	return &esapi.Response{StatusCode: res.StatusCode, Body: res.Body, Header: res.Header}, nil
}

// warnAfter is how long a bulk request may go unanswered before the output
// warns that the cluster does not answer: 5 s, or the response timeout
// when that is shorter. A 2 MiB request takes well under a second on a
// healthy node; without this the first sign of a hung cluster was the
// request failing after its timeout and retries (92 s with the defaults).
func (c Configuration) warnAfter() time.Duration {
	if t := c.Connection.Timeout; t > 0 && t < 5*time.Second {
		return t
	}
	return 5 * time.Second
}

// watch registers a bulk request sent at sent as unanswered and arms the
// warning; the returned function records its answer (or its failure).
func (o *Output) watch(sent time.Time) (answered func()) {
	id := o.unansweredReqs.add(sent)
	t := time.AfterFunc(o.config.warnAfter(), func() { o.noticeUnanswered(sent) })
	return func() {
		t.Stop()
		o.unansweredReqs.remove(id)
	}
}

// unansweredSet holds the send times of the bulk requests not answered yet.
type unansweredSet struct {
	mu   sync.Mutex
	next uint64
	sent map[uint64]time.Time
}

func (u *unansweredSet) add(t time.Time) uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.sent == nil {
		u.sent = map[uint64]time.Time{}
	}
	u.next++
	u.sent[u.next] = t
	return u.next
}

func (u *unansweredSet) remove(id uint64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.sent, id)
}

// oldest returns the send time of the oldest unanswered request (zero
// when none) and how many there are: a handful, at most Workers.
func (u *unansweredSet) oldest() (time.Time, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var first time.Time
	for _, t := range u.sent {
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	return first, len(u.sent)
}

// split posts items in two halves after a request of size bytes was
// refused as too large, and returns the outcome of each document.
func (o *Output) split(items []item, size int) (bool, []itemResult, error) {
	results := make([]itemResult, len(items))
	if len(items) == 1 {
		results[0].Status = http.StatusRequestEntityTooLarge
		results[0].Error.Type = "request_entity_too_large"
		results[0].Error.Reason = fmt.Sprintf("a bulk request with only this document (%d bytes) is too large for the cluster or a proxy before it", size)
		return false, results, nil
	}
	o.limited.Warn("too-large", "Elasticsearch, or a proxy before it, refused a bulk request as too large; sending it in halves (lower --es-flush-bytes)",
		"bytes", size, "documents", len(items))
	action := o.Layout().Action()
	half := len(items) / 2
	for _, part := range [][2]int{{0, half}, {half, len(items)}} {
		var r bulkRequest
		for _, it := range items[part[0]:part[1]] {
			r.add(action, it)
		}
		all, rs, err := o.post(r.payload(), r.items)
		if err != nil {
			return false, nil, err
		}
		for i := part[0]; i < part[1]; i++ {
			if all {
				results[i].Status = http.StatusOK
			} else {
				results[i] = rs[i-part[0]]
			}
		}
	}
	return false, results, nil
}

// settle records the outcome of each document of an answered request:
// indexed, a duplicate, to the spool (or back to its segment) for a retry,
// or to the dead-letter file. It returns false when Stop had already taken
// the request's documents to spool them.
func (o *Output) settle(req *bulkRequest, all bool, results []itemResult, whole error) bool {
	live := req.batch == nil
	if live && !o.pending.remove(req) {
		return false // Stop already spooled them
	}
	ok := 0
	var retry []item
	for i, it := range req.items {
		var r itemResult
		switch {
		case whole != nil:
		case all:
			ok++
			continue
		default:
			r = results[i]
		}
		switch {
		case whole == nil && r.Status >= 200 && r.Status < 300:
			ok++
		case whole == nil && r.Status == http.StatusConflict && o.Layout().Action() == "create":
			// A data stream already holds this id: a replay of an indexed document.
			o.metrics.documents.WithLabelValues("duplicate").Inc()
			o.stats.duplicate.Add(1)
		case retryable(r.Status, r.Error.Type, whole):
			if whole == nil {
				o.limited.Warn("item-retry", "Elasticsearch could not index a document now; spooling it",
					"status", r.Status, "type", r.Error.Type, "reason", r.Error.Reason)
			}
			retry = append(retry, it)
		default:
			o.limited.Warn("dead-letter", "Elasticsearch refused a flow document; written to the dead-letter file",
				"file", o.config.deadLetterFile(), "status", r.Status, "type", r.Error.Type, "reason", r.Error.Reason)
			// Counted once: dead_letter when it is in the file, dropped when not.
			if err := o.dead.Write(deadLetterEntry{Time: time.Now().UTC(), Index: it.index, ID: string(it.id),
				Status: r.Status, Type: r.Error.Type, Reason: r.Error.Reason, Document: it.doc}); errors.Is(err, errDeadLetterFull) {
				o.drop(dropDeadLetterFull, 1)
			} else if err != nil {
				o.drop(dropDeadLetterWrite, 1)
			} else {
				o.metrics.documents.WithLabelValues("dead_letter").Inc()
				o.stats.deadLetter.Add(1)
			}
		}
	}
	// An outage starts before its first documents are spooled, so that
	// the line ending it counts them.
	failed := whole != nil || len(retry) > 0
	if failed {
		o.failing(req.sent)
	}
	if live {
		o.metrics.indexed.Add(float64(ok))
		o.stats.indexed.Add(uint64(ok))
		_ = o.toSpool(retry)
	} else {
		o.metrics.replayed.Add(float64(ok))
		o.stats.replayed.Add(uint64(ok))
		if len(retry) > 0 {
			req.batch.mu.Lock()
			req.batch.failed = append(req.batch.failed, retry...)
			req.batch.mu.Unlock()
		}
	}
	if !failed {
		o.answering(req.sent)
	}
	return true
}

// retryable tells a document worth sending again (the cluster is
// overloaded, failing or unreachable, or its index cannot take documents
// for now) from one it refused for its content.
func retryable(status int, errType string, err error) bool {
	return err != nil || status == http.StatusTooManyRequests || status >= 500 || status == 0 || temporaryRefusals[errType]
}

// temporaryRefusals are the per-document errors that say nothing of the
// document: a state of its index or of the credentials that an operator,
// ILM or a restore ends (a write block during a shrink or a snapshot
// restore, a closed index, a role being fixed, an index to create by hand
// when auto-creation is off). Dead-lettering them would leave flows to
// re-send by hand for a state that passes; they are spooled like 429.
var temporaryRefusals = map[string]bool{
	"cluster_block_exception":   true, // 403 (429 for the disk flood stage's block)
	"index_closed_exception":    true, // 400
	"security_exception":        true, // 401, 403
	"index_not_found_exception": true, // 404, action.auto_create_index false
}

// pendingSet holds the live requests sent and not yet answered for.
type pendingSet struct {
	mu        sync.Mutex
	m         map[*bulkRequest]struct{}
	abandoned bool
}

func (p *pendingSet) add(r *bulkRequest) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.abandoned {
		return false
	}
	p.m[r] = struct{}{}
	return true
}

// remove reports whether r was pending: false once Stop gave up waiting
// and spooled its documents.
func (p *pendingSet) remove(r *bulkRequest) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.m[r]; !ok {
		return false
	}
	delete(p.m, r)
	return true
}

// docs is how many documents the pending requests hold.
func (p *pendingSet) docs() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for r := range p.m {
		n += len(r.items)
	}
	return n
}

// abandon returns the documents of every pending request and makes later
// answers for them no-ops.
func (p *pendingSet) abandon() []item {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.abandoned = true
	var out []item
	for r := range p.m {
		out = append(out, r.items...)
	}
	p.m = map[*bulkRequest]struct{}{}
	return out
}

// feed moves documents from the queue into bulk requests until Stop closes
// the queue. Feeders take turns filling (the turn token), so the first
// request leaves after one request's worth of documents; while a request is
// out, the next feeder fills another.
func (o *Output) feed() error {
	req := &bulkRequest{}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		<-o.turn
		open := true
	fill:
		for req.size < o.config.FlushBytes {
			// A Write call's documents at a time: a request may pass
			// FlushBytes by the last batch it took.
			var e queueEntry
			select {
			case e, open = <-o.queue:
			default:
				if len(req.items) == 0 {
					e, open = <-o.queue
					break
				}
				// Nothing queued: sleep until there is a quarter of a
				// request (Write rings), the first document waited long
				// enough, or Stop (the queue is closed then: the next
				// receive drains it).
				select {
				case <-o.bell:
					continue
				case <-o.stopping:
					e, open = <-o.queue
				case <-timer.C:
					break fill // the oldest document waited long enough
				}
			}
			if !open {
				break
			}
			o.queued.Add(-int64(len(e.items)))
			o.queuedBytes.Add(-int64(len(e.lines)))
			if len(req.items) == 0 {
				// From the request's first document, however it came: after
				// a full request the next one starts with a queued document.
				timer.Reset(o.config.FlushInterval)
			}
			req.addLines(e)
		}
		timer.Stop()
		o.turn <- struct{}{}
		if o.send(req) {
			for _, c := range req.chunks {
				o.release(c)
			}
		}
		req.reset()
		if !open {
			return nil
		}
	}
}

// replayItems sends a spool segment's documents, up to Workers requests
// at once, and returns those the cluster did not take for now.
func (o *Output) replayItems(ctx context.Context, items []item) []item {
	batch := &replayBatch{}
	layout := o.Layout()
	action := layout.Action()
	var wg sync.WaitGroup
	slots := make(chan struct{}, o.config.Workers)
	for i := 0; i < len(items); {
		if ctx.Err() != nil {
			// Stopping: what was not sent stays in the spool; what was is
			// indexed once thanks to its id even if replayed again.
			batch.mu.Lock()
			batch.failed = append(batch.failed, items[i:]...)
			batch.mu.Unlock()
			break
		}
		req := &bulkRequest{batch: batch}
		for i < len(items) && len(req.body) < o.config.FlushBytes {
			items[i].index = layout.Retarget(items[i].index)
			req.add(action, items[i])
			i++
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			o.send(req)
		})
	}
	wg.Wait()
	return batch.failed
}

// replayBatch collects the documents of one segment's replay that the
// cluster did not take.
type replayBatch struct {
	mu     sync.Mutex
	failed []item
}
