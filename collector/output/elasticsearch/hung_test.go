package elasticsearch

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/output/elasticsearch/setup"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// frozenPort returns the URL of a local port that accepts connections and
// answers nothing, like a cluster whose process is stopped (SIGSTOP, a
// long garbage collection), and thaw, after which every connection, held
// ones included, is passed on to the cluster at target: the process goes
// on (SIGCONT) and answers what was sent meanwhile.
func frozenPort(t *testing.T, target string) (string, func()) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	thawed := make(chan struct{})
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(done)
		l.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				select {
				case <-thawed:
				case <-done:
					return
				}
				up, err := net.Dial("tcp", u.Host)
				if err != nil {
					return
				}
				defer up.Close()
				go func() {
					<-done
					c.Close()
					up.Close()
				}()
				go io.Copy(up, c)
				io.Copy(c, up)
			})
		}
	})
	var once sync.Once
	return "http://" + l.Addr().String(), func() { once.Do(func() { close(thawed) }) }
}

// TestStartWithFrozenCluster: the cluster accepts connections and answers
// nothing when the output starts. Start returns within seconds, as for a
// cluster that refuses connections (the collector opens its listeners
// after its outputs started: a Start waiting for the cluster lost the
// flows of that wait), says the cluster does not answer, and spools every
// document; once the cluster answers, the template is installed (or, with
// --es-setup=false, the layout asked) and every document indexed.
func TestStartWithFrozenCluster(t *testing.T) {
	target := testutil.Elasticsearch(t)
	for i, runSetup := range []bool{true, false} {
		name := "setup"
		if !runSetup {
			name = "no setup"
		}
		t.Run(name, func(t *testing.T) {
			day := time.Date(2001, 5, 20+i, 0, 0, 0, 0, time.UTC)
			c, index := freshDayIndex(t, target, day)
			if !runSetup {
				// Without setup at start, `spanflow es setup` is run separately.
				if _, err := setup.Install(t.Context(), c, setup.DefaultConfiguration()); err != nil {
					t.Fatal(err)
				}
			}
			esURL, thaw := frozenPort(t, target)
			recs, tr := genRecords(3000, day, uint64(60+i))
			o, logs := newWatchedOutput(t, []string{esURL}, t.TempDir(), func(c *Configuration) {
				c.ReplayBackoffMax = time.Second
				c.RunSetup = runSetup
			})
			defer func() {
				if t.Failed() {
					t.Logf("log:\n%s", logs)
				}
			}()
			start := time.Now()
			if err := o.Start(); err != nil {
				t.Fatalf("start with the cluster frozen: %v", err)
			}
			defer o.Stop()
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("Start took %s with the cluster frozen: want a few seconds at most", took.Round(time.Millisecond))
			}
			line := waitLog(t, logs, "Elasticsearch does not answer; started anyway", time.Second)
			if line["level"] != "WARN" {
				t.Errorf("start warning %v: want WARN", line)
			}
			writeAll(t, o, recs, 100)
			if docs, _ := o.spool.Stats(); docs != int64(len(recs)) {
				t.Fatalf("spool holds %d documents before the cluster answers, want %d", docs, len(recs))
			}
			thaw()
			waitSpoolEmpty(t, o, time.Minute)
			if err := o.Stop(); err != nil {
				t.Fatal(err)
			}
			checkTruth(t, c, index, tr)
			if typ := fieldType(t, c, index, "source.ip"); typ != "ip" {
				t.Errorf("source.ip is mapped %q, want ip (the template's)", typ)
			}
			if _, replayed, lost, text := stopSummary(t, logs.String()); replayed != len(recs) || lost != 0 || strings.Contains(text, "spool for the next start") {
				t.Errorf("stop summary %q: want replayed %d from the spool, 0 lost, nothing kept", text, len(recs))
			}
		})
	}
}

// TestStartRefusesNotElasticsearch: a server that answers at once and is
// not Elasticsearch (no X-Elastic-Product: a proxy that strips it, another
// product) still stops the start, with the reason: waiting would not cure
// it. Only a server that does not answer is waited for in the background.
func TestStartRefusesNotElasticsearch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"green"}`)
	}))
	defer srv.Close()
	c := DefaultConfiguration()
	c.Connection.URLs = []string{srv.URL}
	c.SpoolDir = t.TempDir()
	o, err := New(reporter.NewForTest(nil), c)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Stop()
	if err := o.Start(); err == nil || !strings.Contains(err.Error(), "not Elasticsearch") {
		t.Errorf("start against a server that is not Elasticsearch: %v; want the start refused, saying so", err)
	}
}

// TestNotElasticsearchLaterSaid: the cluster does not answer at start, and
// then a server that is not Elasticsearch answers at its URL (a proxy that
// strips X-Elastic-Product, another product). The log says that, in its
// message, not "Elasticsearch still does not answer" with the reason only
// in error=.
func TestNotElasticsearchLaterSaid(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := DefaultConfiguration()
	c.Connection.URLs = []string{"http://" + addr}
	c.SpoolDir = t.TempDir()
	c.ReplayBackoffMax = time.Second
	logs := &testutil.SyncBuffer{}
	o, err := New(reporter.NewForTest(logs), c)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	defer o.Stop()
	recs, _ := genRecords(100, time.Date(2001, 5, 25, 0, 0, 0, 0, time.UTC), 65)
	writeAll(t, o, recs, 100)
	if l, err = net.Listen("tcp", addr); err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"green"}`)
	})}}
	srv.Start()
	defer srv.Close()
	waitFor(t, "log message saying the server is not Elasticsearch", 15*time.Second, func() bool {
		for l := range strings.Lines(logs.String()) {
			for _, m := range logField.FindAllStringSubmatch(l, -1) {
				if m[1] == "msg" && strings.Contains(m[2], "is not Elasticsearch") {
					return true
				}
			}
		}
		return false
	})
	if docs, _ := o.spool.Stats(); docs != int64(len(recs)) {
		t.Errorf("spool holds %d documents, want %d", docs, len(recs))
	}
}
