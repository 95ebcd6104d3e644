package elasticsearch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/output/elasticsearch/setup"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// benchDocs is how many flows one measured run indexes: SPANFLOW_BENCH_DOCS,
// which bench/elasticsearch-bulk.sh sets. Without it the cluster benchmarks
// skip, so that `make bench`'s pass over every package does not run them a
// second time.
func benchDocs(b *testing.B) int {
	n, err := strconv.Atoi(os.Getenv("SPANFLOW_BENCH_DOCS"))
	if err != nil || n <= 0 {
		b.Skip("indexes hundreds of thousands of flows: run by bench/elasticsearch-bulk.sh (or set SPANFLOW_BENCH_DOCS)")
	}
	return n
}

var benchDay atomic.Int64

// nextBenchDay gives every run its own daily index (fresh inserts, never
// overwrites), far in the past so nothing else uses it.
func nextBenchDay() time.Time {
	return time.Date(2002, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, int(benchDay.Add(1)))
}

// BenchmarkIndexing compares, in one run, the output's indexing throughput
// with raw _bulk requests of the same documents (same ids, same index
// template) sent by as many concurrent senders as the output has workers,
// at several batch sizes. Each iteration indexes benchDocs() flows into a
// fresh daily index; the figure is docs/s. The raw sender's documents are
// encoded before the clock starts; the output's are encoded inside the
// measured time.
func BenchmarkIndexing(b *testing.B) {
	url := testutil.Elasticsearch(b)
	c := testClient(b, url)
	n := benchDocs(b)
	cfg := DefaultConfiguration()
	// Tuning experiments: SPANFLOW_BENCH_FLUSH_BYTES, SPANFLOW_BENCH_WORKERS.
	if v, err := strconv.Atoi(os.Getenv("SPANFLOW_BENCH_FLUSH_BYTES")); err == nil {
		cfg.FlushBytes = v
	}
	if v, err := strconv.Atoi(os.Getenv("SPANFLOW_BENCH_WORKERS")); err == nil {
		cfg.Workers = v
	}

	measure := func(b *testing.B, run func(day time.Time, recs []flow.Record) time.Duration) {
		var total time.Duration
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			day := nextBenchDay()
			recs, _ := genRecords(n, day, uint64(i+1))
			index := setup.Layout{}.Index(day)
			b.StartTimer()
			total += run(day, recs)
			b.StopTimer()
			if got := benchCount(c, index); got != n {
				b.Fatalf("%s holds %d documents, want %d", index, got, n)
			}
			benchDelete(c, index)
		}
		b.ReportMetric(float64(n*b.N)/total.Seconds(), "docs/s")
		b.ReportMetric(0, "ns/op")
	}

	// Warm the cluster's JVM up first, so the first variant measured is not
	// penalised.
	{
		day := nextBenchDay()
		recs, _ := genRecords(n, day, 99)
		rawBulk(b, url, recs, 2000, cfg.Workers, "errors")
		benchDelete(c, setup.Layout{}.Index(day))
	}
	for _, gzip := range []bool{false, true} {
		b.Run(fmt.Sprintf("output/gzip=%t", gzip), func(b *testing.B) {
			measure(b, func(day time.Time, recs []flow.Record) time.Duration {
				return runOutput(b, url, cfg, gzip, recs)
			})
		})
	}
	for _, batch := range []int{500, 1000, 2000, 5000} {
		b.Run(fmt.Sprintf("raw_bulk/batch=%d", batch), func(b *testing.B) {
			measure(b, func(day time.Time, recs []flow.Record) time.Duration {
				return rawBulk(b, url, recs, batch, cfg.Workers, "errors")
			})
		})
	}
	// The output asks for every item's status (it must know each
	// document's fate); this raw variant asks the same, to tell the
	// cluster's cost of that answer from the client's.
	b.Run("raw_bulk_item_status/batch=2000", func(b *testing.B) {
		measure(b, func(day time.Time, recs []flow.Record) time.Duration {
			return rawBulk(b, url, recs, 2000, cfg.Workers, "items.*.status,items.*.error.type,items.*.error.reason")
		})
	})
}

// rawBulk sends the documents as plain _bulk requests of batch documents
// from senders goroutines, and returns the time they took.
func rawBulk(b *testing.B, url string, recs []flow.Record, batch, senders int, filterPath string) time.Duration {
	var bodies [][]byte
	var enc flow.Encoder
	layout := setup.Layout{}
	for i := 0; i < len(recs); i += batch {
		var buf []byte
		for j := i; j < min(i+batch, len(recs)); j++ {
			r := &recs[j]
			buf = fmt.Appendf(buf, `{"index":{"_index":%q,"_id":%q}}`+"\n", layout.Index(timestampOf(r)), DocumentID(r))
			buf = enc.AppendDocument(buf, r)
			buf = append(buf, '\n')
		}
		bodies = append(bodies, buf)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senders}}
	work := make(chan []byte)
	var wg sync.WaitGroup
	var failed atomic.Int64
	start := time.Now()
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for body := range work {
				res, err := client.Post(url+"/_bulk?filter_path="+filterPath, "application/x-ndjson", bytes.NewReader(body))
				if err != nil {
					failed.Add(1)
					continue
				}
				out, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != 200 || bytes.Contains(out, []byte(`"errors":true`)) || bytes.Contains(out, []byte(`"error"`)) {
					failed.Add(1)
				}
			}
		}()
	}
	for _, body := range bodies {
		work <- body
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(start)
	if failed.Load() > 0 {
		b.Fatalf("%d raw bulk requests failed", failed.Load())
	}
	return elapsed
}

func benchCount(c interface {
	Perform(*http.Request) (*http.Response, error)
}, index string) int {
	do := func(method, path string) []byte {
		req, _ := http.NewRequest(method, path, nil)
		res, err := c.Perform(req)
		if err != nil {
			return nil
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return b
	}
	do(http.MethodPost, "/"+index+"/_refresh")
	var out struct {
		Count int `json:"count"`
	}
	json.Unmarshal(do(http.MethodGet, "/"+index+"/_count"), &out)
	return out.Count
}

func benchDelete(c interface {
	Perform(*http.Request) (*http.Response, error)
}, index string) {
	req, _ := http.NewRequest(http.MethodDelete, "/"+index, nil)
	if res, err := c.Perform(req); err == nil {
		res.Body.Close()
	}
}

// BenchmarkStoredBytesPerFlow indexes flows with the installed template
// (best_compression), force-merges to one segment and reports the bytes the
// index takes on disk per flow, for docs/elasticsearch.md's sizing.
func BenchmarkStoredBytesPerFlow(b *testing.B) {
	url := testutil.Elasticsearch(b)
	c := testClient(b, url)
	n := benchDocs(b)
	for i := 0; i < b.N; i++ {
		day := nextBenchDay()
		index := setup.Layout{}.Index(day)
		recs, _ := genRecords(n, day, 42)
		cfg := DefaultConfiguration()
		cfg.Connection.URLs = []string{url}
		cfg.SpoolDir = b.TempDir()
		o, err := New(reporter.NewForTest(nil), cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := o.Start(); err != nil {
			b.Fatal(err)
		}
		var docBytes int
		var enc flow.Encoder
		for j := range recs {
			docBytes += len(enc.AppendDocument(nil, &recs[j]))
		}
		for j := 0; j < len(recs); j += 500 {
			for o.queued.Load() > int64(o.config.QueueSize/2) {
				time.Sleep(time.Millisecond)
			}
			o.Write(recs[j:min(j+500, len(recs))])
		}
		for docs, _ := o.spool.Stats(); docs > 0; docs, _ = o.spool.Stats() {
			time.Sleep(10 * time.Millisecond)
		}
		o.Stop()
		if got := benchCount(c, index); got != n {
			b.Fatalf("%s holds %d, want %d", index, got, n)
		}
		req, _ := http.NewRequest(http.MethodPost, "/"+index+"/_forcemerge?max_num_segments=1", nil)
		res, err := c.Perform(req)
		if err != nil {
			b.Fatal(err)
		}
		res.Body.Close()
		req, _ = http.NewRequest(http.MethodGet, "/"+index+"/_stats/store,docs", nil)
		res, err = c.Perform(req)
		if err != nil {
			b.Fatal(err)
		}
		var st struct {
			All struct {
				Primaries struct {
					Store struct {
						Size int64 `json:"size_in_bytes"`
					} `json:"store"`
				} `json:"primaries"`
			} `json:"_all"`
		}
		json.NewDecoder(res.Body).Decode(&st)
		res.Body.Close()
		benchDelete(c, index)
		b.ReportMetric(float64(st.All.Primaries.Store.Size)/float64(n), "stored-bytes/flow")
		b.ReportMetric(float64(docBytes)/float64(n), "json-bytes/flow")
		b.ReportMetric(0, "ns/op")
	}
}

// runOutput indexes recs through an output and returns the time from the
// first Write to the end of Stop (everything flushed).
func runOutput(b *testing.B, url string, cfg Configuration, gzip bool, recs []flow.Record) time.Duration {
	oc := cfg
	oc.Connection.URLs = []string{url}
	oc.Connection.Compress = gzip
	oc.SpoolDir = b.TempDir()
	var logw io.Writer
	if os.Getenv("SPANFLOW_BENCH_LOG") != "" {
		logw = os.Stderr
	}
	o, err := New(reporter.NewForTest(logw), oc)
	if err != nil {
		b.Fatal(err)
	}
	if err := o.Start(); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	// A collector at the highest sustainable rate: wait while the queue is
	// half full rather than spill into the spool.
	for i := 0; i < len(recs); i += 500 {
		for o.queued.Load() > int64(o.config.QueueSize/2) {
			time.Sleep(200 * time.Microsecond)
		}
		if err := o.Write(recs[i:min(i+500, len(recs))]); err != nil {
			b.Fatal(err)
		}
	}
	for docs, _ := o.spool.Stats(); docs > 0; docs, _ = o.spool.Stats() {
		time.Sleep(10 * time.Millisecond)
	}
	if err := o.Stop(); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// BenchmarkIndexingPaired measures the output and raw _bulk (batch sizes
// 1000 and 2000, the best ones in BenchmarkIndexing) back to back, several
// times, and reports the median of the per-round ratios output / raw at the
// batch size with the higher median:
// on a machine whose load drifts, pairs measured seconds apart compare far
// better than medians of runs minutes apart. SPANFLOW_BENCH_PAIRS sets the
// number of rounds (default 7).
func BenchmarkIndexingPaired(b *testing.B) {
	url := testutil.Elasticsearch(b)
	c := testClient(b, url)
	n := benchDocs(b)
	pairs := 7
	if v, err := strconv.Atoi(os.Getenv("SPANFLOW_BENCH_PAIRS")); err == nil && v > 0 {
		pairs = v
	}
	cfg := DefaultConfiguration()
	once := func(run func(recs []flow.Record) time.Duration) float64 {
		day := nextBenchDay()
		recs, _ := genRecords(n, day, uint64(day.Unix()))
		index := setup.Layout{}.Index(day)
		d := run(recs)
		if got := benchCount(c, index); got != n {
			b.Fatalf("%s holds %d documents, want %d", index, got, n)
		}
		benchDelete(c, index)
		return float64(n) / d.Seconds()
	}
	for i := 0; i < b.N; i++ {
		once(func(recs []flow.Record) time.Duration { return rawBulk(b, url, recs, 1000, cfg.Workers, "errors") }) // warm-up
		var outs, raw1k, raw2k, r1k, r2k []float64
		for round := range pairs {
			// The three run in turn, starting one further each round: a
			// cluster measured right after another run (merges, caches)
			// does not do alike in every position, and a fixed order
			// favoured whichever ran last.
			runs := []func() float64{
				func() float64 {
					return once(func(recs []flow.Record) time.Duration { return runOutput(b, url, cfg, false, recs) })
				},
				func() float64 {
					return once(func(recs []flow.Record) time.Duration { return rawBulk(b, url, recs, 1000, cfg.Workers, "errors") })
				},
				func() float64 {
					return once(func(recs []flow.Record) time.Duration { return rawBulk(b, url, recs, 2000, cfg.Workers, "errors") })
				},
			}
			var got [3]float64
			for k := range runs {
				j := (round + k) % len(runs)
				got[j] = runs[j]()
			}
			out, a, c := got[0], got[1], got[2]
			b.Logf("round (first: %s): output %.0f docs/s; raw 1000/request %.0f (ratio %.2f), 2000/request %.0f (ratio %.2f)",
				[]string{"output", "raw 1000", "raw 2000"}[round%3], out, a, out/a, c, out/c)
			outs, raw1k, raw2k = append(outs, out), append(raw1k, a), append(raw2k, c)
			r1k, r2k = append(r1k, out/a), append(r2k, out/c)
		}
		// The best batch size is the one whose median is higher; the
		// ratio is the median of the rounds' ratios to it.
		best, ratios := medianOf(raw1k), r1k
		if medianOf(raw2k) > best {
			best, ratios = medianOf(raw2k), r2k
		}
		b.ReportMetric(medianOf(ratios), "ratio")
		b.ReportMetric(medianOf(outs), "output-docs/s")
		b.ReportMetric(best, "best-raw-docs/s")
		b.ReportMetric(0, "ns/op")
	}
}

func medianOf(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
