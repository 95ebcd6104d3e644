package elasticsearch

import (
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// newWatchedOutput is newTestOutput with a log the test can read while the
// output runs.
func newWatchedOutput(t *testing.T, urls []string, dir string, tweak func(*Configuration)) (*Output, *testutil.SyncBuffer) {
	t.Helper()
	c := DefaultConfiguration()
	c.Connection.URLs = urls
	c.SpoolDir = filepath.Join(dir, "spool")
	if tweak != nil {
		tweak(&c)
	}
	logs := &testutil.SyncBuffer{}
	o, err := New(reporter.NewForTest(logs), c)
	if err != nil {
		t.Fatal(err)
	}
	return o, logs
}

// downProxy passes requests on to the cluster at target, or, while down is
// set, answers every one 503 like a cluster without a master.
func downProxy(t *testing.T, target string) (string, *atomic.Bool) {
	down := new(atomic.Bool)
	url, _ := refusingProxy(t, target, func(w http.ResponseWriter, _ *http.Request) bool {
		if !down.Load() {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":{"type":"master_not_discovered_exception","reason":null},"status":503}`))
		return true
	})
	return url, down
}

func waitFor(t *testing.T, what string, within time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %s", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var logField = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S+)`)

// waitLog waits until a log line holds msg and returns its fields.
func waitLog(t *testing.T, logs *testutil.SyncBuffer, msg string, within time.Duration) map[string]string {
	t.Helper()
	var line string
	waitFor(t, "log line "+msg, within, func() bool {
		for l := range strings.Lines(logs.String()) {
			if strings.Contains(l, msg) {
				line = l
				return true
			}
		}
		return false
	})
	fields := map[string]string{}
	for _, m := range logField.FindAllStringSubmatch(line, -1) {
		fields[m[1]] = m[2]
	}
	return fields
}

// gauge reads a gauge of the output's registry.
func gauge(t *testing.T, o *Output, name string) float64 {
	t.Helper()
	families, err := o.r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestHungClusterNoticed: the cluster accepts bulk requests and never
// answers (its timeout, 5 minutes here, is far away). Within seconds one
// warning says so, with every document waiting, and the gauge of the
// oldest unanswered request shows it.
func TestHungClusterNoticed(t *testing.T) {
	target := testutil.Elasticsearch(t)
	proxyURL := hangingBulkProxy(t, target)
	day := time.Date(2001, 4, 2, 0, 0, 0, 0, time.UTC)
	recs, _ := genRecords(3000, day, 42)
	o, logs := newWatchedOutput(t, []string{proxyURL}, t.TempDir(), func(c *Configuration) {
		c.Connection.Timeout = 5 * time.Minute
		c.DrainTimeout = 2 * time.Second
		c.FlushInterval = 100 * time.Millisecond
	})
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	defer o.Stop()
	writeAll(t, o, recs, 100)
	// A deadline, not a measurement: the warning is due 5 s after the
	// first request left; before this change it came after the timeout.
	const msg = "Elasticsearch does not answer bulk requests"
	line := waitLog(t, logs, msg, 10*time.Second)
	defer func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs)
		}
	}()
	if line["level"] != "WARN" || line["documents_waiting"] != "3000" {
		t.Errorf("warning %v: want level WARN and all 3000 documents waiting", line)
	}
	if age := gauge(t, o, "spanflow_elasticsearch_bulk_unanswered_seconds"); age < o.config.warnAfter().Seconds() {
		t.Errorf("oldest unanswered request %.1fs old, want at least %s", age, o.config.warnAfter())
	}
	// The other request in flight passes the threshold within
	// FlushInterval of the first: still one warning for the outage.
	time.Sleep(time.Second)
	if n := strings.Count(logs.String(), msg); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, logs)
	}
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	if docs, _ := o.spool.Stats(); docs != int64(len(recs)) {
		t.Errorf("spool holds %d documents after stop, want all %d", docs, len(recs))
	}
}

// TestOutageEndLogged: the cluster answers 503 for a while, documents go to
// the spool; when it is back, one line says the outage is over, how long it
// lasted, and what was spooled, replayed and lost, and those numbers are
// the counters'.
func TestOutageEndLogged(t *testing.T) {
	target := testutil.Elasticsearch(t)
	day := time.Date(2001, 4, 3, 0, 0, 0, 0, time.UTC)
	c, index := freshDayIndex(t, target, day)
	proxy, down := downProxy(t, target)
	recs, tr := genRecords(3000, day, 43)
	o, logs := newWatchedOutput(t, []string{proxy}, t.TempDir(), func(c *Configuration) {
		c.ReplayBackoffMax = time.Second
	})
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	defer o.Stop()
	writeAll(t, o, recs[:1000], 100)
	waitFor(t, "live indexing", 30*time.Second, func() bool { return metric(o, "indexed") == 1000 })
	began := time.Now()
	down.Store(true)
	writeAll(t, o, recs[1000:2000], 100) // queued, refused, spooled
	waitFor(t, "spooled documents", 30*time.Second, func() bool {
		docs, _ := o.spool.Stats()
		return docs == 1000
	})
	writeAll(t, o, recs[2000:], 100) // straight to the spool
	down.Store(false)
	const msg = "Elasticsearch outage over"
	line := waitLog(t, logs, msg, time.Minute)
	took := time.Since(began)
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs)
		}
	}()
	checkTruth(t, c, index, tr)
	if line["level"] != "INFO" || line["spooled"] != "2000" || line["replayed"] != "2000" || line["lost"] != "0" {
		t.Errorf("outage line %v: want INFO, spooled=2000 replayed=2000 lost=0", line)
	}
	if line["spooled"] != fmt.Sprint(metric(o, "spooled")) || line["replayed"] != fmt.Sprint(metric(o, "replayed")) {
		t.Errorf("outage line %v, counters spooled=%v replayed=%v", line, metric(o, "spooled"), metric(o, "replayed"))
	}
	if lasted, err := time.ParseDuration(line["lasted"]); err != nil || lasted <= 0 || lasted > took {
		t.Errorf("outage lasted %q: want a duration within the %s the test was down", line["lasted"], took)
	}
	if n := strings.Count(logs.String(), msg); n != 1 {
		t.Errorf("%d outage-over lines, want 1", n)
	}
}

// TestOutageNotEndedByAnOlderAnswer: the answer to a request sent before
// the failure (it was on its way when the cluster went) does not end the
// outage; the answer to a request sent after it does. TestOutageEndLogged
// once saw the first under load: the last live request's answer came
// after the first failure and ended the outage with nothing replayed.
func TestOutageNotEndedByAnOlderAnswer(t *testing.T) {
	o, logs := newWatchedOutput(t, []string{"http://127.0.0.1:1"}, t.TempDir(), nil)
	defer o.Stop()
	older := time.Now()
	o.failing(older.Add(time.Second))
	o.answering(older)
	const msg = "Elasticsearch outage over"
	if strings.Contains(logs.String(), msg) {
		t.Fatalf("an answer to a request sent before the failure ended the outage:\n%s", logs)
	}
	o.answering(older.Add(2 * time.Second))
	if n := strings.Count(logs.String(), msg); n != 1 {
		t.Errorf("%d outage-over lines after an answer to a later request, want 1:\n%s", n, logs)
	}
}
