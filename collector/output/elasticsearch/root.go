// Package elasticsearch is the collector output that indexes every flow
// document into Elasticsearch, and loses none: documents go in bulk
// requests with deterministic ids (a retry or replay never duplicates);
// those the cluster cannot take now (down, slow, 429, 5xx) go to an
// on-disk spool replayed in order when it is back; those it refuses for
// their content go to a dead-letter file with the reason.
//
// Data path: collector pipeline ─▶ Write (encode, id) ─▶ memory queue ─▶
// feeders (bulk requests) ─▶ cluster; queue full, cluster failing or spool
// not empty ─▶ spool ─▶ replayer (bulk requests).
package elasticsearch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	es "github.com/elastic/go-elasticsearch/v8"

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
	slow    *reporter.Limited // once a minute: an outage may last hours
	config  Configuration
	client  *es.Client
	metrics *metrics
	spool   *spool
	dead    *deadLetter

	// layout is where documents go; until the template is installed
	// (ready), a provisional one for the documents spooled meanwhile.
	layout atomic.Pointer[setup.Layout]
	ready  atomic.Bool
	// queue holds the documents of Write calls, a call's worth per
	// entry (one channel operation and one feeder wake-up per batch, not
	// per document); queued counts its documents against QueueSize.
	queue  chan queueEntry
	queued atomic.Int64
	chunks sync.Pool // of *docChunk
	// A feeder filling a request sleeps until the queue holds a quarter of
	// a request or half its bound (Write rings bell), the request's first
	// document has waited FlushInterval, or Stop closes stopping; not until
	// each Write call's documents, which woke it (a thread wake-up) once
	// per call.
	queuedBytes atomic.Int64
	bell        chan struct{}
	stopping    chan struct{}
	// 2×Workers feeders fill bulk requests from the shared queue, one at a
	// time (turn), with at most Workers requests in flight (inflight):
	// while a request is out, another feeder fills the next, which leaves
	// the moment a slot frees — double buffering, so the cluster never
	// waits for the client to build a request.
	inflight chan struct{}
	turn     chan struct{}
	feeder   lifecycle.Tracker // the feeders
	replay   lifecycle.Tracker // the goroutine replaying the spool
	// What happened to each document, for the stop summary (the
	// documents_total and documents_dropped_total metrics count the same).
	stats struct {
		requests, ms                   atomic.Uint64
		indexed, duplicate, deadLetter atomic.Uint64
		spooled, replayed, lost        atomic.Uint64 // the outage line reports their growth
		spooledAtStart                 int64
	}
	unansweredReqs unansweredSet // bulk requests sent and not answered yet
	outage         outage

	writers sync.Pool // of *docWriter
	pending pendingSet

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
		r:        r,
		limited:  reporter.NewLimited(r.Log, 10*time.Second),
		slow:     reporter.NewLimited(r.Log, time.Minute),
		config:   c,
		client:   client,
		queue:    make(chan queueEntry, c.QueueSize), // every entry holds a document at least
		bell:     make(chan struct{}, 1),
		stopping: make(chan struct{}),
	}
	o.writers.New = func() any { return new(docWriter) }
	o.pending.m = map[*bulkRequest]struct{}{}
	o.spool, err = openSpool(c.SpoolDir, c.SpoolMaxBytes, o.drop)
	if errors.Is(err, ErrSpoolInUse) {
		return nil, fmt.Errorf("Elasticsearch output: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("Elasticsearch output: %w: give a writable directory with --es-spool-dir", err)
	}
	o.spool.onSyncError = func(err error) {
		o.limited.Warn("spool-sync", "a spool segment could not be synced to disk: its documents are still replayed, but a power loss before then would lose them; check the disk of --es-spool-dir",
			"error", err)
	}
	if o.dead, err = openDeadLetter(c.deadLetterFile(), c.DeadLetterMaxBytes); err != nil {
		_ = o.spool.Close()
		return nil, fmt.Errorf("Elasticsearch output: %w", err)
	}
	o.metrics = newMetrics(r, o)
	return o, nil
}

// Name names the component in lifecycle errors.
func (o *Output) Name() string { return "Elasticsearch output" }

// Layout is where documents go (known after Start, and final once the
// cluster answered).
func (o *Output) Layout() setup.Layout {
	if l := o.layout.Load(); l != nil {
		return *l
	}
	return setup.Layout{}
}

// dropWhy explains each loss in the log.
var dropWhy = map[dropReason]string{
	dropSpoolFull:       "the spool reached --es-spool-max-bytes: its oldest documents were deleted",
	dropDiskFull:        "the spool's filesystem is full: its oldest documents were deleted (or the newest refused when nothing older was left)",
	dropSpoolWrite:      "the spool could not be written",
	dropSpoolCorrupt:    "torn or malformed lines in a spool segment",
	dropDeadLetterWrite: "the dead-letter file could not be written",
	dropDeadLetterFull:  "the dead-letter file reached --es-dead-letter-max-bytes: move it away (a new one is started) or raise the bound",
}

// drop counts n lost documents under reason, and logs it, rate-limited.
func (o *Output) drop(reason dropReason, n int) {
	if n == 0 {
		return
	}
	o.metrics.dropped.WithLabelValues(string(reason)).Add(float64(n))
	o.stats.lost.Add(uint64(n))
	o.limited.WarnCount("drop-"+string(reason), "flow documents dropped", "documents", int64(n), "reason", reason, "why", dropWhy[reason])
}

// startWait bounds how long Start waits for the cluster's first answer.
// The collector opens its listeners once its outputs started, so every
// second Start waits for a cluster that accepts connections and answers
// nothing (a stopped process, a long garbage collection) loses that
// second's flows; a healthy cluster answers its health in milliseconds.
const startWait = 2 * time.Second

// Start installs the template (unless told not to: then it asks the
// cluster for its layout), then starts the feeders and the spool replayer.
// When the cluster does not answer within startWait (refused, no answer,
// 429/5xx), Start still starts: documents go to the spool, and the
// replayer installs the template (or asks the layout) once the cluster
// answers, before any document is indexed (indexing without the mapping
// would create indices with wrong field types). A cluster that answers and
// refuses the template (credentials, privileges, lifecycle), or a server
// that answers and is not Elasticsearch, stops the start: waiting would
// not cure it.
func (o *Output) Start() error {
	o.stats.spooledAtStart, _ = o.spool.Stats()
	urls := esconn.Redacted(o.config.Connection.URLs)
	begin := time.Now()
	pctx, pcancel := context.WithTimeout(context.Background(), startWait)
	err := esconn.Ping(pctx, o.client)
	pcancel()
	if err == nil || !esconn.Unreachable(err) {
		// It answered: what follows is answered quickly too, unless the
		// cluster stops answering right now (then: as if it had not).
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = o.prepare(ctx)
		timedOut := ctx.Err() != nil
		cancel()
		if err != nil && !timedOut {
			return err
		}
	}
	if err != nil {
		// The documents spooled meanwhile go, as named now, where a
		// cluster of unknown capabilities would take them;
		// setup.Layout.Retarget moves them at replay.
		o.layout.Store(&setup.Layout{DataStream: o.config.Setup.Lifecycle == setup.LifecycleDataStream})
		o.failing(time.Now())
		then := "the index template is installed before any is indexed"
		if !o.config.RunSetup {
			then = "its lifecycle features are asked before any is indexed"
		}
		o.r.Log.Warn("Elasticsearch does not answer; started anyway: flow documents go to the spool until it does, and "+then,
			"urls", urls, "spool", o.config.SpoolDir, "waited", time.Since(begin).Round(time.Millisecond), "error", err)
	}
	o.inflight = make(chan struct{}, o.config.Workers)
	o.turn = make(chan struct{}, 1)
	o.turn <- struct{}{}
	o.mu.Lock()
	o.started = true
	o.mu.Unlock()
	for range 2 * o.config.Workers {
		o.feeder.Go(func(context.Context) error { return o.feed() })
	}
	o.replay.Go(o.replaySpool)
	layout := o.Layout().String()
	if !o.ready.Load() {
		layout = "known once the cluster answers"
	}
	o.r.Log.Info("Elasticsearch output started", "urls", urls, "layout", layout, "spool", o.config.SpoolDir)
	if o.stats.spooledAtStart > 0 {
		o.r.Log.Info("the spool holds flow documents from an earlier run; replaying them once the cluster takes them",
			"documents", o.stats.spooledAtStart, "spool", o.config.SpoolDir)
	}
	return nil
}

// prepare readies the output on a cluster that answers: it installs the
// template, or with --es-setup=false asks which layout the cluster has.
func (o *Output) prepare(ctx context.Context) error {
	urls := esconn.Redacted(o.config.Connection.URLs)
	if o.config.RunSetup {
		layout, err := setup.Install(ctx, o.client, o.config.Setup)
		if err != nil {
			return fmt.Errorf("install the Elasticsearch index template at %v (--es-setup=false skips it): %w", urls, err)
		}
		o.layout.Store(&layout)
		o.ready.Store(true)
		return nil
	}
	caps, err := setup.Detect(ctx, o.client)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		// Answered, and refused (a role without the privilege): the
		// configured lifecycle it is.
		o.r.Log.Warn("cannot ask Elasticsearch for its lifecycle features; assuming the configured lifecycle", "error", err)
		caps = setup.Capabilities{ILM: o.config.Setup.Lifecycle == setup.LifecycleDataStream,
			DataStreams: o.config.Setup.Lifecycle == setup.LifecycleDataStream}
	}
	layout, err := setup.Choose(o.config.Setup, caps)
	if err != nil {
		return err
	}
	o.layout.Store(&layout)
	o.ready.Store(true)
	return nil
}

// installTemplate installs the template (and lifecycle) on a cluster that
// answers again; the output is then ready to index.
func (o *Output) installTemplate(ctx context.Context, why string) bool {
	ictx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	layout, err := setup.Install(ictx, o.client, o.config.Setup)
	if err != nil {
		o.limited.Warn("install-template", "cannot install the Elasticsearch index template yet; flow documents stay in the spool",
			"error", err)
		return false
	}
	o.layout.Store(&layout)
	o.ready.Store(true)
	docs, _ := o.spool.Stats()
	o.r.Log.Info(why, "template", setup.TemplateName, "layout", layout.String(), "spooled_documents", docs)
	return true
}

// askLayout asks a cluster that answers again which layout it has
// (--es-setup=false, when it did not answer at start).
func (o *Output) askLayout(ctx context.Context) bool {
	actx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := o.prepare(actx); err != nil {
		o.limited.Warn("ask-layout", "cannot ask Elasticsearch for its layout yet; flow documents stay in the spool", "error", err)
		return false
	}
	docs, _ := o.spool.Stats()
	o.r.Log.Info("Elasticsearch answers: asked its layout; replaying the spool", "layout", o.Layout().String(), "spooled_documents", docs)
	return true
}

// templateReady makes sure the index template is on the cluster before
// spooled documents go: a cluster rebuilt during an outage lost it, and the
// first document would create its index with default mappings.
func (o *Output) templateReady(ctx context.Context) bool {
	if !o.ready.Load() {
		if o.config.RunSetup {
			return o.installTemplate(ctx, "Elasticsearch answers: installed the index template; replaying the spool")
		}
		if !o.askLayout(ctx) {
			return false
		}
	}
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ok, err := setup.TemplateInstalled(tctx, o.client)
	cancel()
	switch {
	case errors.Is(err, setup.ErrNoPrivilege):
		// A least-privilege role without manage_index_templates (possible
		// with --es-setup=false) cannot look: replay without the check.
		o.slow.Warn("template-check-privilege", "cannot check that the Elasticsearch index template is installed; replaying without the check",
			"error", err)
		return true
	case err != nil:
		o.limited.Warn("template-check", "cannot check the Elasticsearch index template; flow documents stay in the spool", "error", err)
		return false
	case ok:
		return true
	case !o.config.RunSetup:
		o.limited.Warn("template-missing", "the Elasticsearch index template is missing and --es-setup=false: "+
			"spooled flow documents wait until 'spanflow es setup' installs it", "template", setup.TemplateName)
		return false
	}
	return o.installTemplate(ctx, "the Elasticsearch index template was missing (a rebuilt cluster?): installed it again before replaying the spool")
}

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
	w := o.writers.Get().(*docWriter)
	defer o.writers.Put(w)
	// Until the template is installed, everything waits in the spool.
	spooling := !o.ready.Load() || !o.spool.Empty()
	layout := o.Layout()
	// The batch's documents go in one pooled buffer, not a slice per
	// document nor a buffer per call: allocating a call's buffer, and
	// collecting it, cost a sixth of the process (docs/performance.md).
	c := o.getChunk(len(records))
	defer o.release(c) // Write's own reference
	// Each document is written with its bulk action line before it and a
	// newline after, so that a feeder sends these bytes as they are
	// (live documents only come once the layout is final).
	action := layout.Action()
	buf, offs := c.buf[:0], c.offs[:0]
	var starts actionStarts
	o.countBeyondLong(records)
	for i := range records {
		r := &records[i]
		index, start := starts.of(layout, action, timestampOf(r))
		offs = append(offs, int32(len(buf)))
		buf = append(buf, start...)
		buf = append(buf, '"')
		buf = w.ids.appendID(buf, r) // base64url: no escape needed
		buf = append(buf, "\"}}\n"...)
		offs = append(offs, int32(len(buf)))
		buf = w.enc.AppendDocument(buf, r)
		buf = append(buf, '\n')
		c.items[i] = item{index: index}
	}
	offs = append(offs, int32(len(buf)))
	items := c.items[:len(records)]
	for i := range items {
		// The id ends the action line, before its `"}}` and newline.
		doc, end := int(offs[2*i+1]), int(offs[2*i+2])-1 // the newline
		items[i].id = buf[doc-4-idLen : doc-4 : doc-4]
		items[i].doc = buf[doc:end:end]
	}
	c.buf, c.offs, c.items = buf, offs, items
	if spooling {
		return o.toSpool(items)
	}
	// Queued a queue's worth at a time: what does not fit, and everything
	// after it (to keep the order), goes to the spool.
	for len(items) > 0 {
		n := min(len(items), o.config.QueueSize)
		if o.queued.Add(int64(n)) > int64(o.config.QueueSize) {
			o.queued.Add(-int64(n)) // the cluster is slower than the flows: spool, keep order
			return o.toSpool(items)
		}
		// Never blocks: the channel has room for QueueSize entries of a
		// document at least, and queued holds at most QueueSize.
		c.refs.Add(1)
		first := len(c.items) - len(items)
		lines := buf[offs[2*first]:offs[2*(first+n)]]
		o.queue <- queueEntry{items: items[:n:n], lines: lines, chunk: c}
		if o.queuedBytes.Add(int64(len(lines))) >= int64(o.config.FlushBytes/4) || o.queued.Load() >= int64(o.config.QueueSize/2) {
			select {
			case o.bell <- struct{}{}:
			default: // rung already
			}
		}
		items = items[n:]
	}
	return nil
}

// countBeyondLong counts, and says in the log, the documents holding a
// number the mapping's long cannot (ignore_malformed keeps it in _source):
// before, Elasticsearch refused them, whole, to the dead-letter file.
func (o *Output) countBeyondLong(records []flow.Record) {
	n, last := 0, -1
	for i := range records {
		if records[i].BeyondLong() {
			n, last = n+1, i
		}
	}
	if n == 0 {
		return
	}
	o.metrics.beyondLong.Add(float64(n))
	o.limited.WarnCount("beyond-long", "flow documents hold a counter past 2^63-1 (the exporter's bug): indexed, the value kept in _source "+
		"and the field listed in _ignored, neither searched nor summed", "documents", int64(n), "exporter", records[last].ObserverIP)
}

// docChunk holds the documents of one Write call: their bulk lines (action
// and document) in one buffer, and their items, whose doc slices point
// into it; offs holds where each item's action and document start, and
// the end. Chunks are pooled. refs counts Write's own reference and each
// queue entry made of the chunk; the last to let go puts it back, once
// nothing can read its documents any more: their requests are settled
// (indexed, spooled or dead-lettered, each of which copies what it keeps).
type docChunk struct {
	buf   []byte
	offs  []int32
	items []item
	refs  atomic.Int32
}

// queueEntry is a Write call's documents (or a queue's worth of them),
// their bulk lines, and the chunk they are in.
type queueEntry struct {
	items []item
	lines []byte
	chunk *docChunk
}

// maxPooledChunk bounds the buffer a pooled chunk keeps: a call's worth of
// documents is usually well under it; a larger buffer is left to the
// garbage collector.
const maxPooledChunk = 8 << 20

// getChunk returns a chunk with room for n documents and one reference.
func (o *Output) getChunk(n int) *docChunk {
	c, _ := o.chunks.Get().(*docChunk)
	if c == nil {
		c = new(docChunk)
	}
	if cap(c.buf) < n*docSizeHint {
		c.buf = make([]byte, 0, n*docSizeHint)
	}
	if cap(c.items) < n {
		c.items = make([]item, n)
		c.offs = make([]int32, 0, 2*n+1)
	}
	c.items = c.items[:n]
	c.refs.Store(1)
	return c
}

// release drops one reference to c, and pools it when it was the last.
func (o *Output) release(c *docChunk) {
	if c.refs.Add(-1) != 0 {
		return
	}
	clear(c.items) // the index and id strings can go
	if cap(c.buf) > maxPooledChunk {
		return
	}
	o.chunks.Put(c)
}

func (o *Output) toSpool(items []item) error {
	if len(items) == 0 {
		return nil
	}
	// Counted as handed to the spool; those it could not keep are
	// counted as dropped, with the reason.
	o.metrics.spooled.Add(float64(len(items)))
	o.stats.spooled.Add(uint64(len(items)))
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
		if o.spool.Empty() && o.ready.Load() {
			backoff = 0
			o.endOutage()
			select {
			case <-ctx.Done():
				return nil
			case <-o.spool.notify:
				continue
			}
		}
		// Health first, then take the segment: a segment is busy (and so
		// kept from the bound's and the full disk's drops) only while its
		// documents are on their way.
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := esconn.Ping(pctx, o.client)
		cancel()
		if err != nil {
			o.metrics.replays.WithLabelValues("unreachable").Inc()
			backoff = min(max(2*backoff, time.Second), o.config.ReplayBackoffMax)
			docs, _ := o.spool.Stats()
			// Each reason has its own key: a change of reason is said at once.
			key, msg := "unreachable", "Elasticsearch still does not answer; flow documents wait in the spool"
			switch {
			case esconn.NotElasticsearch(err):
				key, msg = "not-elasticsearch", "the server at the Elasticsearch URL answers and is not Elasticsearch "+
					"(no X-Elastic-Product header: a proxy that strips it, or another product); flow documents wait in the spool"
			case !esconn.Unreachable(err):
				key, msg = "health-refused", "Elasticsearch answers and refuses the health check; flow documents wait in the spool"
			}
			o.slow.Warn(key, msg,
				"spooled_documents", docs, "template_installed", o.ready.Load(), "retry_in", backoff, "error", err)
			continue
		}
		if !o.templateReady(ctx) {
			backoff = min(max(2*backoff, time.Second), o.config.ReplayBackoffMax)
			continue
		}
		seg := o.spool.Take()
		if seg == nil {
			continue
		}
		if o.replaySegment(ctx, seg) {
			backoff = 0
			continue
		}
		backoff = min(max(2*backoff, time.Second), o.config.ReplayBackoffMax)
	}
}

// replaySegment sends one segment's documents and waits for every
// outcome; documents still failing stay in the segment.
func (o *Output) replaySegment(ctx context.Context, seg *segment) bool {
	items, bad, err := o.spool.Read(seg)
	if err != nil {
		o.limited.Warn("spool-read", "cannot read spool segment", "error", err)
		o.spool.Release(seg)
		return false
	}
	o.drop(dropSpoolCorrupt, bad)
	failed := o.replayItems(ctx, items)
	if len(failed) == 0 {
		o.metrics.replays.WithLabelValues("complete").Inc()
		if err := o.spool.Done(seg, nil); err != nil {
			o.limited.Warn("spool-remove", "cannot remove replayed spool segment", "error", err)
		}
		return true
	}
	o.metrics.replays.WithLabelValues("partial").Inc()
	if len(failed) == len(items) && bad == 0 {
		// Nothing changed: no rewrite (which would need space on a full disk).
		o.spool.Release(seg)
		return false
	}
	if err := o.spool.Done(seg, sortedLike(items, failed)); err != nil {
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
		ids[string(it.id)] = struct{}{}
	}
	out := make([]item, 0, len(failed))
	for _, it := range items {
		if _, ok := ids[string(it.id)]; ok {
			out = append(out, it)
		}
	}
	return out
}

// Stop drains what is in memory: the feeders send the queue's documents;
// what the cluster does not take goes to the spool, whose files
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
	close(o.stopping)
	o.mu.Unlock()
	deadline := time.NewTimer(o.config.DrainTimeout)
	defer deadline.Stop()
	// The replayer stops between documents; a segment it was replaying
	// stays on disk until the cluster answered for all of it.
	drained := make(chan error, 1)
	go func() {
		_ = o.replay.Stop()
		drained <- o.feeder.Wait()
	}()
	var err error
	select {
	case err = <-drained:
	case <-deadline.C:
		// The cluster hangs: persist everything it has not answered for.
		// Documents it indexed meanwhile are replayed onto themselves
		// (same ids), so nothing is lost and nothing doubles.
		var left []item
		for e := range o.queue {
			o.queuedBytes.Add(-int64(len(e.lines)))
			left = append(left, e.items...) // their chunks are not pooled again
		}
		left = append(left, o.pending.abandon()...)
		err = o.toSpool(left)
		o.r.Log.Warn("Elasticsearch did not take the last documents in time; spooled them for the next start",
			"documents", len(left), "drain_timeout", o.config.DrainTimeout)
	}
	o.r.Log.Info(o.summary(), "indexed", o.stats.indexed.Load(), "replayed", o.stats.replayed.Load(),
		"duplicate", o.stats.duplicate.Load(), "dead_letter", o.stats.deadLetter.Load(), "lost", o.stats.lost.Load(),
		"spool_waiting", o.spoolDocs(), "bulk_requests", o.stats.requests.Load(), "bulk_ms", o.stats.ms.Load())
	return errors.Join(err, o.spool.Close(), o.dead.Close())
}

func (o *Output) spoolDocs() int64 {
	docs, _ := o.spool.Stats()
	return docs
}

// summary says what happened to every document the output was given or
// found in the spool at start: indexed live, replayed from the spool,
// already in the cluster, in the dead-letter file, lost, or still in the
// spool for the next start. The counts are those of documents_total and
// documents_dropped_total.
func (o *Output) summary() string {
	s := fmt.Sprintf("Elasticsearch output stopped: indexed %d, replayed %d from the spool, %d lost",
		o.stats.indexed.Load(), o.stats.replayed.Load(), o.stats.lost.Load())
	if n := o.stats.duplicate.Load(); n > 0 {
		s += fmt.Sprintf(", %d already in the cluster", n)
	}
	if n := o.stats.deadLetter.Load(); n > 0 {
		s += fmt.Sprintf(", %d refused by the cluster (in %s)", n, o.config.deadLetterFile())
	}
	if n := o.spoolDocs(); n > 0 {
		s += fmt.Sprintf(", %d kept in the spool for the next start", n)
		if !o.ready.Load() {
			s += " (the cluster never answered)"
		}
	}
	return s
}

// outage follows one episode of the cluster not taking documents: from
// the first failure (a bulk request failed, or was not answered within
// warnAfter, or documents were refused for now with 429/5xx) until bulk
// requests are answered again and the spool is empty, when one line says
// how long it lasted and what was spooled, replayed and lost meanwhile.
type outage struct {
	mu       sync.Mutex
	active   bool
	start    time.Time // the first failure
	failed   time.Time // when the latest failed request was sent
	answered time.Time // the first answer after the latest failure; zero while failing
	warned   bool      // the unanswered-request warning was logged
	base     tally     // the counters when it started
}

// tally is what the output counted so far.
type tally struct{ spooled, replayed, lost uint64 }

func (o *Output) tally() tally {
	return tally{o.stats.spooled.Load(), o.stats.replayed.Load(), o.stats.lost.Load()}
}

// failing records a failure of a request sent at sent.
func (o *Output) failing(sent time.Time) {
	o.outage.mu.Lock()
	defer o.outage.mu.Unlock()
	if !o.outage.active {
		o.outage.active, o.outage.start, o.outage.base = true, sent, o.tally()
	}
	if sent.After(o.outage.failed) {
		o.outage.failed = sent
	}
	o.outage.answered = time.Time{}
}

// answering records the answer to a bulk request sent at sent (whatever its
// documents' outcomes, but none refused for now). An answer to a request
// sent before the latest failed one says nothing of recovery: it may have
// been on its way when the cluster went.
func (o *Output) answering(sent time.Time) {
	o.outage.mu.Lock()
	if !o.outage.active || sent.Before(o.outage.failed) {
		o.outage.mu.Unlock()
		return
	}
	if o.outage.answered.IsZero() {
		o.outage.answered = time.Now()
	}
	o.outage.mu.Unlock()
	o.endOutage()
}

// endOutage logs the end of an outage once bulk requests are answered
// again and the spool is replayed.
func (o *Output) endOutage() {
	ou := &o.outage
	ou.mu.Lock()
	if !ou.active || ou.answered.IsZero() || !o.spool.Empty() {
		ou.mu.Unlock()
		return
	}
	ou.active, ou.warned = false, false
	start, answered, base := ou.start, ou.answered, ou.base
	ou.mu.Unlock()
	now := o.tally()
	o.r.Log.Info("Elasticsearch outage over: bulk requests are answered again and the spool is replayed",
		"lasted", answered.Sub(start).Round(time.Millisecond), "replay_took", time.Since(answered).Round(time.Millisecond),
		"spooled", now.spooled-base.spooled, "replayed", now.replayed-base.replayed, "lost", now.lost-base.lost)
}

// noticeUnanswered is called when a bulk request sent at sent has waited
// warnAfter without an answer: the cluster accepts requests and does not
// answer them. It warns once an outage (and at most every 10 s).
func (o *Output) noticeUnanswered(sent time.Time) {
	o.mu.RLock()
	stopped := o.stopped
	o.mu.RUnlock()
	if stopped {
		return // Stop says what it could not deliver
	}
	o.failing(sent)
	o.outage.mu.Lock()
	warned := o.outage.warned
	o.outage.warned = true
	o.outage.mu.Unlock()
	if warned {
		return
	}
	_, requests := o.unansweredReqs.oldest()
	docs, _ := o.spool.Stats()
	o.limited.Warn("unanswered", "Elasticsearch does not answer bulk requests; flow documents are waiting",
		"unanswered_for", time.Since(sent).Round(time.Second), "unanswered_requests", requests,
		"documents_waiting", o.queued.Load()+int64(o.pending.docs())+docs, "es_timeout", o.config.Connection.Timeout)
}
