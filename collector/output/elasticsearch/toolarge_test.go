package elasticsearch

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/testutil"
)

// limitingProxy stands before the cluster like nginx with a
// client_max_body_size: bulk request bodies over limit bytes get 413 and
// never reach it.
func limitingProxy(t *testing.T, target string, limit int64) (string, *atomic.Int64) {
	return refusingProxy(t, target, func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, "/_bulk") || r.ContentLength <= limit {
			return false
		}
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		io.WriteString(w, "<html><body>413 Request Entity Too Large</body></html>")
		return true
	})
}

// TestRequestTooLargeIsSplit: behind a proxy allowing 64 KiB requests (the
// output's are 2 MiB), every document is still indexed, once, with none
// spooled: refused requests are sent again in halves.
func TestRequestTooLargeIsSplit(t *testing.T) {
	target := testutil.Elasticsearch(t)
	day := time.Date(2001, 3, 9, 0, 0, 0, 0, time.UTC)
	c, index := freshDayIndex(t, target, day)
	proxy, refused := limitingProxy(t, target, 64<<10)
	recs, tr := genRecords(5000, day, 11)
	o, _ := newTestOutput(t, []string{proxy}, t.TempDir(), nil)
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	if o.Layout().DataStream {
		o.Stop()
		t.Skip("cluster uses a data stream; this test checks daily indices")
	}
	writeAll(t, o, recs, 500)
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	checkTruth(t, c, index, tr)
	if refused.Load() == 0 {
		t.Error("the proxy refused no request: the test did not test splitting")
	}
	if docs, _ := o.spool.Stats(); docs != 0 || metric(o, "spooled") != 0 || metric(o, "dead_letter") != 0 {
		t.Errorf("%d documents in the spool, %v spooled, %v dead-lettered; want none", docs, metric(o, "spooled"), metric(o, "dead_letter"))
	}
	if got := metric(o, "indexed"); got != float64(len(recs)) {
		t.Errorf("%v documents counted indexed, want %d", got, len(recs))
	}
	t.Logf("%d requests refused as too large", refused.Load())
}

// TestDocumentTooLargeDeadLetters: when even one document is too large for
// the proxy, it goes to the dead-letter file with the reason, instead of
// round the spool for ever.
func TestDocumentTooLargeDeadLetters(t *testing.T) {
	target := testutil.Elasticsearch(t)
	day := time.Date(2001, 3, 10, 0, 0, 0, 0, time.UTC)
	c, index := freshDayIndex(t, target, day)
	proxy, _ := limitingProxy(t, target, 200) // less than any document
	recs, _ := genRecords(50, day, 12)
	dir := t.TempDir()
	o, _ := newTestOutput(t, []string{proxy}, dir, nil)
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	writeAll(t, o, recs, 50)
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := metric(o, "dead_letter"); got != float64(len(recs)) {
		t.Errorf("%v documents dead-lettered, want %d", got, len(recs))
	}
	if docs, _ := o.spool.Stats(); docs != 0 {
		t.Errorf("%d documents in the spool, want none", docs)
	}
	entries := readDeadLetters(t, dir)
	for _, e := range entries {
		if e.Status != http.StatusRequestEntityTooLarge || !strings.Contains(e.Reason, "too large") || len(e.Document) == 0 {
			t.Errorf("dead-letter entry %+v", e)
		}
	}
	n := len(entries)
	if n != len(recs) {
		t.Errorf("%d dead-letter entries, want %d", n, len(recs))
	}
	if got := count(t, c, index, ""); got > 0 { // -1: no such index
		t.Errorf("%d documents reached the cluster through a proxy that lets none through", got)
	}
}

// TestBulkRetriedByTransport: a proxy answers the first attempt of every
// bulk request 503, as a node that just lost its master does; the
// client's transport sends the request again (MaxRetries), rereading a
// body the output sends from its documents' buffers without copying it
// first. Every document is indexed once, with its content, and none goes
// to the spool: a retry that sent a short or empty body would have had
// them refused or spooled.
func TestBulkRetriedByTransport(t *testing.T) {
	target := testutil.Elasticsearch(t)
	day := time.Date(2001, 3, 10, 0, 0, 0, 0, time.UTC)
	c, index := freshDayIndex(t, target, day)
	var mu sync.Mutex
	seen := map[[32]byte]bool{} // bodies refused once
	proxy, refused := refusingProxy(t, target, func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, "/_bulk") {
			return false
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body)) // for the cluster, when passed on
		sum := sha256.Sum256(body)
		mu.Lock()
		again := seen[sum]
		seen[sum] = true
		mu.Unlock()
		if again {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":{"type":"master_not_discovered_exception","reason":null},"status":503}`)
		return true
	})
	recs, tr := genRecords(6000, day, 12)
	o, _ := newTestOutput(t, []string{proxy}, t.TempDir(), func(c *Configuration) { c.FlushBytes = 256 << 10 })
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	if o.Layout().DataStream {
		o.Stop()
		t.Skip("cluster uses a data stream; this test checks daily indices")
	}
	writeAll(t, o, recs, 200)
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	checkTruth(t, c, index, tr)
	if refused.Load() < 2 {
		t.Errorf("the proxy refused %d requests: the test did not test retries", refused.Load())
	}
	if docs, _ := o.spool.Stats(); docs != 0 || metric(o, "spooled") != 0 || metric(o, "dead_letter") != 0 {
		t.Errorf("%d documents in the spool, %v spooled, %v dead-lettered; want none", docs, metric(o, "spooled"), metric(o, "dead_letter"))
	}
}
