package elasticsearch

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestWriteBlockedIndexRetried: the day's index gets a write block
// (index.blocks.write, as ILM's shrink, a snapshot restore or an operator
// set it), and the cluster answers each document 403
// cluster_block_exception. Nothing is wrong with the documents: they wait
// in the spool, and once the block is lifted every one is indexed, none in
// the dead-letter file.
func TestWriteBlockedIndexRetried(t *testing.T) {
	url := testutil.Elasticsearch(t)
	day := time.Date(2001, 5, 23, 0, 0, 0, 0, time.UTC)
	c, index := freshDayIndex(t, url, day)
	recs, tr := genRecords(3000, day, 63)
	dir := t.TempDir()
	o, logs := newWatchedOutput(t, []string{url}, dir, func(c *Configuration) {
		c.ReplayBackoffMax = time.Second
		c.FlushInterval = 100 * time.Millisecond
	})
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	defer o.Stop()
	defer func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs)
		}
	}()
	first, rest := recs[:1000], recs[1000:]
	writeAll(t, o, first, 100) // creates the index
	waitFor(t, "the first documents indexed", time.Minute, func() bool { return metric(o, "indexed") == float64(len(first)) })
	block := func(on bool) {
		t.Helper()
		if st := request(t, c, http.MethodPut, "/"+index+"/_settings", fmt.Sprintf(`{"index.blocks.write":%t}`, on), nil); st != 200 {
			t.Fatalf("set index.blocks.write=%t on %s: status %d", on, index, st)
		}
	}
	block(true)
	writeAll(t, o, rest, 100)
	// Every document of the second part answered for: in the spool (or
	// wrongly in the dead-letter file).
	waitFor(t, "the blocked documents answered for", time.Minute, func() bool {
		docs, _ := o.spool.Stats()
		return o.queued.Load() == 0 && o.pending.docs() == 0 && docs+int64(metric(o, "dead_letter")) == int64(len(rest))
	})
	if dl := metric(o, "dead_letter"); dl != 0 {
		t.Errorf("%v documents of a write-blocked index went to the dead-letter file: want them spooled", dl)
	}
	block(false)
	waitSpoolEmpty(t, o, time.Minute)
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	checkTruth(t, c, index, tr)
	if _, err := os.Stat(filepath.Join(dir, "spool", "dead-letter.ndjson")); err == nil {
		if n := len(readDeadLetters(t, dir)); n != 0 {
			t.Errorf("%d dead-letter entries, want none", n)
		}
	}
}

// TestIndexNowRetriesTemporaryRefusals: the indexer's path. A document
// refused for a state of its index or of the credentials (a write block, a
// closed index, a role being fixed, a missing index) is sent again until it
// is in, so the Kafka offsets are committed only then; a document refused
// for its content goes to the dead-letter file at once, and its offset may
// be committed.
func TestIndexNowRetriesTemporaryRefusals(t *testing.T) {
	for _, tc := range []struct {
		status  int
		errType string
		retried bool
	}{
		{403, "cluster_block_exception", true},
		{400, "index_closed_exception", true},
		{403, "security_exception", true},
		{401, "security_exception", true},
		{404, "index_not_found_exception", true},
		{429, "es_rejected_execution_exception", true},
		{400, "mapper_parsing_exception", false},
		{400, "illegal_argument_exception", false},
		{413, "request_entity_too_large", false},
	} {
		t.Run(fmt.Sprintf("%d %s", tc.status, tc.errType), func(t *testing.T) {
			// The first bulk request is refused item by item, the next ones taken.
			var bulks atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Elastic-Product", "Elasticsearch")
				w.Header().Set("Content-Type", "application/json")
				if r.URL.Path != "/_bulk" {
					fmt.Fprint(w, `{"status":"green"}`)
					return
				}
				body, _ := io.ReadAll(r.Body)
				n := bytes.Count(body, []byte{'\n'}) / 2
				item := `{"index":{"status":201}}`
				failing := bulks.Add(1) == 1
				if failing {
					item = fmt.Sprintf(`{"index":{"status":%d,"error":{"type":%q,"reason":"refused by the test"}}}`, tc.status, tc.errType)
				}
				var out bytes.Buffer
				fmt.Fprintf(&out, `{"errors":%t,"items":[`, failing)
				for i := range n {
					if i > 0 {
						out.WriteByte(',')
					}
					out.WriteString(item)
				}
				out.WriteString(`]}`)
				w.Write(out.Bytes())
			}))
			defer srv.Close()
			c := DefaultConfiguration()
			c.Connection.URLs = []string{srv.URL}
			c.SpoolDir = t.TempDir()
			c.RunSetup = false
			o, err := New(reporter.NewForTest(nil), c)
			if err != nil {
				t.Fatal(err)
			}
			if err := o.Start(); err != nil {
				t.Fatal(err)
			}
			defer o.Stop()
			recs, _ := genRecords(50, time.Date(2001, 5, 24, 0, 0, 0, 0, time.UTC), 64)
			if err := o.IndexNow(t.Context(), recs); err != nil {
				t.Fatal(err)
			}
			indexed, dead := o.stats.indexed.Load(), o.stats.deadLetter.Load()
			if tc.retried && (indexed != uint64(len(recs)) || dead != 0 || bulks.Load() != 2) {
				t.Errorf("IndexNow returned with %d indexed, %d dead-lettered, after %d bulk requests: want %d indexed, none dead-lettered, after a retry",
					indexed, dead, bulks.Load(), len(recs))
			}
			if !tc.retried && (indexed != 0 || dead != uint64(len(recs)) || bulks.Load() != 1) {
				t.Errorf("IndexNow returned with %d indexed, %d dead-lettered, after %d bulk requests: want all %d dead-lettered, no retry",
					indexed, dead, bulks.Load(), len(recs))
			}
		})
	}
}
