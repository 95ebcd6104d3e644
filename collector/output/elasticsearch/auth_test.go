package elasticsearch

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// authProxy stands in front of the test cluster (which runs without
// security) and demands credentials the way a secured cluster does: basic
// auth or an API key, 401 otherwise.
func authProxy(t *testing.T, target, user, password, apiKey string) (string, *atomic.Int64) {
	return refusingProxy(t, target, func(w http.ResponseWriter, r *http.Request) bool {
		u, p, basic := r.BasicAuth()
		// The scheme is case-insensitive (the Go client sends "APIKey").
		scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if (basic && u == user && p == password) || (strings.EqualFold(scheme, "ApiKey") && cred == apiKey) {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="security", ApiKey`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":{"type":"security_exception","reason":"missing authentication credentials for REST request"},"status":401}`))
		return true
	})
}

// refusingProxy passes requests on to the cluster at target, except those
// refuse answers itself (returning true), which it counts.
func refusingProxy(t *testing.T, target string, refuse func(http.ResponseWriter, *http.Request) bool) (string, *atomic.Int64) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	var refused atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if refuse(w, r) {
			refused.Add(1)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &refused
}

// hangingBulkProxy passes requests on to the cluster at target but holds bulk
// requests unanswered, like an overloaded node, until the test ends or the
// client gives up.
func hangingBulkProxy(t *testing.T, target string) string {
	t.Helper()
	release := make(chan struct{})
	proxyURL, _ := refusingProxy(t, target, func(_ http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, "/_bulk") {
			return false
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return true
	})
	// Registered after the server's Close, so it runs first: Close waits for
	// the held requests.
	t.Cleanup(func() { close(release) })
	return proxyURL
}

// TestAuth: without credentials the output refuses to start (the template
// cannot be installed); with a user/password from the environment or an API
// key from a file it indexes; the secrets never reach the log.
func TestAuth(t *testing.T) {
	target := testutil.Elasticsearch(t)
	const user, password, apiKey = "spanflow-writer", "pa55-w0rd-not-in-logs", "a2V5aWQ6c2VjcmV0LWFwaS1rZXk="
	proxyURL, refused := authProxy(t, target, user, password, apiKey)
	day := time.Date(2001, 3, 4, 0, 0, 0, 0, time.UTC)
	c, index := freshDayIndex(t, target, day)
	for _, env := range []string{"SPANFLOW_ES_USER", "SPANFLOW_ES_PASSWORD", "SPANFLOW_ES_API_KEY"} {
		t.Setenv(env, "")
	}

	t.Run("no credentials", func(t *testing.T) {
		o, _ := newTestOutput(t, []string{proxyURL}, t.TempDir(), nil)
		defer o.Stop()
		before := refused.Load()
		err := o.Start()
		if err == nil || !strings.Contains(err.Error(), "401") {
			t.Fatalf("start without credentials: %v, want a 401 refusal", err)
		}
		if refused.Load() == before {
			t.Error("the proxy saw no request")
		}
	})
	// The proxy speaks plain http: credentials to it must be allowed
	// explicitly, and are refused otherwise.
	insecure := func(c *Configuration) { c.Connection.AllowInsecureCredentials = true }
	t.Run("credentials in clear text refused", func(t *testing.T) {
		t.Setenv("SPANFLOW_ES_USER", user)
		t.Setenv("SPANFLOW_ES_PASSWORD", password)
		c := DefaultConfiguration()
		c.Connection.URLs, c.SpoolDir = []string{proxyURL}, t.TempDir()
		before := refused.Load()
		if _, err := New(reporter.NewForTest(nil), c); err == nil || !strings.Contains(err.Error(), "clear text") {
			t.Errorf("credentials over http: %v", err)
		}
		if refused.Load() != before {
			t.Error("a request went out")
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		t.Setenv("SPANFLOW_ES_USER", user)
		t.Setenv("SPANFLOW_ES_PASSWORD", "wrong")
		o, _ := newTestOutput(t, []string{proxyURL}, t.TempDir(), insecure)
		defer o.Stop()
		if err := o.Start(); err == nil {
			t.Fatal("started with a wrong password")
		}
	})
	recs, tr := genRecords(2000, day, 4)
	t.Run("user and password from the environment", func(t *testing.T) {
		t.Setenv("SPANFLOW_ES_USER", user)
		t.Setenv("SPANFLOW_ES_PASSWORD", password)
		o, logs := newTestOutput(t, []string{proxyURL}, t.TempDir(), insecure)
		if err := o.Start(); err != nil {
			t.Fatal(err)
		}
		writeAll(t, o, recs[:1000], 100)
		waitSpoolEmpty(t, o, time.Minute)
		if err := o.Stop(); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(logs.String(), password) {
			t.Errorf("the password is in the log:\n%s", logs)
		}
	})
	t.Run("API key from a file", func(t *testing.T) {
		keyFile := filepath.Join(t.TempDir(), "api-key")
		if err := os.WriteFile(keyFile, []byte(apiKey+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		o, logs := newTestOutput(t, []string{proxyURL}, t.TempDir(), func(c *Configuration) {
			insecure(c)
			c.Connection.APIKeyFile = keyFile
		})
		if err := o.Start(); err != nil {
			t.Fatal(err)
		}
		writeAll(t, o, recs[1000:], 100)
		waitSpoolEmpty(t, o, time.Minute)
		if err := o.Stop(); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(logs.String(), apiKey) {
			t.Errorf("the API key is in the log:\n%s", logs)
		}
	})
	checkTruth(t, c, index, tr)
}

// TestStopOnHungCluster: the cluster accepts bulk requests and never
// answers. Stop must not wait for it longer than the drain timeout, and
// must leave every document in the spool; the next start replays them.
func TestStopOnHungCluster(t *testing.T) {
	target := testutil.Elasticsearch(t)
	proxyURL := hangingBulkProxy(t, target)

	day := time.Date(2001, 3, 6, 0, 0, 0, 0, time.UTC)
	c, index := freshDayIndex(t, target, day)
	recs, tr := genRecords(3000, day, 6)
	dir := t.TempDir()
	o, _ := newTestOutput(t, []string{proxyURL}, dir, func(c *Configuration) {
		c.Connection.Timeout = 5 * time.Minute
		c.DrainTimeout = 2 * time.Second
		c.FlushInterval = 100 * time.Millisecond
	})
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	writeAll(t, o, recs, 100)
	time.Sleep(300 * time.Millisecond) // let the workers send (and hang)
	start := time.Now()
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("stop took %s with a 2s drain timeout", took)
	}
	if docs, _ := o.spool.Stats(); docs != int64(len(recs)) {
		t.Errorf("spool holds %d documents after stop, want all %d", docs, len(recs))
	}
	replayAndCheck(t, target, dir, nil, c, index, tr)
}
