package esconn

import (
	"crypto/tls"
	"encoding/pem"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spanflow/spanflow/internal/testutil"
)

// TestRefusedCredentials: credentials inside a URL are refused (ps and
// logs would show them), and so are credentials over plain http unless
// the user says so; the error says where credentials go instead.
func TestRefusedCredentials(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	if err := writeFile(key, "a2V5OnNlY3JldA=="); err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{"SPANFLOW_ES_USER", "SPANFLOW_ES_PASSWORD", "SPANFLOW_ES_API_KEY"} {
		t.Setenv(env, "")
	}
	for _, tc := range []struct {
		name string
		conf Configuration
		want string // "" accepts
	}{
		{"user in URL", Configuration{URLs: []string{"https://elastic:s3cret@es1:9200"}}, "holds credentials"},
		{"user in second URL", Configuration{URLs: []string{"https://es1:9200", "https://elastic@es2:9200"}}, "holds credentials"},
		{"API key over http", Configuration{URLs: []string{"http://es1:9200"}, APIKeyFile: key}, "clear text"},
		{"API key over http, said so", Configuration{URLs: []string{"http://es1:9200"}, APIKeyFile: key, AllowInsecureCredentials: true}, ""},
		{"API key over https", Configuration{URLs: []string{"https://es1:9200"}, APIKeyFile: key}, ""},
		{"one http URL among https", Configuration{URLs: []string{"https://es1:9200", "http://es2:9200"}, APIKeyFile: key}, "clear text to http://es2:9200"},
		{"no credentials over http", Configuration{URLs: []string{"http://es1:9200"}}, ""},
		{"not a URL", Configuration{URLs: []string{"es1:9200/x"}}, "want http://HOST:PORT"},
		{"no scheme", Configuration{URLs: []string{"es1:9200"}}, "has no scheme: use http://es1:9200 or https://es1:9200"},
		{"certificate without key", Configuration{URLs: []string{"https://es1:9200"}, CertFile: key}, "--es-key-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.conf)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one containing %q", err, tc.want)
			case err != nil && strings.Contains(err.Error(), "s3cret"):
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
	t.Setenv("SPANFLOW_ES_PASSWORD", "s3cret")
	if _, err := New(Configuration{URLs: []string{"http://es1:9200"}}); err == nil || !strings.Contains(err.Error(), "--es-allow-insecure-credentials") {
		t.Errorf("a password from the environment over http: %v", err)
	}
}

// TestClientCertificate puts a TLS proxy that demands a client certificate
// signed by its CA in front of the test cluster: the client reaches it with
// --es-cert-file/--es-key-file, not without, nor with a certificate of
// another CA.
func TestClientCertificate(t *testing.T) {
	target := testutil.Elasticsearch(t)
	u, _ := url.Parse(target)
	ca, other := testutil.NewCA(t, "spanflow test CA"), testutil.NewCA(t, "someone else")
	srv := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(u))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()}
	srv.StartTLS()
	defer srv.Close()
	serverCA := filepath.Join(t.TempDir(), "server-ca.pem")
	if err := os.WriteFile(serverCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	good, bad := ca.Client(t, "collector"), other.Client(t, "collector")
	for _, tc := range []struct {
		name      string
		cert, key string
		ok        bool
	}{
		{"signed by the proxy's CA", good.CertFile, good.KeyFile, true},
		{"no certificate", "", "", false},
		{"another CA", bad.CertFile, bad.KeyFile, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkPing(t, Configuration{URLs: []string{srv.URL}, CAFile: serverCA, CertFile: tc.cert, KeyFile: tc.key}, tc.ok, "a valid client certificate")
		})
	}
}
