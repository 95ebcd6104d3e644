package elasticsearch

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	es "github.com/elastic/go-elasticsearch/v8"

	"github.com/spanflow/spanflow/collector/output/elasticsearch/setup"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// closedPort returns the URL of a local port nobody listens on, and up,
// which starts there a reverse proxy to the cluster at target that records
// every request (method and path) in order.
func closedPort(t *testing.T, target string) (string, func() func() []string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	up := func() func() []string {
		u, err := url.Parse(target)
		if err != nil {
			t.Fatal(err)
		}
		proxy := httputil.NewSingleHostReverseProxy(u)
		var mu sync.Mutex
		var seen []string
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listen again on %s: %v", addr, err)
		}
		srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.Method+" "+r.URL.Path)
			mu.Unlock()
			proxy.ServeHTTP(w, r)
		})}}
		srv.Start()
		t.Cleanup(srv.Close)
		return func() []string {
			mu.Lock()
			defer mu.Unlock()
			return append([]string(nil), seen...)
		}
	}
	return "http://" + addr, up
}

// fieldType reads the type an index maps a field with.
func fieldType(t *testing.T, c *es.Client, index, field string) string {
	t.Helper()
	var out map[string]struct {
		Mappings map[string]struct {
			Mapping map[string]struct {
				Type string `json:"type"`
			} `json:"mapping"`
		} `json:"mappings"`
	}
	request(t, c, http.MethodGet, "/"+index+"/_mapping/field/"+field, "", &out)
	for _, m := range out {
		for _, f := range m.Mappings[field].Mapping {
			return f.Type
		}
	}
	return ""
}

var summaryLine = regexp.MustCompile(`Elasticsearch output stopped: indexed (\d+), replayed (\d+) from the spool, (\d+) lost[^"]*`)

// stopSummary returns the numbers of the stop summary and its text.
func stopSummary(t *testing.T, logs string) (indexed, replayed, lost int, text string) {
	t.Helper()
	m := summaryLine.FindStringSubmatch(logs)
	if m == nil {
		t.Fatalf("no stop summary in the log:\n%s", logs)
	}
	fmt.Sscan(m[1], &indexed)
	fmt.Sscan(m[2], &replayed)
	fmt.Sscan(m[3], &lost)
	return indexed, replayed, lost, m[0]
}

// TestStartWithoutCluster: the cluster does not answer at start (its URL
// is a closed port). The output starts anyway and says so, spools every
// document, and when the cluster comes up (a proxy to it opens on that
// port) installs the template before the first bulk request, then replays
// every document. The stop summary accounts for each, as the metrics do.
func TestStartWithoutCluster(t *testing.T) {
	target := testutil.Elasticsearch(t)
	day := time.Date(2001, 4, 10, 0, 0, 0, 0, time.UTC)
	c, index := freshDayIndex(t, target, day)
	esURL, up := closedPort(t, target)
	recs, tr := genRecords(3000, day, 51)
	o, logs := newWatchedOutput(t, []string{esURL}, t.TempDir(), func(c *Configuration) {
		c.ReplayBackoffMax = time.Second
	})
	if err := o.Start(); err != nil {
		t.Fatalf("start with the cluster unreachable: %v", err)
	}
	defer o.Stop()
	defer func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs)
		}
	}()
	line := waitLog(t, logs, "Elasticsearch does not answer; started anyway", time.Second)
	if line["level"] != "WARN" || !strings.Contains(line["error"], "connection refused") {
		t.Errorf("start warning %v: want WARN with the connection error", line)
	}
	writeAll(t, o, recs, 100)
	if docs, _ := o.spool.Stats(); docs != int64(len(recs)) {
		t.Fatalf("spool holds %d documents before the cluster answers, want %d", docs, len(recs))
	}
	requests := up()
	waitLog(t, logs, "Elasticsearch answers: installed the index template", time.Minute)
	waitSpoolEmpty(t, o, time.Minute)
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	checkTruth(t, c, index, tr)
	if typ := fieldType(t, c, index, "source.ip"); typ != "ip" {
		t.Errorf("source.ip is mapped %q, want ip (the template's)", typ)
	}
	template, bulk := -1, -1
	for i, r := range requests() {
		if template < 0 && r == "PUT /_index_template/"+setup.TemplateName {
			template = i
		}
		if bulk < 0 && strings.HasSuffix(r, "/_bulk") {
			bulk = i
		}
	}
	if template < 0 || bulk < 0 || template > bulk {
		t.Errorf("template installed at request %d, first bulk request at %d: want the template first\n%v", template, bulk, requests())
	}
	indexed, replayed, lost, text := stopSummary(t, logs.String())
	if indexed != 0 || replayed != len(recs) || lost != 0 || strings.Contains(text, "spool for the next start") {
		t.Errorf("stop summary %q: want indexed 0, replayed %d from the spool, 0 lost, nothing kept", text, len(recs))
	}
	if float64(replayed) != metric(o, "replayed") || float64(indexed) != metric(o, "indexed") {
		t.Errorf("stop summary %q, metrics indexed=%v replayed=%v", text, metric(o, "indexed"), metric(o, "replayed"))
	}
}

// TestStartRefusedTemplate: a cluster that answers and refuses the template
// (here: a data stream asked of a cluster without ILM) still stops the
// start, with one line: waiting would not cure it.
func TestStartRefusedTemplate(t *testing.T) {
	target := testutil.Elasticsearch(t)
	caps, err := setup.Detect(t.Context(), testClient(t, target))
	if err != nil {
		t.Fatal(err)
	}
	if caps.ILM && caps.DataStreams {
		t.Skip("the test cluster has ILM and data streams: it would accept the data-stream layout")
	}
	o, _ := newTestOutput(t, []string{target}, t.TempDir(), func(c *Configuration) {
		c.Setup.Lifecycle = setup.LifecycleDataStream
	})
	err = o.Start()
	if err == nil {
		o.Stop()
		t.Fatal("started although the cluster cannot hold the configured layout")
	}
	if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "index template") || !strings.Contains(err.Error(), "--es-lifecycle daily") {
		t.Errorf("error %q: want one line about the template and what to do", err)
	}
	o.Stop()
}

// TestTemplateReinstalledBeforeReplay: the cluster goes away with
// documents spooled and comes back without the template (rebuilt). Before
// replaying, the output installs the template again: the index the replay
// creates has the template's mappings (source.ip an ip, not text), and
// every document is there. A node of the test's own: the shared cluster's
// template must not be deleted under other tests.
func TestTemplateReinstalledBeforeReplay(t *testing.T) {
	n := startNode(t)
	day := time.Date(2001, 4, 11, 0, 0, 0, 0, time.UTC)
	index := setup.Layout{}.Index(day)
	c := testClient(t, n.url)
	proxy, down := downProxy(t, n.url)
	recs, tr := genRecords(3000, day, 52)
	o, logs := newWatchedOutput(t, []string{proxy}, t.TempDir(), func(c *Configuration) {
		c.ReplayBackoffMax = time.Second
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
	down.Store(true)
	writeAll(t, o, recs, 100)
	waitFor(t, "every document spooled", time.Minute, func() bool {
		docs, _ := o.spool.Stats()
		return docs == int64(len(recs))
	})
	// The cluster is rebuilt: no template, no index.
	if st := request(t, c, http.MethodDelete, "/_index_template/"+setup.TemplateName, "", nil); st != 200 {
		t.Fatalf("delete the template: status %d", st)
	}
	deleteIndex(t, c, index)
	down.Store(false)
	waitSpoolEmpty(t, o, time.Minute)
	if !strings.Contains(logs.String(), "the Elasticsearch index template was missing") {
		t.Error("no log line saying the template was missing and installed again")
	}
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	if st := request(t, c, http.MethodHead, "/_index_template/"+setup.TemplateName, "", nil); st != 200 {
		t.Errorf("template not on the cluster after the replay: status %d", st)
	}
	if typ := fieldType(t, c, index, "source.ip"); typ != "ip" {
		t.Errorf("the replay created %s with source.ip mapped %q: want ip, the template's", index, typ)
	}
	checkTruth(t, c, index, tr)
	_, replayed, lost, text := stopSummary(t, logs.String())
	if replayed != len(recs) || lost != 0 {
		t.Errorf("stop summary %q: want %d replayed, 0 lost", text, len(recs))
	}
}

// TestSpoolDirNotWritable: a spool directory that cannot be created or
// written is refused at New, and the error names the flag that moves it.
func TestSpoolDirNotWritable(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	readOnly := filepath.Join(dir, "ro")
	if err := os.Mkdir(readOnly, 0o500); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{"under a file": filepath.Join(file, "spool")}
	if os.Geteuid() != 0 { // root writes into a 0500 directory
		cases["read-only directory"] = readOnly
	}
	for name, spool := range cases {
		c := DefaultConfiguration()
		c.Connection.URLs = []string{"http://127.0.0.1:1"}
		c.SpoolDir = spool
		_, err := New(reporter.NewForTest(nil), c)
		if err == nil || !strings.Contains(err.Error(), "--es-spool-dir") || !strings.Contains(err.Error(), spool) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v: want one line naming %s and --es-spool-dir", name, err, spool)
		}
	}
}
