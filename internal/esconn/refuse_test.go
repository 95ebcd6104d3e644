package esconn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
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
		{"not a URL", Configuration{URLs: []string{"es1:9200"}}, "want http://HOST:PORT"},
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
	dir := t.TempDir()
	ca, caKey := newCA(t, "spanflow test CA")
	other, otherKey := newCA(t, "someone else")
	srv := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(u))
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.StartTLS()
	defer srv.Close()
	serverCA := filepath.Join(dir, "server-ca.pem")
	if err := os.WriteFile(serverCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	good, goodKey := clientCert(t, dir, "good", ca, caKey)
	bad, badKey := clientCert(t, dir, "bad", other, otherKey)
	for _, tc := range []struct {
		name      string
		cert, key string
		ok        bool
	}{
		{"signed by the proxy's CA", good, goodKey, true},
		{"no certificate", "", "", false},
		{"another CA", bad, badKey, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, err := New(Configuration{URLs: []string{srv.URL}, CAFile: serverCA, CertFile: tc.cert, KeyFile: tc.key, Timeout: 10 * time.Second, MaxRetries: 1})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = Ping(ctx, client)
			if tc.ok && err != nil {
				t.Errorf("ping with a client certificate: %v", err)
			}
			if !tc.ok && err == nil {
				t.Error("reached the cluster without a valid client certificate")
			}
		})
	}
}

func newCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// clientCert writes a client certificate signed by ca and its key, and
// returns their paths.
func clientCert(t *testing.T, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "spanflow-collector"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}
