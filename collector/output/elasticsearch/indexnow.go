package elasticsearch

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/spanflow/spanflow/internal/flow"
)

// IndexNow indexes records and returns only once every document is in the
// cluster (indexed, or there already: a replay) or in the dead-letter file
// (refused for its content), or with ctx's error. It is the indexer's path
// (`spanflow indexer run`): Kafka offsets are committed only after it
// returns nil, so a crash replays instead of losing, and the deterministic
// ids make the replay a no-op. It bypasses the queue and the spool — Kafka
// is the buffer — and retries what the cluster cannot take now, backing off
// up to maxBackoff, for as long as ctx lasts.
func (o *Output) IndexNow(ctx context.Context, records []flow.Record) error {
	o.mu.RLock()
	running := o.started && !o.stopped
	o.mu.RUnlock()
	if !running {
		return errors.New("Elasticsearch output is not running")
	}
	backoff := time.Duration(0)
	wait := func() error {
		backoff = min(max(2*backoff, 100*time.Millisecond), maxBackoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
			return nil
		}
	}
	for !o.ready.Load() && !o.templateReady(ctx) {
		if err := wait(); err != nil {
			return err
		}
	}
	w := o.writers.Get().(*docWriter)
	defer o.writers.Put(w)
	layout := o.Layout()
	o.countBeyondLong(records)
	buf := make([]byte, 0, len(records)*docSizeHint)
	items := make([]item, 0, len(records))
	for i := range records {
		r := &records[i]
		start := len(buf)
		buf = w.enc.AppendDocument(buf, r)
		items = append(items, item{index: layout.Index(timestampOf(r)), id: w.ids.appendID(nil, r), doc: buf[start:len(buf):len(buf)]})
	}
	// Requests of up to FlushBytes, Workers of them in flight at once (as
	// the queue's feeders do), each retried until it is in.
	var chunks [][]item
	for size := 0; len(items) > 0; {
		if len(chunks) == 0 || (size > 0 && size+len(items[0].doc) >= o.config.FlushBytes) {
			chunks, size = append(chunks, nil), 0
		}
		chunks[len(chunks)-1] = append(chunks[len(chunks)-1], items[0])
		size += len(items[0].doc) + 100
		items = items[1:]
	}
	work := make(chan []item)
	errs := make(chan error, len(chunks))
	var wg sync.WaitGroup
	for range min(o.config.Workers, len(chunks)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for chunk := range work {
				errs <- o.indexChunk(ctx, layout.Action(), chunk)
			}
		}()
	}
	for _, c := range chunks {
		work <- c
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// indexChunk sends one bulk request of items, and again what the cluster
// could not take, until all is in or ctx ends.
func (o *Output) indexChunk(ctx context.Context, action string, items []item) error {
	backoff := time.Duration(0)
	var req bulkRequest
	for _, it := range items {
		req.add(action, it)
	}
	for {
		sent := time.Now()
		all, results, err := o.post(req.payload(), req.items)
		retry := o.settleNow(req.items, all, results, err)
		if len(retry) == 0 {
			o.answering(sent)
			return nil
		}
		o.failing(sent)
		if err != nil {
			o.metrics.bulkFails.Inc()
			o.limited.Warn("bulk-error", "Elasticsearch bulk request failed; retrying (the Kafka offsets wait)", "error", err)
		}
		backoff = min(max(2*backoff, 100*time.Millisecond), maxBackoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		// A fresh body: the transport may still be reading the old one
		// after an early answer (a 503 before the body was all sent).
		retry = append([]item(nil), retry...)
		req = bulkRequest{}
		for _, it := range retry {
			req.add(action, it)
		}
	}
}

// maxBackoff bounds the wait between two tries of IndexNow.
const maxBackoff = 5 * time.Second

// settleNow counts the outcome of each document of an answered request and
// returns those to send again.
func (o *Output) settleNow(items []item, all bool, results []itemResult, whole error) []item {
	if whole != nil {
		return items
	}
	if all {
		o.metrics.indexed.Add(float64(len(items)))
		o.stats.indexed.Add(uint64(len(items)))
		return nil
	}
	var retry []item
	ok := 0
	for i, it := range items {
		r := results[i]
		switch {
		case r.Status >= 200 && r.Status < 300:
			ok++
		case r.Status == http.StatusConflict && o.Layout().Action() == "create":
			o.metrics.documents.WithLabelValues("duplicate").Inc()
			o.stats.duplicate.Add(1)
		case retryable(r.Status, r.Error.Type, nil):
			o.limited.Warn("item-retry", "Elasticsearch could not index a document now; retrying",
				"status", r.Status, "type", r.Error.Type, "reason", r.Error.Reason)
			retry = append(retry, it)
		default:
			o.limited.Warn("dead-letter", "Elasticsearch refused a flow document; written to the dead-letter file",
				"file", o.config.deadLetterFile(), "status", r.Status, "type", r.Error.Type, "reason", r.Error.Reason)
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
	o.metrics.indexed.Add(float64(ok))
	o.stats.indexed.Add(uint64(ok))
	return retry
}
