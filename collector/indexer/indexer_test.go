package indexer_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/indexer"
	"github.com/spanflow/spanflow/collector/output/elasticsearch"
	"github.com/spanflow/spanflow/collector/output/kafka"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/kafkaconn"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// genFlows makes n distinct flows from exporters exporters, all in
// observation domain domain (which tells this run's documents from any
// other's in the shared cluster), in order per exporter.
func genFlows(n, exporters int, domain uint32) []flow.Record {
	now := time.Now().UTC().Truncate(time.Millisecond)
	recs := make([]flow.Record, n)
	for i := range recs {
		e := netip.AddrFrom4([4]byte{198, 18, byte(i % exporters / 256), byte(i % exporters % 256)})
		recs[i] = flow.Record{Kind: flow.KindIPFIX, ObserverIP: e, ExporterAddr: e, ObservationDomain: domain,
			Received: now, Start: now.Add(-time.Minute), End: now.Add(-time.Duration(i) * time.Millisecond),
			SrcAddr: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), DstAddr: netip.MustParseAddr("10.255.0.1"),
			SrcPort: uint16(1024 + i%50000), DstPort: 443, Proto: 6, Bytes: uint64(100 + i), Packets: 1 + uint64(i%7)}
	}
	return recs
}

// publish writes recs through the collector's Kafka output in batches of
// one exporter's records, as the pipeline does per datagram, and waits
// for the brokers' acknowledgement.
func publish(t testing.TB, cfg kafkaconn.Configuration, recs []flow.Record, exporters int) {
	t.Helper()
	oc := kafka.DefaultConfiguration()
	oc.Connection, oc.CreatePartitions = cfg, 4
	out, err := kafka.New(reporter.NewForTest(nil), oc)
	if err != nil {
		t.Fatal(err)
	}
	if err := out.Start(); err != nil {
		t.Fatal(err)
	}
	byExporter := make([][]flow.Record, exporters)
	for i, r := range recs {
		byExporter[i%exporters] = append(byExporter[i%exporters], r)
	}
	for len(byExporter[0]) > 0 {
		for e, rs := range byExporter {
			n := min(len(rs), 25)
			if err := out.Write(rs[:n]); err != nil {
				t.Fatal(err)
			}
			byExporter[e] = rs[n:]
		}
	}
	if err := out.Stop(); err != nil {
		t.Fatal(err)
	}
}

func esOutput(t testing.TB, url string) *elasticsearch.Output {
	c := elasticsearch.DefaultConfiguration()
	c.Connection.URLs = []string{url}
	c.SpoolDir = filepath.Join(t.TempDir(), "spool")
	c.RunSetup = true
	o, err := elasticsearch.New(reporter.NewForTest(nil), c)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	return o
}

func indexerConfig(brokers, topic, group string) indexer.Configuration {
	c := indexer.DefaultConfiguration()
	c.Connection.Brokers, c.Connection.Topic, c.Group = []string{brokers}, topic, group
	c.SessionTimeout = 6 * time.Second
	c.MaxPollMessages = 20 // many small batches: a kill lands between commits
	return c
}

// TestIndexerHelper is the indexer process TestKilledIndexerLosesNothing
// kills with SIGKILL: it indexes until killed, printing its progress.
func TestIndexerHelper(t *testing.T) {
	if os.Getenv("SPANFLOW_INDEXER_HELPER") == "" {
		t.Skip("run by TestKilledIndexerLosesNothing")
	}
	out := esOutput(t, os.Getenv("SPANFLOW_ES_URL"))
	var done int
	ix, err := indexer.New(reporter.NewForTest(os.Stderr), indexerConfig(os.Getenv("SPANFLOW_KAFKA_BROKERS"),
		os.Getenv("SPANFLOW_INDEXER_TOPIC"), os.Getenv("SPANFLOW_INDEXER_GROUP")), indexer.Dependencies{
		Sinks: []indexer.NamedSink{{Name: "elasticsearch", Sink: indexer.SinkFunc(func(ctx context.Context, recs []flow.Record) error {
			if err := out.IndexNow(ctx, recs); err != nil {
				return err
			}
			done += len(recs)
			fmt.Printf("indexed %d\n", done)
			time.Sleep(20 * time.Millisecond) // slow, so that the kill comes mid-run
			return nil
		})}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Start(); err != nil {
		t.Fatal(err)
	}
	select {}
}

// TestKilledIndexerLosesNothing: flows published through the collector's
// Kafka output are consumed by two indexers in one group; one is killed
// with SIGKILL mid-run, the other takes its partitions and replays what was
// not committed. Every flow is then in Elasticsearch exactly once: as many
// documents as flows published, and every flow's id among them.
func TestKilledIndexerLosesNothing(t *testing.T) {
	brokers, esURL := testutil.Kafka(t), testutil.Elasticsearch(t)
	const n, exporters = 20000, 100
	domain := rand.Uint32N(1<<31) + 1
	run := strconv.FormatUint(uint64(domain), 36)
	conn := kafkaconn.DefaultConfiguration()
	conn.Brokers, conn.Topic = []string{brokers}, "spanflow-test-"+run
	recs := genFlows(n, exporters, domain)
	publish(t, conn, recs, exporters)

	// The process to kill.
	cmd := exec.Command(os.Args[0], "-test.run", "^TestIndexerHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "SPANFLOW_INDEXER_HELPER=1", "SPANFLOW_ES_URL="+esURL, "SPANFLOW_KAFKA_BROKERS="+brokers,
		"SPANFLOW_INDEXER_TOPIC="+conn.Topic, "SPANFLOW_INDEXER_GROUP=g-"+run)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	// The survivor.
	out := esOutput(t, esURL)
	defer out.Stop()
	ix, err := indexer.New(reporter.NewForTest(testWriter{t}), indexerConfig(brokers, conn.Topic, "g-"+run), indexer.Dependencies{
		Sinks: []indexer.NamedSink{{Name: "elasticsearch", Sink: indexer.SinkFunc(func(ctx context.Context, recs []flow.Record) error {
			time.Sleep(20 * time.Millisecond)
			return out.IndexNow(ctx, recs)
		})}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Start(); err != nil {
		t.Fatal(err)
	}
	defer ix.Stop()

	// Kill the helper once it has indexed a good part of its share.
	sc := bufio.NewScanner(stdout)
	killedAt := 0
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "indexed "); ok {
			if killedAt, _ = strconv.Atoi(v); killedAt >= n/8 {
				break
			}
		}
	}
	if killedAt < n/8 {
		t.Fatalf("the helper indexer stopped after %d flows: %v", killedAt, sc.Err())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	t.Logf("helper killed after indexing %d flows", killedAt)

	deadline := time.Now().Add(3 * time.Minute)
	got := 0
	for time.Now().Before(deadline) {
		if got = countDomain(t, esURL, domain); got >= n {
			break
		}
		time.Sleep(2 * time.Second)
	}
	time.Sleep(3 * time.Second) // a late duplicate would show now
	got = countDomain(t, esURL, domain)
	if got != n {
		t.Fatalf("%d documents for %d flows published", got, n)
	}
	ids := make([]string, n)
	for i := range recs {
		ids[i] = elasticsearch.DocumentID(&recs[i])
	}
	if missing := missingIDs(t, esURL, ids); len(missing) > 0 {
		t.Fatalf("%d flows missing, e.g. %v", len(missing), missing[:min(5, len(missing))])
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// countDomain counts the documents of observation domain d, after a refresh.
func countDomain(t testing.TB, url string, d uint32) int {
	t.Helper()
	if r, err := http.Post(url+"/spanflow-flows*/_refresh", "application/json", nil); err == nil {
		r.Body.Close()
	}
	q := fmt.Sprintf(`{"query":{"term":{"netflow.observation_domain_id":%d}}}`, d)
	r, err := http.Post(url+"/spanflow-flows*/_count", "application/json", strings.NewReader(q))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var res struct{ Count int }
	if err := json.NewDecoder(r.Body).Decode(&res); err != nil {
		t.Fatal(err)
	}
	return res.Count
}

// missingIDs returns the ids not found in the flow indices.
func missingIDs(t *testing.T, url string, ids []string) []string {
	t.Helper()
	var missing []string
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), 5000)]
		ids = ids[len(chunk):]
		q, _ := json.Marshal(map[string]any{"size": len(chunk), "_source": false,
			"query": map[string]any{"ids": map[string]any{"values": chunk}}})
		r, err := http.Post(url+"/spanflow-flows*/_search", "application/json", strings.NewReader(string(q)))
		if err != nil {
			t.Fatal(err)
		}
		var res struct {
			Hits struct {
				Hits []struct {
					ID string `json:"_id"`
				}
			}
		}
		err = json.NewDecoder(r.Body).Decode(&res)
		r.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		found := map[string]bool{}
		for _, h := range res.Hits.Hits {
			found[h.ID] = true
		}
		for _, id := range chunk {
			if !found[id] {
				missing = append(missing, id)
			}
		}
	}
	return missing
}

// TestElasticsearchOutageLagThenDrain: while Elasticsearch refuses every
// bulk request (503), the indexer commits nothing and its consumer lag
// stays up; once the cluster is back, the lag drains to zero and every
// flow is in the index exactly once.
func TestElasticsearchOutageLagThenDrain(t *testing.T) {
	brokers, esURL := testutil.Kafka(t), testutil.Elasticsearch(t)
	const n, exporters = 5000, 20
	domain := rand.Uint32N(1<<31) + 1
	run := strconv.FormatUint(uint64(domain), 36)
	conn := kafkaconn.DefaultConfiguration()
	conn.Brokers, conn.Topic = []string{brokers}, "spanflow-test-"+run
	publish(t, conn, genFlows(n, exporters, domain), exporters)

	var down atomic.Bool
	down.Store(true)
	target, _ := url.Parse(esURL)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() && strings.Contains(r.URL.Path, "_bulk") {
			http.Error(w, `{"error":"down for the test"}`, http.StatusServiceUnavailable)
			return
		}
		httputil.NewSingleHostReverseProxy(target).ServeHTTP(w, r)
	}))
	defer proxy.Close()
	out := esOutput(t, proxy.URL)
	defer out.Stop()
	r := reporter.NewForTest(testWriter{t})
	ix, err := indexer.New(r, indexerConfig(brokers, conn.Topic, "g-"+run), indexer.Dependencies{
		Sinks: []indexer.NamedSink{{Name: "elasticsearch", Sink: indexer.SinkFunc(out.IndexNow)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Start(); err != nil {
		t.Fatal(err)
	}
	defer ix.Stop()
	metric := func(name string) float64 {
		fams, err := r.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() == name {
				v := 0.0
				for _, m := range f.GetMetric() {
					v += m.GetGauge().GetValue() + m.GetCounter().GetValue()
				}
				return v
			}
		}
		t.Fatalf("no metric %s", name)
		return 0
	}
	for deadline := time.Now().Add(time.Minute); metric("spanflow_indexer_consumer_lag_messages") == 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no consumer lag while Elasticsearch is down")
		}
	}
	time.Sleep(2 * time.Second)
	if got := countDomain(t, esURL, domain); got != 0 {
		t.Fatalf("%d documents indexed while the cluster refused bulk requests", got)
	}
	if c := metric("spanflow_indexer_commits_total"); c != 0 {
		t.Fatalf("%v commits while nothing was indexed", c)
	}
	down.Store(false)
	for deadline := time.Now().Add(2 * time.Minute); metric("spanflow_indexer_consumer_lag_messages") > 0 || countDomain(t, esURL, domain) < n; time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("lag %v, %d of %d documents two minutes after the cluster came back",
				metric("spanflow_indexer_consumer_lag_messages"), countDomain(t, esURL, domain), n)
		}
	}
	if got := countDomain(t, esURL, domain); got != n {
		t.Fatalf("%d documents for %d flows", got, n)
	}
	testutil.LintMetrics(t, r.Registry, "spanflow_")
}

// TestIndexerLargePolls: a poll of many large messages (1,024 records
// each, as a datagram of tiny IPFIX records makes them) reaches the outputs
// a part at a time, not decoded whole, and every record reaches them.
func TestIndexerLargePolls(t *testing.T) {
	brokers := testutil.Kafka(t)
	topic := fmt.Sprintf("spanflow-large-polls-%d", rand.Uint32())
	kc := indexerConfig(brokers, topic, topic)
	const n = 60 * 1024
	recs := genFlows(n, 1, 7)
	oc := kafka.DefaultConfiguration()
	oc.Connection, oc.CreatePartitions = kc.Connection, 1
	out, err := kafka.New(reporter.NewForTest(nil), oc)
	if err != nil {
		t.Fatal(err)
	}
	if err := out.Start(); err != nil {
		t.Fatal(err)
	}
	if err := out.Write(recs); err != nil { // one exporter: messages of 1,024
		t.Fatal(err)
	}
	if err := out.Stop(); err != nil {
		t.Fatal(err)
	}
	kc.MaxPollMessages = 1000
	var total, most atomic.Int64
	ix, err := indexer.New(reporter.NewForTest(nil), kc, indexer.Dependencies{
		Sinks: []indexer.NamedSink{{Name: "count", Sink: indexer.SinkFunc(func(_ context.Context, rs []flow.Record) error {
			total.Add(int64(len(rs)))
			for m := most.Load(); int64(len(rs)) > m && !most.CompareAndSwap(m, int64(len(rs))); m = most.Load() {
			}
			return nil
		})}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for total.Load() < n && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if err := ix.Stop(); err != nil {
		t.Fatal(err)
	}
	if total.Load() != n {
		t.Fatalf("%d records reached the output, want %d", total.Load(), n)
	}
	if m := most.Load(); m > 16384+1024 {
		t.Errorf("one Index call of %d records: the poll was decoded whole", m)
	}
}
