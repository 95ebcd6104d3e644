package collector_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector"
	"github.com/spanflow/spanflow/collector/listen"
	"github.com/spanflow/spanflow/collector/listen/listentest"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// refused is spanflow_listen_tcp_refused_total{reason=why}.
func refused(t *testing.T, r *reporter.Reporter, why string) float64 {
	t.Helper()
	families, err := r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "spanflow_listen_tcp_refused_total" {
			for _, m := range f.GetMetric() {
				if m.GetLabel()[0].GetValue() == why {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestIPFIXOverTLSSettings: the collector built from its settings listens
// for IPFIX over TLS only, with client certificates, the allowed networks
// and the per-source limit checked at connection: the exporter's flows
// become documents; a connection from outside the allowed networks, one
// past the limit and one with a certificate of another CA are refused.
func TestIPFIXOverTLSSettings(t *testing.T) {
	collectorCA, exportersCA, otherCA := testutil.NewCA(t, "collectors"), testutil.NewCA(t, "exporters"), testutil.NewCA(t, "other")
	server := collectorCA.Server(t, "collector")
	cfg := collector.DefaultConfiguration()
	in := &cfg.Input
	in.NetFlowListen, in.IPFIXListen, in.IPFIXTCPListen, in.SFlowListen = nil, nil, nil, nil
	in.Allow = []string{"127.0.0.2/32"}
	s := &in.Streams
	s.TLSListen, s.TLSCertFile, s.TLSKeyFile, s.TLSClientCAFile = []string{"127.0.0.1:0"}, server.CertFile, server.KeyFile, exportersCA.File
	s.MaxPerSource = 1
	cfg.MetricsListen = ""
	r := reporter.NewForTest(nil)
	var out testutil.SyncBuffer
	c, err := collector.New(r, cfg, collector.Dependencies{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	addr := c.Addrs()[0].String()
	dial := func(src string, certs ...tls.Certificate) (*tls.Conn, error) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		cfg := &tls.Config{RootCAs: collectorCA.Pool()}
		if len(certs) > 0 {
			// Sent even when the collector asks for another CA's (Go
			// would send none): the collector must verify it.
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &certs[0], nil }
		}
		conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
		if err == nil {
			t.Cleanup(func() { conn.Close() })
		}
		return conn, err
	}

	exporter, err := dial("127.0.0.2", exportersCA.Client(t, "esxi-01").TLS)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range listentest.IPFIX(t, 30, 10) {
		if _, err := exporter.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "30 flow documents", func() bool { return strings.Count(out.String(), `"network_flow"`) == 30 })
	if !strings.Contains(out.String(), `"observer":{"ip":"127.0.0.2"`) {
		t.Errorf("documents without the exporter's address:\n%.300s", out.String())
	}

	dial("127.0.0.1", exportersCA.Client(t, "esxi-02").TLS)
	eventually(t, "a refusal (not allowed)", func() bool { return refused(t, r, listen.RefusedNotAllowed) == 1 })
	dial("127.0.0.2", exportersCA.Client(t, "esxi-01").TLS)
	eventually(t, "a refusal (source limit)", func() bool { return refused(t, r, listen.RefusedSourceLimit) == 1 })
	exporter.Close()
	eventually(t, "the exporter's slot", func() bool {
		conn, err := dial("127.0.0.2", otherCA.Client(t, "esxi-03").TLS)
		if err == nil {
			conn.Write(listentest.IPFIX(t, 1, 1)[0])
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Read(make([]byte, 1)); err == nil || !strings.Contains(err.Error(), "unknown certificate authority") {
				t.Errorf("a client with another CA's certificate read %v", err)
			}
		}
		return refused(t, r, listen.RefusedTLSHandshake) >= 1
	})
	if n := strings.Count(out.String(), `"network_flow"`); n != 30 {
		t.Errorf("%d flow documents, want the exporter's 30", n)
	}
}

// TestCheckStreamSettings: `collector check` reports each bad setting of
// IPFIX over TCP and TLS on its line, certificate files read.
func TestCheckStreamSettings(t *testing.T) {
	ca := testutil.NewCA(t, "collectors")
	server := ca.Server(t, "collector")
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := fmt.Sprintf("ipfix-tls-listen: [\":4740\"]\nipfix-tls-cert-file: %s\nipfix-tls-key-file: %s\nipfix-tls-client-ca-file: %s\n"+
		"ipfix-tcp-max-connections: 64\nipfix-tcp-max-per-source: 2\nipfix-tcp-idle-timeout: 10m\n", server.CertFile, server.KeyFile, ca.File)
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"good", good, nil},
		{"bad", "sockets: 2\n" + // 1
			"ipfix-tls-listen: [\":4739\"]\n" + // 2
			"ipfix-tls-cert-file: " + filepath.Join(dir, "none.pem") + "\n" + // 3
			"ipfix-tls-key-file: " + server.KeyFile + "\n" + // 4
			"ipfix-tls-client-ca-file: " + notPEM + "\n" + // 5
			"ipfix-tcp-max-per-source: 0\n" + // 6
			"ipfix-tcp-idle-timeout: 0s\n", // 7
			[]string{
				`line 2: ipfix-tls-listen: ":4739" takes the port of ipfix-tcp-listen ":4739"`,
				"line 3: ipfix-tls-cert-file: read certificate file: open " + filepath.Join(dir, "none.pem"),
				"line 6: ipfix-tcp-max-per-source: must be at least 1, not 0",
				"line 7: ipfix-tcp-idle-timeout: must be positive",
			}},
		{"key of another certificate", "ipfix-tls-listen: [\":4740\"]\n" + // 1
			"ipfix-tls-cert-file: " + server.CertFile + "\n" + // 2
			"ipfix-tls-key-file: " + ca.Server(t, "other").KeyFile + "\n", // 3
			[]string{"line 3: ipfix-tls-key-file: key file", "private key does not match public key"}},
		{"client CA not PEM", "ipfix-tls-listen: [\":4740\"]\n" + // 1
			"ipfix-tls-cert-file: " + server.CertFile + "\n" + // 2
			"ipfix-tls-key-file: " + server.KeyFile + "\n" + // 3
			"ipfix-tls-client-ca-file: " + notPEM + "\n", // 4
			[]string{"line 4: ipfix-tls-client-ca-file: client CA file " + notPEM + " holds no PEM certificate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			got := collector.Check(path)
			if tc.want == nil {
				if len(got) > 0 {
					t.Errorf("good file: %q", got)
				}
				return
			}
			text := strings.Join(got, "\n")
			if tc.name == "bad" && len(got) != len(tc.want) {
				t.Errorf("%d problems, want %d:\n%s", len(got), len(tc.want), text)
			}
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("no %q in:\n%s", w, text)
				}
			}
		})
	}
}
