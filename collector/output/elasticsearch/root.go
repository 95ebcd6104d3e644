// Package elasticsearch is the collector output that indexes every flow
// document into Elasticsearch, and loses none: documents go through
// go-elasticsearch's bulk indexer with deterministic ids (a retry or replay
// never duplicates); those the cluster cannot take now (down, slow, 429,
// 5xx) go to an on-disk spool replayed in order when it is back; those it
// refuses for their content go to a dead-letter file with the reason.
//
// Data path: collector pipeline ─▶ Write (encode, id) ─▶ memory queue ─▶ bulk
// indexer ─▶ cluster; queue full, cluster failing or spool not empty ─▶ spool
// ─▶ replayer ─▶ bulk indexer.
package elasticsearch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	es "github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esutil"

	"github.com/spanflow/spanflow/collector/output/elasticsearch/setup"
	"github.com/spanflow/spanflow/internal/esconn"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/lifecycle"
	"github.com/spanflow/spanflow/internal/reporter"
)

// Output is the Elasticsearch output: a flow.Sink and a lifecycle.Component.
type Output struct {
	r       *reporter.Reporter
	limited *reporter.Limited
	config  Configuration
	client  *es.Client
	metrics *metrics
	spool   *spool
	dead    *deadLetter

	layout setup.Layout
	queue  chan item
	// Two single-worker bulk indexers per configured worker, each fed by its
	// own goroutine from the shared queue, with at most Workers requests in
	// flight (inflight): while a request is out, another indexer fills the
	// next one, which leaves the moment a slot frees — double buffering, so
	// the cluster never waits for the client to build a request. (One
	// indexer with several workers hands documents round-robin and blocks
	// on a busy worker while another sits idle: half the throughput.)
	indexers []esutil.BulkIndexer
	inflight chan struct{}
	// turn is the token of the feeder filling its indexer's next request:
	// one request is filled at a time, so the first leaves after one
	// request's worth of documents, not after one per indexer.
	turn   chan struct{}
	feeder lifecycle.Tracker // the goroutines moving the queue into the indexers
	next   atomic.Uint64     // round-robin of the replayer over the indexers
	replay lifecycle.Tracker // the goroutine replaying the spool

	encoders sync.Pool
	pending  pendingSet

	mu      sync.RWMutex // Write holds it shared; Stop exclusively to close the queue
	started bool
	stopped bool
}

var (
	_ flow.Sink           = (*Output)(nil)
	_ lifecycle.Component = (*Output)(nil)
)

// New returns the output. It opens the spool and the dead-letter file but
// does not contact the cluster: Start does.
func New(r *reporter.Reporter, c Configuration) (*Output, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	client, err := esconn.New(c.Connection)
	if err != nil {
		return nil, err
	}
	r = r.Sub("elasticsearch")
	o := &Output{
		r:       r,
		limited: reporter.NewLimited(r.Log, 10*time.Second),
		config:  c,
		client:  client,
		queue:   make(chan item, c.QueueSize),
	}
	o.encoders.New = func() any { return new(flow.Encoder) }
	o.pending.m = map[*body]struct{}{}
	o.spool, err = openSpool(c.SpoolDir, c.SpoolMaxBytes, o.dropped("spool_full"))
	if err != nil {
		return nil, fmt.Errorf("Elasticsearch output: %w", err)
	}
	if o.dead, err = openDeadLetter(c.deadLetterFile()); err != nil {
		_ = o.spool.Close()
		return nil, fmt.Errorf("Elasticsearch output: %w", err)
	}
	o.metrics = newMetrics(r, o)
	return o, nil
}

// Name names the component in lifecycle errors.
func (o *Output) Name() string { return "Elasticsearch output" }

// Layout is where documents go (known after Start).
func (o *Output) Layout() setup.Layout { return o.layout }

func (o *Output) dropped(reason string) func(int) {
	return func(n int) {
		o.metrics.dropped.WithLabelValues(reason).Add(float64(n))
		o.limited.Warn("drop-"+reason, "flow documents dropped", "reason", reason, "documents", n)
	}
}

// Start installs the template (unless told not to), then starts the bulk
// indexer, the queue feeder and the spool replayer. When setup is on and the
// template cannot be installed, Start fails: indexing without the mapping
// would create indices with wrong field types.
func (o *Output) Start() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if o.config.RunSetup {
		layout, err := setup.Install(ctx, o.client, o.config.Setup)
		if err != nil {
			return fmt.Errorf("install the Elasticsearch index template at %v (--es-setup=false skips it): %w", esconn.Redacted(o.config.Connection.URLs), err)
		}
		o.layout = layout
	} else {
		caps, err := setup.Detect(ctx, o.client)
		if err != nil {
			// The cluster may come later; the spool holds documents until then.
			o.r.Log.Warn("cannot ask Elasticsearch for its lifecycle features; assuming the configured lifecycle", "error", err)
			caps = setup.Capabilities{ILM: o.config.Setup.Lifecycle == setup.LifecycleDataStream,
				DataStreams: o.config.Setup.Lifecycle == setup.LifecycleDataStream}
		}
		if o.layout, err = setup.Choose(o.config.Setup, caps); err != nil {
			return err
		}
	}
	o.inflight = make(chan struct{}, o.config.Workers)
	o.turn = make(chan struct{}, 1)
	o.turn <- struct{}{}
	for range 2 * o.config.Workers {
		// A slot of inflight is taken when a request starts and given back
		// as soon as its answer is read (or, when there is none, at the end
		// of the flush), not after the callbacks for every item. held is
		// only touched from the indexer's one worker goroutine.
		held := false
		release := func() {
			if held {
				held = false
				<-o.inflight
			}
		}
		indexer, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{
			Client:              o.client,
			NumWorkers:          1,
			QueueSizeMultiplier: indexerQueue,
			FlushBytes:          o.config.FlushBytes,
			FlushInterval:       o.config.FlushInterval,
			OnFlushStart: func(ctx context.Context) context.Context {
				o.inflight <- struct{}{}
				held = true
				return ctx
			},
			OnFlushEnd: func(context.Context) { release() },
			// Only the per-item status is needed from the response.
			FilterPath: []string{"items.*.status", "items.*.error.type", "items.*.error.reason"},
			Decoder:    bulkDecoder{answered: release},
			OnError: func(_ context.Context, err error) {
				o.limited.Warn("bulk-error", "Elasticsearch bulk request failed; its documents go to the spool", "error", err)
			},
		})
		if err != nil {
			return fmt.Errorf("create bulk indexer: %w", err)
		}
		o.indexers = append(o.indexers, indexer)
	}
	o.mu.Lock()
	o.started = true
	o.mu.Unlock()
	for _, indexer := range o.indexers {
		o.feeder.Go(func(context.Context) error { return o.feed(indexer) })
	}
	o.replay.Go(o.replaySpool)
	o.r.Log.Info("Elasticsearch output started", "urls", esconn.Redacted(o.config.Connection.URLs), "layout", o.layout.String(),
		"spool", o.config.SpoolDir)
	return nil
}

// indexerQueue is the capacity of each bulk indexer's own queue.
const indexerQueue = 256

// docSizeHint is a typical flow document's size.
const docSizeHint = 768

// Write encodes the records and queues their documents; it never waits for
// the cluster. When the queue is full, or the spool already holds documents
// (so that replay keeps their order), documents go to the spool.
func (o *Output) Write(records []flow.Record) error {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.stopped || !o.started {
		return errors.New("Elasticsearch output is not running")
	}
	enc := o.encoders.Get().(*flow.Encoder)
	defer o.encoders.Put(enc)
	var toSpool []item
	spooling := !o.spool.Empty()
	// One buffer for the batch's documents instead of one growing slice
	// per document: this halves the output's allocations.
	buf := make([]byte, 0, len(records)*docSizeHint)
	for i := range records {
		r := &records[i]
		start := len(buf)
		buf = enc.AppendDocument(buf, r)
		it := item{index: o.layout.Index(timestampOf(r)), id: DocumentID(r), doc: buf[start:len(buf):len(buf)]}
		if !spooling {
			select {
			case o.queue <- it:
				continue
			default:
				spooling = true // the cluster is slower than the flows: spool, keep order
			}
		}
		toSpool = append(toSpool, it)
	}
	return o.toSpool(toSpool)
}

func (o *Output) toSpool(items []item) error {
	if len(items) == 0 {
		return nil
	}
	o.metrics.spooled.Add(float64(len(items)))
	if err := o.spool.Append(items); err != nil {
		o.limited.Warn("spool-error", "cannot spool flow documents", "error", err)
		return err
	}
	return nil
}

// timestampOf is the time the document's @timestamp holds.
func timestampOf(r *flow.Record) time.Time {
	if !r.End.IsZero() {
		return r.End
	}
	if !r.Received.IsZero() {
		return r.Received
	}
	return time.Now()
}

// body is a document handed to the bulk indexer; the indexer's callbacks get
// it back to know where the document came from.
type body struct {
	bytes.Reader
	it    item
	batch *replayBatch // nil for documents from the live queue
}

// replayBatch collects the outcome of one spool segment's replay.
type replayBatch struct {
	wg     sync.WaitGroup
	mu     sync.Mutex
	failed []item
}

func (o *Output) add(ctx context.Context, indexer esutil.BulkIndexer, it item, batch *replayBatch) error {
	b := &body{it: it, batch: batch}
	b.Reset(it.doc)
	// Live documents are tracked until the cluster answers for them, so a
	// stop that cannot wait for a hung cluster can spool them (replayed
	// documents are still in their spool segment).
	if batch == nil && !o.pending.add(b) {
		return errAbandoned
	}
	err := indexer.Add(ctx, esutil.BulkIndexerItem{
		Index:      it.index,
		Action:     o.layout.Action(),
		DocumentID: it.id,
		Body:       b,
		OnSuccess:  o.onSuccess,
		OnFailure:  o.onFailure,
	})
	if err != nil && batch == nil {
		o.pending.remove(b)
	}
	return err
}

var errAbandoned = errors.New("output stopped before the cluster answered")

// pendingSet holds the live documents handed to the bulk indexers and not
// yet answered for.
type pendingSet struct {
	mu        sync.Mutex
	m         map[*body]struct{}
	abandoned bool
}

func (p *pendingSet) add(b *body) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.abandoned {
		return false
	}
	p.m[b] = struct{}{}
	return true
}

// remove reports whether b was pending: false once Stop gave up waiting
// and spooled it.
func (p *pendingSet) remove(b *body) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.m[b]; !ok {
		return false
	}
	delete(p.m, b)
	return true
}

// abandon returns every pending document and makes later answers for them
// no-ops.
func (p *pendingSet) abandon() []item {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.abandoned = true
	out := make([]item, 0, len(p.m))
	for b := range p.m {
		out = append(out, b.it)
	}
	p.m = map[*body]struct{}{}
	return out
}

// feed moves documents from the queue into the bulk indexer until the queue
// is closed by Stop.
func (o *Output) feed(indexer esutil.BulkIndexer) error {
	for {
		<-o.turn
		// About one request's worth (with its action lines), then the
		// next feeder's turn.
		for filled := 0; filled < o.config.FlushBytes; {
			it, ok := <-o.queue
			if !ok {
				o.turn <- struct{}{}
				return nil
			}
			filled += len(it.doc) + actionLineSize
			// Background: the indexer must take every queued document;
			// Stop closes the queue instead of cancelling.
			if err := o.add(context.Background(), indexer, it, nil); err != nil {
				_ = o.toSpool([]item{it})
			}
		}
		o.turn <- struct{}{}
	}
}

// actionLineSize is about the size of a document's action line in a bulk
// request (index name, 22-character id).
const actionLineSize = 80

func (o *Output) onSuccess(_ context.Context, bi esutil.BulkIndexerItem, _ esutil.BulkIndexerResponseItem) {
	b := bi.Body.(*body)
	if b.batch != nil {
		o.metrics.replayed.Inc()
		b.batch.wg.Done()
		return
	}
	if o.pending.remove(b) {
		o.metrics.indexed.Inc()
	}
}

// retryable tells a document worth sending again (the cluster is
// overloaded, failing or unreachable) from one it refused for its content.
func retryable(status int, err error) bool {
	return err != nil || status == http.StatusTooManyRequests || status >= 500 || status == 0
}

func (o *Output) onFailure(_ context.Context, bi esutil.BulkIndexerItem, res esutil.BulkIndexerResponseItem, err error) {
	b := bi.Body.(*body)
	if b.batch != nil {
		defer b.batch.wg.Done()
	} else if !o.pending.remove(b) {
		return // Stop already spooled it
	}
	switch {
	case err == nil && res.Status == http.StatusConflict && bi.Action == "create":
		// A data stream already holds this id: a replay of an indexed document.
		o.metrics.documents.WithLabelValues("duplicate").Inc()
	case retryable(res.Status, err):
		if err == nil {
			o.limited.Warn("item-retry", "Elasticsearch could not index a document now; spooling it",
				"status", res.Status, "type", res.Error.Type, "reason", res.Error.Reason)
		} else {
			o.metrics.bulkFails.Inc()
		}
		if b.batch != nil {
			b.batch.mu.Lock()
			b.batch.failed = append(b.batch.failed, b.it)
			b.batch.mu.Unlock()
			return
		}
		_ = o.toSpool([]item{b.it})
	default:
		o.metrics.documents.WithLabelValues("dead_letter").Inc()
		o.limited.Warn("dead-letter", "Elasticsearch refused a flow document; written to the dead-letter file",
			"file", o.config.deadLetterFile(), "status", res.Status, "type", res.Error.Type, "reason", res.Error.Reason)
		if err := o.dead.Write(deadLetterEntry{Time: time.Now().UTC(), Index: b.it.index, ID: b.it.id,
			Status: res.Status, Type: res.Error.Type, Reason: res.Error.Reason, Document: b.it.doc}); err != nil {
			o.dropped("dead_letter_write")(1)
		}
	}
}

// replaySpool replays the spool's segments oldest first whenever the
// cluster answers, backing off while it does not.
func (o *Output) replaySpool(ctx context.Context) error {
	backoff := time.Duration(0)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		if backoff > 0 {
			timer.Reset(backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-timer.C:
			}
		}
		seg := o.spool.Take()
		if seg == nil {
			backoff = 0
			select {
			case <-ctx.Done():
				return nil
			case <-o.spool.notify:
				continue
			}
		}
		ok := o.replaySegment(ctx, seg)
		if ok {
			backoff = 0
			continue
		}
		backoff = min(max(2*backoff, time.Second), o.config.ReplayBackoffMax)
	}
}

// replaySegment sends one segment's documents through the bulk indexer and
// waits for every outcome; documents still failing stay in the segment.
func (o *Output) replaySegment(ctx context.Context, seg *segment) bool {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := esconn.Ping(pctx, o.client)
	cancel()
	if err != nil {
		o.metrics.replays.WithLabelValues("unreachable").Inc()
		o.spool.Release(seg)
		return false
	}
	items, bad, err := o.spool.Read(seg)
	if err != nil {
		o.limited.Warn("spool-read", "cannot read spool segment", "error", err)
		o.spool.Release(seg)
		return false
	}
	if bad > 0 {
		o.dropped("spool_corrupt")(bad)
	}
	batch := &replayBatch{}
	for i, it := range items {
		if ctx.Err() != nil {
			// Stopping: what was not handed over stays in the spool; what
			// was is indexed once thanks to its id even if replayed again.
			batch.wg.Wait()
			batch.failed = append(batch.failed, items[i:]...)
			break
		}
		batch.wg.Add(1)
		indexer := o.indexers[o.next.Add(1)%uint64(len(o.indexers))]
		if err := o.add(context.Background(), indexer, it, batch); err != nil {
			batch.wg.Done()
			batch.failed = append(batch.failed, items[i:]...)
			break
		}
	}
	for _, indexer := range o.indexers {
		_ = indexer.Flush(context.Background())
	}
	batch.wg.Wait()
	if len(batch.failed) == 0 {
		o.metrics.replays.WithLabelValues("complete").Inc()
		if err := o.spool.Done(seg, nil); err != nil {
			o.limited.Warn("spool-remove", "cannot remove replayed spool segment", "error", err)
		}
		return true
	}
	o.metrics.replays.WithLabelValues("partial").Inc()
	if err := o.spool.Done(seg, sortedLike(items, batch.failed)); err != nil {
		o.limited.Warn("spool-rewrite", "cannot rewrite spool segment", "error", err)
	}
	return false
}

// sortedLike returns the failed items in the order they had in the segment
// (bulk workers report them out of order).
func sortedLike(items, failed []item) []item {
	if len(failed) == len(items) {
		return items
	}
	ids := make(map[string]struct{}, len(failed))
	for _, it := range failed {
		ids[it.id] = struct{}{}
	}
	out := make([]item, 0, len(failed))
	for _, it := range items {
		if _, ok := ids[it.id]; ok {
			out = append(out, it)
		}
	}
	return out
}

// Stop drains what is in memory: the queue goes to the bulk indexer, which
// flushes; what the cluster does not take goes to the spool, whose files
// the next start replays. Stop returns once everything is either indexed or
// on disk.
func (o *Output) Stop() error {
	o.mu.Lock()
	if o.stopped || !o.started {
		o.stopped = true
		o.mu.Unlock()
		return errors.Join(o.spool.Close(), o.dead.Close())
	}
	o.stopped = true
	close(o.queue)
	o.mu.Unlock()
	deadline := time.NewTimer(o.config.DrainTimeout)
	defer deadline.Stop()
	// The replayer stops between documents; a segment it was replaying
	// stays on disk until the cluster answered for all of it.
	drained := make(chan error, 1)
	go func() {
		_ = o.replay.Stop()
		_ = o.feeder.Wait()
		// Close flushes every worker, all at once (one after the other would
		// add a request's latency per indexer); failures call onFailure,
		// which spools.
		errs := make([]error, len(o.indexers))
		var wg sync.WaitGroup
		for i, indexer := range o.indexers {
			wg.Go(func() { errs[i] = indexer.Close(context.Background()) })
		}
		wg.Wait()
		drained <- errors.Join(errs...)
	}()
	var err error
	select {
	case err = <-drained:
	case <-deadline.C:
		// The cluster hangs: persist everything it has not answered for.
		// Documents it indexed meanwhile are replayed onto themselves
		// (same ids), so nothing is lost and nothing doubles.
		var left []item
		for it := range o.queue {
			left = append(left, it)
		}
		left = append(left, o.pending.abandon()...)
		err = o.toSpool(left)
		o.r.Log.Warn("Elasticsearch did not take the last documents in time; spooled them for the next start",
			"documents", len(left), "drain_timeout", o.config.DrainTimeout)
	}
	var added, flushed, failed, requests, ms uint64
	for _, indexer := range o.indexers {
		st := indexer.Stats()
		added, flushed, failed = added+st.NumAdded, flushed+st.NumFlushed, failed+st.NumFailed
		requests, ms = requests+st.NumRequests, ms+st.FlushedMs
	}
	docs, _ := o.spool.Stats()
	o.r.Log.Info("Elasticsearch output stopped", "added", added, "indexed", flushed,
		"failed", failed, "bulk_requests", requests, "bulk_ms", ms, "spooled_waiting", docs)
	return errors.Join(err, o.spool.Close(), o.dead.Close())
}
