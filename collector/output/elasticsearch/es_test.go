package elasticsearch

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	es "github.com/elastic/go-elasticsearch/v8"
	dto "github.com/prometheus/client_model/go"

	"github.com/spanflow/spanflow/collector/output/elasticsearch/setup"
	"github.com/spanflow/spanflow/internal/esconn"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// truth is the ground truth of generated records, per source address.
type truth struct {
	count            int
	bytes, packets   map[string]uint64
	flows            map[string]int
	in10_1           int // records whose source is in 10.1.0.0/16
	bytesTotal, pkts uint64
}

// genRecords makes n distinct records on one UTC day (so a test owns its
// daily index), with sources in 10.1.0.0/16, 10.2.0.0/16 and 2001:db8::/64.
func genRecords(n int, day time.Time, seed uint64) ([]flow.Record, truth) {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	tr := truth{bytes: map[string]uint64{}, packets: map[string]uint64{}, flows: map[string]int{}}
	recs := make([]flow.Record, n)
	for i := range recs {
		var src netip.Addr
		switch rng.IntN(3) {
		case 0:
			src = netip.AddrFrom4([4]byte{10, 1, byte(rng.IntN(4)), byte(rng.IntN(50))})
		case 1:
			src = netip.AddrFrom4([4]byte{10, 2, 0, byte(rng.IntN(50))})
		default:
			a := netip.MustParseAddr("2001:db8::").As16()
			a[15] = byte(rng.IntN(40))
			src = netip.AddrFrom16(a)
		}
		dst := netip.AddrFrom4([4]byte{192, 0, 2, byte(rng.IntN(256))})
		if src.Is6() {
			dst = netip.MustParseAddr("2001:db8:1::1")
		}
		end := day.Add(time.Duration(i) * (24 * time.Hour / time.Duration(n+1)))
		r := flow.Record{Kind: flow.KindIPFIX, ObserverIP: netip.MustParseAddr("192.0.2.250"), ObservationDomain: 1,
			Received: end.Add(time.Second), Start: end.Add(-time.Duration(rng.IntN(60000)) * time.Millisecond), End: end,
			SrcAddr: src, DstAddr: dst, SrcPort: uint16(1024 + i%60000), DstPort: 443, Proto: 6,
			TCPFlags: 0x1b, Bytes: uint64(40 + rng.IntN(1_000_000)), Packets: uint64(1 + rng.IntN(1000)),
			InIf: 3, OutIf: 4, EndReason: 1}
		recs[i] = r
		k := src.String()
		tr.count++
		tr.bytes[k] += r.Bytes
		tr.packets[k] += r.Packets
		tr.flows[k]++
		tr.bytesTotal += r.Bytes
		tr.pkts += r.Packets
		if netip.MustParsePrefix("10.1.0.0/16").Contains(src) {
			tr.in10_1++
		}
	}
	return recs, tr
}

func testClient(t testing.TB, url string) *es.Client {
	t.Helper()
	c, err := esconn.New(esconn.Configuration{URLs: []string{url}, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// request sends one JSON request and decodes the answer into out.
func request(t *testing.T, c *es.Client, method, path, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.Perform(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if out != nil && res.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return res.StatusCode
}

// freshDayIndex returns a client and the daily index of day, deleted now
// and again when the test ends, so every test starts from an empty index.
func freshDayIndex(t *testing.T, url string, day time.Time) (*es.Client, string) {
	t.Helper()
	index := setup.Layout{}.Index(day)
	c := testClient(t, url)
	deleteIndex(t, c, index)
	t.Cleanup(func() { deleteIndex(t, c, index) })
	return c, index
}

func deleteIndex(t *testing.T, c *es.Client, index string) {
	request(t, c, http.MethodDelete, "/"+index, "", nil)
}

func count(t *testing.T, c *es.Client, index, query string) int {
	t.Helper()
	request(t, c, http.MethodPost, "/"+index+"/_refresh", "", nil)
	var out struct {
		Count int `json:"count"`
	}
	if query == "" {
		query = `{"query":{"match_all":{}}}`
	}
	if st := request(t, c, http.MethodPost, "/"+index+"/_count", query, &out); st != 200 {
		return -1
	}
	return out.Count
}

// checkTruth compares the cluster's aggregations per source address with
// the ground truth.
func checkTruth(t *testing.T, c *es.Client, index string, tr truth) {
	t.Helper()
	if got := count(t, c, index, ""); got != tr.count {
		t.Errorf("%s holds %d documents, want %d", index, got, tr.count)
	}
	var agg struct {
		Aggregations struct {
			Src struct {
				Buckets []struct {
					Key      string `json:"key"`
					DocCount int    `json:"doc_count"`
					Bytes    struct {
						Value float64 `json:"value"`
					} `json:"bytes"`
					Packets struct {
						Value float64 `json:"value"`
					} `json:"packets"`
				} `json:"buckets"`
			} `json:"src"`
		} `json:"aggregations"`
	}
	q := `{"size":0,"aggs":{"src":{"terms":{"field":"source.ip","size":1000},
		"aggs":{"bytes":{"sum":{"field":"network.bytes"}},"packets":{"sum":{"field":"network.packets"}}}}}}`
	if st := request(t, c, http.MethodPost, "/"+index+"/_search", q, &agg); st != 200 {
		t.Fatalf("aggregation: status %d", st)
	}
	seen := map[string]bool{}
	for _, b := range agg.Aggregations.Src.Buckets {
		seen[b.Key] = true
		// Sums are doubles: exact up to 2^53, far above these.
		if b.DocCount != tr.flows[b.Key] || uint64(b.Bytes.Value) != tr.bytes[b.Key] || uint64(b.Packets.Value) != tr.packets[b.Key] {
			t.Errorf("source %s: %d flows, %.0f bytes, %.0f packets; want %d, %d, %d", b.Key, b.DocCount,
				b.Bytes.Value, b.Packets.Value, tr.flows[b.Key], tr.bytes[b.Key], tr.packets[b.Key])
		}
	}
	for k := range tr.flows {
		if !seen[k] {
			t.Errorf("source %s missing from the aggregation", k)
		}
	}
	// source.ip is an ip field: a CIDR term query matches the prefix.
	if got := count(t, c, index, `{"query":{"term":{"source.ip":"10.1.0.0/16"}}}`); got != tr.in10_1 {
		t.Errorf("CIDR term query 10.1.0.0/16 matched %d, want %d", got, tr.in10_1)
	}
}

func newTestOutput(t *testing.T, urls []string, dir string, tweak func(*Configuration)) (*Output, *bytes.Buffer) {
	t.Helper()
	c := DefaultConfiguration()
	c.Connection.URLs = urls
	c.SpoolDir = filepath.Join(dir, "spool")
	if tweak != nil {
		tweak(&c)
	}
	var logs bytes.Buffer
	o, err := New(reporter.NewForTest(&lockedWriter{w: &logs}), c)
	if err != nil {
		t.Fatal(err)
	}
	return o, &logs
}

type lockedWriter struct {
	mu chanMutex
	w  io.Writer
}

type chanMutex chan struct{}

func (l *lockedWriter) Write(p []byte) (int, error) {
	if l.mu == nil {
		l.mu = make(chanMutex, 1)
	}
	l.mu <- struct{}{}
	defer func() { <-l.mu }()
	return l.w.Write(p)
}

func writeAll(t *testing.T, o *Output, recs []flow.Record, batch int) {
	t.Helper()
	for i := 0; i < len(recs); i += batch {
		if err := o.Write(recs[i:min(i+batch, len(recs))]); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
}

// replayAndCheck starts an output on the cluster at url over the spool left
// in dir, waits until it has indexed everything the spool held, stops it and
// checks the index against the truth.
func replayAndCheck(t *testing.T, url, dir string, tweak func(*Configuration), c *es.Client, index string, tr truth) {
	t.Helper()
	o, _ := newTestOutput(t, []string{url}, dir, tweak)
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	waitSpoolEmpty(t, o, time.Minute)
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	checkTruth(t, c, index, tr)
}

// waitSpoolEmpty waits until the replayer has emptied the spool and the
// queue is drained.
func waitSpoolEmpty(t *testing.T, o *Output, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		docs, _ := o.spool.Stats()
		if docs == 0 && o.queued.Load() == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("spool still holds %d documents after %s", docs, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func metric(o *Output, result string) float64 {
	var m dto.Metric
	if err := o.metrics.documents.WithLabelValues(result).Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// TestRoundTrip indexes known records and checks counts and per-source
// sums on the cluster against the ground truth; writing them all again
// (a replay) must not add a single document.
func TestRoundTrip(t *testing.T) {
	url := testutil.Elasticsearch(t)
	day := time.Date(2001, 3, 1, 0, 0, 0, 0, time.UTC)
	c, index := freshDayIndex(t, url, day)

	recs, tr := genRecords(20000, day, 1)
	dir := t.TempDir()
	o, _ := newTestOutput(t, []string{url}, dir, nil)
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	if o.Layout().DataStream {
		t.Skip("cluster uses a data stream; this test checks daily indices")
	}
	writeAll(t, o, recs, 500)
	writeAll(t, o, recs[:5000], 500) // replayed: same ids
	waitSpoolEmpty(t, o, time.Minute)
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	checkTruth(t, c, index, tr)
	var m struct {
		Props map[string]struct {
			Mappings struct {
				Properties map[string]struct {
					Type string `json:"type"`
				} `json:"properties"`
			} `json:"mappings"`
		}
	}
	request(t, c, http.MethodGet, "/"+index+"/_mapping", "", &m.Props)
	if typ := m.Props[index].Mappings.Properties["@timestamp"].Type; typ != "date" {
		t.Errorf("@timestamp mapped as %q, want date", typ)
	}
	// A date range on @timestamp selects by time: the first half of the day.
	half := count(t, c, index, `{"query":{"range":{"@timestamp":{"lt":"2001-03-01T12:00:00.000Z"}}}}`)
	want := 0
	for _, r := range recs {
		if r.End.Before(day.Add(12 * time.Hour)) {
			want++
		}
	}
	if half != want {
		t.Errorf("@timestamp range matched %d, want %d", half, want)
	}
	if got := metric(o, "dead_letter"); got != 0 {
		t.Errorf("%v documents dead-lettered", got)
	}
}

// TestRejectionDeadLetter sends documents the mapping refuses among good
// ones: the refused land in the dead-letter file with the reason, the rest
// are indexed.
func TestRejectionDeadLetter(t *testing.T) {
	url := testutil.Elasticsearch(t)
	day := time.Date(2001, 3, 3, 0, 0, 0, 0, time.UTC)
	c, index := freshDayIndex(t, url, day)

	recs, tr := genRecords(1000, day, 3)
	// The index maps netflow.octet_delta_count_extra as long (as it would
	// be after a first exporter sent it as a number); documents where it is
	// a string are refused by the mapping.
	if st := request(t, c, http.MethodPut, "/"+index,
		`{"mappings":{"properties":{"netflow":{"properties":{"octet_delta_count_extra":{"type":"long"}}}}}}`, nil); st != 200 {
		t.Fatalf("create %s: status %d", index, st)
	}
	bad := map[string]bool{}
	for i := range recs {
		recs[i].Extra = []flow.Extra{{Name: "octet_delta_count_extra", Num: uint64(i)}}
	}
	for _, i := range []int{10, 500, 999} {
		recs[i].Extra = []flow.Extra{{Name: "octet_delta_count_extra", Str: "not-a-number", IsStr: true}}
		bad[DocumentID(&recs[i])] = true
	}
	dir := t.TempDir()
	o, _ := newTestOutput(t, []string{url}, dir, nil)
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	writeAll(t, o, recs, 100)
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := count(t, c, index, ""); got != tr.count-len(bad) {
		t.Errorf("indexed %d documents, want %d (all but the refused)", got, tr.count-len(bad))
	}
	entries := readDeadLetters(t, dir)
	for _, e := range entries {
		if !bad[e.ID] || e.Status != 400 || e.Type == "" || !strings.Contains(e.Reason, "octet_delta_count_extra") ||
			!bytes.Contains(e.Document, []byte(`"not-a-number"`)) || e.Index != index {
			t.Errorf("dead-letter entry %+v", e)
		}
	}
	n := len(entries)
	if n != len(bad) {
		t.Errorf("%d dead-letter entries, want %d", n, len(bad))
	}
	if docs, _ := o.spool.Stats(); docs != 0 {
		t.Errorf("%d documents left in the spool", docs)
	}
}

// readDeadLetters reads the dead-letter file of an output whose spool is
// in dir/spool.
func readDeadLetters(t *testing.T, dir string) []deadLetterEntry {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "spool", "dead-letter.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var out []deadLetterEntry
	for sc.Scan() {
		var e deadLetterEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("dead-letter line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStopPersistsAndRestartReplays stops the output right after a burst
// (what is not indexed yet stays in the spool) and starts a new one on the
// same spool directory, which replays it: the cluster ends with exactly the
// ground truth.
func TestStopPersistsAndRestartReplays(t *testing.T) {
	url := testutil.Elasticsearch(t)
	day := time.Date(2001, 3, 5, 0, 0, 0, 0, time.UTC)
	c, index := freshDayIndex(t, url, day)

	recs, tr := genRecords(30000, day, 5)
	dir := t.TempDir()
	o, _ := newTestOutput(t, []string{url}, dir, func(c *Configuration) { c.QueueSize = 1000 })
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	writeAll(t, o, recs, 1000)
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	left, _ := o.spool.Stats()
	t.Logf("after stop: %d documents persisted in the spool", left)
	if left == 0 {
		t.Log("the cluster took the whole burst before stop; the restart replays nothing")
	}
	replayAndCheck(t, url, dir, nil, c, index, tr)
}

// TestNoSetupClusterLater: with --es-setup=false the output starts even when
// the cluster does not answer yet, spools, and the documents reach the
// cluster once a later start can reach it.
func TestNoSetupClusterLater(t *testing.T) {
	url := testutil.Elasticsearch(t)
	day := time.Date(2001, 3, 8, 0, 0, 0, 0, time.UTC)
	c, index := freshDayIndex(t, url, day)
	recs, tr := genRecords(3000, day, 8)
	dir := t.TempDir()
	o, logs := newTestOutput(t, []string{"http://127.0.0.1:1"}, dir, func(c *Configuration) {
		c.RunSetup = false
		c.Connection.MaxRetries = 1
	})
	if err := o.Start(); err != nil {
		t.Fatalf("start without setup and without a cluster: %v", err)
	}
	if !strings.Contains(logs.String(), "Elasticsearch does not answer; started anyway") {
		t.Errorf("no warning that the cluster did not answer:\n%s", logs)
	}
	writeAll(t, o, recs, 100)
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	if docs, _ := o.spool.Stats(); docs != int64(len(recs)) {
		t.Fatalf("spool holds %d documents, want %d", docs, len(recs))
	}
	// Without setup at start, `spanflow es setup` is run separately.
	if _, err := setup.Install(t.Context(), c, setup.DefaultConfiguration()); err != nil {
		t.Fatal(err)
	}
	replayAndCheck(t, url, dir, func(c *Configuration) { c.RunSetup = false }, c, index, tr)
}
