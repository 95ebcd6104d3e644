package ring_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/ring"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestServer: a remote query with the right token, or the right client
// certificate, gets the same frames as a local one; a wrong or missing
// token or certificate is refused; settings that would serve without
// protection are refused at start.
func TestServer(t *testing.T) {
	in, labels := generated(40, 3000, time.Date(2026, 12, 5, 2, 13, 0, 0, time.UTC))
	cfg := config(t.TempDir())
	fill(t, cfg, in)
	key, _, _ := ring.ParseFlow(labels[3])
	want, _ := search(t, cfg.Dir, ring.Query{Key: key})

	ca, other := testutil.NewCA(t, "ring"), testutil.NewCA(t, "stranger")
	srvCert := ca.Server(t, "probe")
	s, err := ring.NewServer(cfg.Dir, ring.ServerConfiguration{Listen: "127.0.0.1:0", Token: "s3cret", CertFile: srvCert.CertFile, KeyFile: srvCert.KeyFile, ClientCAFile: ca.File})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	client := func(cert *testutil.Leaf) *http.Client {
		tc := &tls.Config{RootCAs: ca.Pool()}
		if cert != nil {
			tc.Certificates = []tls.Certificate{cert.TLS}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	}
	good, stranger := ca.Client(t, "analyst"), other.Client(t, "analyst")
	for _, c := range []struct {
		name  string
		token string
		cert  *testutil.Leaf
		ok    bool
	}{
		{"token", "s3cret", nil, true},
		{"client certificate", "", &good, true},
		{"wrong token", "guess", nil, false},
		{"nothing", "", nil, false},
		{"certificate of another CA", "", &stranger, false},
	} {
		rm := ring.Remote{URL: "https://" + s.Addr(), Token: c.token, Client: client(c.cert)}
		pkts, err := rm.Fetch(context.Background(), 0, 0, labels[3], "", func(string) {})
		switch {
		case c.ok && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.ok:
			if diff := diffFrames(frames(pkts), want); diff != "" {
				t.Errorf("%s: frames (-got, +want):\n%s", c.name, diff)
			}
		case err == nil:
			t.Errorf("%s: answered %d frames", c.name, len(pkts))
		case c.cert == nil && !strings.Contains(err.Error(), "401"):
			t.Errorf("%s: %v, want 401", c.name, err)
		}
	}
	// Bad query: one line, 400.
	rm := ring.Remote{URL: "https://" + s.Addr(), Token: "s3cret", Client: client(nil)}
	if _, err := rm.Fetch(context.Background(), 0, 0, "1:nope", "", func(string) {}); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("bad flow: %v", err)
	}
	for _, bad := range []ring.ServerConfiguration{
		{Listen: "127.0.0.1:0"},                        // no token, no CA
		{Listen: "0.0.0.0:9109", Token: "x"},           // not loopback, no TLS
		{Listen: "127.0.0.1:0", ClientCAFile: ca.File}, // client certificates without TLS
		{Listen: "nonsense", Token: "x"},
	} {
		if _, err := ring.NewServer(cfg.Dir, bad); err == nil {
			t.Errorf("%+v: accepted", bad)
		}
	}
}
