package esconn

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/testutil"
)

// TestRealCluster proves the go-elasticsearch v8 client talks to the cluster
// `make test` starts: the product check passes and a document makes the round
// trip through an index.
func TestRealCluster(t *testing.T) {
	url := testutil.Elasticsearch(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := New(Configuration{URLs: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	if err := Ping(ctx, client); err != nil {
		t.Fatalf("product check / health: %v", err)
	}
	index := fmt.Sprintf("spanflow-test-esconn-%d", time.Now().UnixNano())
	defer client.Indices.Delete([]string{index})
	res, err := client.Index(index, strings.NewReader(`{"source":{"ip":"10.1.2.3"},"network":{"bytes":1500}}`),
		client.Index.WithDocumentID("1"), client.Index.WithRefresh("true"), client.Index.WithContext(ctx))
	if err != nil {
		t.Fatalf("index: %v", err)
	}
	res.Body.Close()
	if res.IsError() {
		t.Fatalf("index: %s", res.Status())
	}
	res, err = client.Get(index, "1", client.Get.WithContext(ctx))
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	defer res.Body.Close()
	var got struct {
		Found  bool `json:"found"`
		Source struct {
			Network struct {
				Bytes int `json:"bytes"`
			} `json:"network"`
		} `json:"_source"`
	}
	if err := json.NewDecoder(res.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if !got.Found || got.Source.Network.Bytes != 1500 {
		t.Errorf("round trip returned %+v, want the document with network.bytes 1500", got)
	}
}

func TestCredentialsFromFilesAndEnv(t *testing.T) {
	dir := t.TempDir()
	pw := dir + "/pw"
	if err := writeFile(pw, "s3cret\n"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SPANFLOW_ES_USER", "flows")
	c, err := New(Configuration{URLs: []string{"http://127.0.0.1:1"}, PasswordFile: pw, AllowInsecureCredentials: true})
	if err != nil {
		t.Fatal(err)
	}
	if c == nil {
		t.Fatal("no client")
	}
	if _, err := New(Configuration{URLs: []string{"http://127.0.0.1:1"}, PasswordFile: dir + "/missing"}); err == nil {
		t.Error("a missing password file was accepted")
	}
	if _, err := New(Configuration{}); err == nil || !strings.Contains(err.Error(), "--es-url") {
		t.Errorf("no URL: error %v should tell to give --es-url", err)
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }

// TestTLS puts an HTTPS proxy (its own self-signed certificate) in front of
// the test cluster: the client reaches it with the certificate as CA file or
// with its SHA-256 fingerprint, and refuses it with neither or a wrong one.
func TestTLS(t *testing.T) {
	target := testutil.Elasticsearch(t)
	u, _ := url.Parse(target)
	srv := httptest.NewTLSServer(httputil.NewSingleHostReverseProxy(u))
	defer srv.Close()
	cert := srv.Certificate()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.Raw)
	fingerprint := hex.EncodeToString(sum[:])
	for _, tc := range []struct {
		name string
		conf Configuration
		ok   bool
	}{
		{"CA file", Configuration{CAFile: caFile}, true},
		{"fingerprint", Configuration{Fingerprint: fingerprint}, true},
		{"no trust", Configuration{}, false},
		{"wrong fingerprint", Configuration{Fingerprint: strings.Repeat("ab", 32)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.conf.URLs = []string{srv.URL}
			checkPing(t, tc.conf, tc.ok, "trusting its certificate")
		})
	}
}

// checkPing pings the cluster with c (short timeout, one retry) and fails
// when the outcome is not ok; what names what a failure lacked.
func checkPing(t *testing.T, c Configuration, ok bool, what string) {
	t.Helper()
	c.Timeout, c.MaxRetries = 10*time.Second, 1
	client, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = Ping(ctx, client)
	if ok && err != nil {
		t.Errorf("ping: %v", err)
	}
	if !ok && err == nil {
		t.Errorf("reached the cluster without %s", what)
	}
}

func TestRedacted(t *testing.T) {
	got := Redacted([]string{"https://elastic:s3cret@es1:9200", "http://127.0.0.1:9200", "http://[::1"})
	want := []string{"https://REDACTED@es1:9200", "http://127.0.0.1:9200", "(unparsable URL)"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Redacted = %v, want %v", got, want)
	}
}
