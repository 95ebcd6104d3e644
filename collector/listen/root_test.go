package listen_test

import (
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/listen"
	"github.com/spanflow/spanflow/collector/listen/listentest"
	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/exporter/transport"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// decoding decodes every datagram and counts the flow records per source
// address.
type decoding struct {
	d        *decoders.Decoder
	mu       sync.Mutex
	bySource map[netip.Addr]int
}

func (h *decoding) Handle(dg decoders.Datagram) {
	recs, _, _ := h.d.Decode(dg, nil)
	h.mu.Lock()
	h.bySource[dg.Source.Addr()] += len(recs)
	h.mu.Unlock()
}

func (h *decoding) records(src string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if src == "" {
		n := 0
		for _, v := range h.bySource {
			n += v
		}
		return n
	}
	return h.bySource[netip.MustParseAddr(src)]
}

type listenerUnderTest struct {
	*listen.Listener
	r    *reporter.Reporter
	h    *decoding
	logs *testutil.SyncBuffer
}

// start runs the listeners of cfg (no UDP unless given) with a decoding
// handler.
func start(t *testing.T, cfg listen.Configuration) *listenerUnderTest {
	t.Helper()
	u := &listenerUnderTest{logs: &testutil.SyncBuffer{}}
	u.r = reporter.NewForTest(u.logs)
	d, err := decoders.New(decoders.DefaultConfiguration())
	if err != nil {
		t.Fatal(err)
	}
	u.h = &decoding{d: d, bySource: map[netip.Addr]int{}}
	if u.Listener, err = listen.New(u.r, cfg, listen.Dependencies{NewHandler: func() listen.Handler { return u.h }}); err != nil {
		t.Fatal(err)
	}
	if err := u.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Stop() })
	return u
}

// metric is the value of spanflow_listen_<name>, with the reason label
// when given.
func (u *listenerUnderTest) metric(t *testing.T, name, reason string) float64 {
	t.Helper()
	return listenMetric(t, u.r, name, reason)
}

// listenMetric is the value of spanflow_listen_<name> in r's registry,
// with the reason label when given.
func listenMetric(t *testing.T, r *reporter.Reporter, name, reason string) float64 {
	t.Helper()
	families, err := r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "spanflow_listen_"+name {
			continue
		}
		for _, m := range f.GetMetric() {
			if reason != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != reason) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	t.Fatalf("no metric spanflow_listen_%s{reason=%q}", name, reason)
	return 0
}

// waitMetric waits until the metric reaches want.
func (u *listenerUnderTest) waitMetric(t *testing.T, name, reason string, want float64) {
	t.Helper()
	waitFor(t, name+" "+reason, func() bool { return u.metric(t, name, reason) == want })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// dialFrom connects to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	c, err := tryDial(t, src, addr)
	if err != nil {
		t.Fatalf("connect from %s: %v", src, err)
	}
	return c
}

// tryDial is dialFrom for connections the collector may refuse: its
// reset can come before connect returns.
func tryDial(t *testing.T, src, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// refusedConn says whether a connection made with tryDial was refused.
func refusedConn(c net.Conn, err error) bool {
	return err != nil || closedByCollector(c, 5*time.Second)
}

// closedByCollector says whether the collector closed c (rather than keep
// it open for wait).
func closedByCollector(c net.Conn, wait time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

func send(t *testing.T, c net.Conn, msgs [][]byte) {
	t.Helper()
	for _, m := range msgs {
		if _, err := c.Write(m); err != nil {
			t.Fatal(err)
		}
	}
}

func streamConfig() listen.Configuration {
	cfg := listen.DefaultConfiguration()
	cfg.UDP, cfg.TCP = nil, []string{"127.0.0.1:0"}
	return cfg
}

// TestTCPStrangersCannotTakeSlots: a host outside the allowed networks
// opens many connections, an allowed one more than its share; both are
// refused before they take a slot and counted, and the exporter still
// connects and gets its flows decoded. When every slot is taken the next
// connection is refused, and a slot given back is taken again.
func TestTCPStrangersCannotTakeSlots(t *testing.T) {
	cfg := streamConfig()
	cfg.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("127.0.0.3/32"), netip.MustParsePrefix("127.0.0.4/32")}
	cfg.MaxTCPConnections, cfg.MaxTCPConnectionsPerSource = 4, 3
	u := start(t, cfg)
	addr := u.Addrs()[0].String()

	for i := range 50 {
		c, err := tryDial(t, "127.0.0.2", addr)
		if i == 49 {
			u.waitMetric(t, "tcp_refused_total", listen.RefusedNotAllowed, 50)
			if !refusedConn(c, err) {
				t.Error("a connection from outside the allowed networks stayed open")
			}
		}
	}
	var greedy []net.Conn
	for range 3 {
		greedy = append(greedy, dialFrom(t, "127.0.0.3", addr))
	}
	u.waitMetric(t, "tcp_connections", "", 3)
	for i := range 7 {
		c, err := tryDial(t, "127.0.0.3", addr)
		u.waitMetric(t, "tcp_refused_total", listen.RefusedSourceLimit, float64(i+1))
		if !refusedConn(c, err) {
			t.Error("a connection past the allowed host's limit stayed open")
		}
	}
	for _, c := range greedy {
		if closedByCollector(c, 50*time.Millisecond) {
			t.Error("a connection of the allowed host within its limit was closed")
		}
	}

	exporter := dialFrom(t, "127.0.0.1", addr)
	send(t, exporter, listentest.IPFIX(t, 100, 10))
	waitFor(t, "the exporter's 100 flows", func() bool { return u.h.records("127.0.0.1") == 100 })
	u.waitMetric(t, "tcp_connections", "", 4)

	c, err := tryDial(t, "127.0.0.4", addr)
	u.waitMetric(t, "tcp_refused_total", listen.RefusedConnectionLimit, 1)
	if !refusedConn(c, err) {
		t.Error("a connection past the limit stayed open")
	}
	for _, c := range greedy {
		c.Close()
	}
	u.waitMetric(t, "tcp_connections", "", 1)
	dialFrom(t, "127.0.0.4", addr)
	u.waitMetric(t, "tcp_connections", "", 2)
	if n := u.h.records(""); n != 100 {
		t.Errorf("%d flows decoded, want the exporter's 100 only", n)
	}
	if logs := u.logs.String(); !strings.Contains(logs, "allowed networks refused") || strings.Count(logs, "reason=not_allowed") > 1 {
		t.Errorf("refusals should be logged, rate-limited:\n%s", logs)
	}
	testutil.LintMetrics(t, u.r.Registry, "spanflow_listen_")
}

// TestTCPIdleTimeout: a connection on which nothing comes for the idle
// timeout is closed and counted, and its slot is given back; one that
// keeps sending stays open.
func TestTCPIdleTimeout(t *testing.T) {
	cfg := streamConfig()
	// A second: loaded test machines delay goroutines by more than the
	// 100 ms between the busy connection's messages.
	cfg.MaxTCPConnectionsPerSource, cfg.TCPIdleTimeout = 1, time.Second
	u := start(t, cfg)
	addr := u.Addrs()[0].String()
	msgs := listentest.IPFIX(t, 40, 2)

	busy := dialFrom(t, "127.0.0.1", addr)
	done := make(chan struct{})
	go func() {
		// 2 s of messages, one every 100 ms.
		defer close(done)
		for _, m := range msgs {
			time.Sleep(100 * time.Millisecond)
			if _, err := busy.Write(m); err != nil {
				return
			}
		}
	}()
	idle := dialFrom(t, "127.0.0.2", addr)
	send(t, idle, msgs[:1])
	began := time.Now()
	if !closedByCollector(idle, 10*time.Second) {
		t.Fatal("an idle connection stayed open")
	}
	if waited := time.Since(began); waited < 800*time.Millisecond {
		t.Errorf("idle connection closed after %s, before the idle timeout", waited)
	}
	u.waitMetric(t, "tcp_idle_closed_total", "", 1)
	u.waitMetric(t, "tcp_connections", "", 1)
	again := dialFrom(t, "127.0.0.2", addr)
	u.waitMetric(t, "tcp_connections", "", 2)
	if closedByCollector(again, 100*time.Millisecond) {
		t.Error("the idle connection's slot was not given back")
	}
	<-done
	waitFor(t, "the 40 flows of the busy connection", func() bool { return u.h.records("127.0.0.1") == 40 })
	if u.metric(t, "tcp_refused_total", listen.RefusedSourceLimit) != 0 {
		t.Error("connections refused")
	}
	if !closedByCollector(busy, 10*time.Second) {
		t.Error("the busy connection, now idle, stayed open")
	}
	u.waitMetric(t, "tcp_idle_closed_total", "", 3)
}

// TestExporterReconnectsAfterIdle: the spanflow exporter's tcp://
// transport, closed by the collector after a quiet spell, connects again
// with its templates on its next message; no flow is lost.
func TestExporterReconnectsAfterIdle(t *testing.T) {
	cfg := streamConfig()
	cfg.TCPIdleTimeout = 300 * time.Millisecond
	u := start(t, cfg)
	tr, err := transport.New(reporter.NewForTest(nil), transport.Configuration{
		Collectors: []string{"tcp://" + u.Addrs()[0].String()}, QueueSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	msgs := listentest.IPFIX(t, 40, 10)
	for _, m := range msgs[:2] {
		tr.Send(m)
	}
	waitFor(t, "20 flows", func() bool { return u.h.records("") == 20 })
	u.waitMetric(t, "tcp_idle_closed_total", "", 1)
	waitFor(t, "the exporter to see the close", func() bool { return !tr.TCP()[0].Stats().Connected })
	for _, m := range msgs[2:] {
		tr.Send(m)
	}
	waitFor(t, "40 flows", func() bool { return u.h.records("") == 40 })
	if st := tr.TCP()[0].Stats(); st.Connects != 2 {
		t.Errorf("exporter connected %d times, want 2", st.Connects)
	}
}

// tlsConfig is a listener of IPFIX over TLS with the server's certificate
// and, when clientCA is given, mutual TLS.
func tlsConfig(server testutil.Leaf, clientCA string) listen.Configuration {
	cfg := listen.DefaultConfiguration()
	cfg.UDP, cfg.TCP, cfg.TLS = nil, nil, []string{"127.0.0.1:0"}
	cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSClientCAFile = server.CertFile, server.KeyFile, clientCA
	return cfg
}

// TestTLSClientCertificates: with a client CA, an exporter with a
// certificate of that CA gets its flows decoded; one without a
// certificate, one with a certificate of another CA and one that does not
// speak TLS are refused and counted, and nothing they send is decoded.
func TestTLSClientCertificates(t *testing.T) {
	collectorCA, exportersCA, otherCA := testutil.NewCA(t, "collectors"), testutil.NewCA(t, "exporters"), testutil.NewCA(t, "other")
	u := start(t, tlsConfig(collectorCA.Server(t, "collector"), exportersCA.File))
	addr := u.Addrs()[0].String()
	msgs := listentest.IPFIX(t, 50, 10)
	dial := func(certs ...tls.Certificate) *tls.Conn {
		t.Helper()
		cfg := &tls.Config{RootCAs: collectorCA.Pool(), ServerName: "127.0.0.1"}
		if len(certs) > 0 {
			// Sent even when the collector asks for another CA's (Go
			// would send none): the collector must verify it.
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &certs[0], nil }
		}
		c := tls.Client(dialFrom(t, "127.0.0.1", addr), cfg)
		t.Cleanup(func() { c.Close() })
		return c
	}

	good := dial(exportersCA.Client(t, "esxi-01").TLS)
	send(t, good, msgs)
	waitFor(t, "the flows of the exporter with a certificate", func() bool { return u.h.records("") == 50 })

	for i, tc := range []struct {
		c    net.Conn
		told string // the TLS alert the client reads
	}{
		{dial(), "certificate required"},
		{dial(otherCA.Client(t, "esxi-02").TLS), "unknown certificate authority"},
		{dialFrom(t, "127.0.0.1", addr), ""},
	} {
		// With TLS 1.3 the client's handshake ends before the collector
		// checks its certificate: writes may succeed, the collector
		// closes.
		for _, m := range msgs {
			tc.c.Write(m)
		}
		u.waitMetric(t, "tcp_refused_total", listen.RefusedTLSHandshake, float64(i+1))
		tc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := tc.c.Read(make([]byte, 1))
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("client %d without a valid certificate: connection still open", i)
		} else if !strings.Contains(err.Error(), tc.told) {
			t.Errorf("client %d was told %q, want the alert %q", i, err, tc.told)
		}
	}
	u.waitMetric(t, "tcp_connections", "", 1)
	if n := u.h.records(""); n != 50 {
		t.Errorf("%d flows decoded, want the 50 of the exporter with a certificate", n)
	}
	if strings.Contains(u.logs.String(), "any client may connect") {
		t.Error("warned that any client may connect, with a client CA")
	}
	logs := u.logs.String()
	if !strings.Contains(logs, "reason=tls_handshake") || !strings.Contains(logs, "certificate") {
		t.Errorf("the refusal should be logged with its cause:\n%s", logs)
	}
}

// TestTLSFromExporter: without a client CA the collector warns that any
// client may connect; the spanflow exporter's tls:// transport, trusting
// the collector's CA, delivers its messages.
func TestTLSFromExporter(t *testing.T) {
	ca := testutil.NewCA(t, "collectors")
	u := start(t, tlsConfig(ca.Server(t, "collector"), ""))
	if !strings.Contains(u.logs.String(), "any client may connect") {
		t.Errorf("no warning that any client may connect:\n%s", u.logs.String())
	}
	tr, err := transport.New(reporter.NewForTest(nil), transport.Configuration{
		Collectors: []string{"tls://" + u.Addrs()[0].String()}, CAFile: ca.File, QueueSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range listentest.IPFIX(t, 60, 20) {
		tr.Send(m)
	}
	waitFor(t, "the exporter's 60 flows", func() bool { return u.h.records("127.0.0.1") == 60 })
	tr.Close()
}

// TestTLSIdleTimeout: the idle timeout holds over TLS, and bounds a
// handshake that never starts.
func TestTLSIdleTimeout(t *testing.T) {
	ca := testutil.NewCA(t, "collectors")
	cfg := tlsConfig(ca.Server(t, "collector"), "")
	// It bounds the handshake too: a second, so that a loaded machine
	// completes the real one in time.
	cfg.TCPIdleTimeout = time.Second
	u := start(t, cfg)
	addr := u.Addrs()[0].String()
	silent := dialFrom(t, "127.0.0.1", addr)
	c := tls.Client(dialFrom(t, "127.0.0.1", addr), &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
	send(t, c, listentest.IPFIX(t, 1, 1))
	if !closedByCollector(silent, 10*time.Second) || !closedByCollector(c, 10*time.Second) {
		t.Fatal("idle connections stayed open")
	}
	u.waitMetric(t, "tcp_refused_total", listen.RefusedTLSHandshake, 1)
	u.waitMetric(t, "tcp_idle_closed_total", "", 1)
	u.waitMetric(t, "tcp_connections", "", 0)
	if u.h.records("") != 1 {
		t.Error("the message before the idle time was not decoded")
	}
}

// TestValidate: bad limits, TCP and TLS on one port, and TLS files that
// cannot be used are refused, the file at fault named.
func TestValidate(t *testing.T) {
	ca := testutil.NewCA(t, "collectors")
	server, other := ca.Server(t, "collector"), ca.Server(t, "other")
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600)
	for _, tc := range []struct {
		name  string
		edit  func(*listen.Configuration)
		want  string
		field string // of the TLSFileError
	}{
		{"defaults", func(*listen.Configuration) {}, "", ""},
		{"tls", func(c *listen.Configuration) {
			*c = tlsConfig(server, ca.File)
		}, "", ""},
		{"no connection", func(c *listen.Configuration) { c.MaxTCPConnections = 0 }, "tcp connections must be at least 1", ""},
		{"no connection per source", func(c *listen.Configuration) { c.MaxTCPConnectionsPerSource = 0 }, "per source must be at least 1", ""},
		{"no idle timeout", func(c *listen.Configuration) { c.TCPIdleTimeout = 0 }, "idle timeout must be positive", ""},
		{"reuseport group without sharing", func(c *listen.Configuration) { c.ReusePortGroup = 2 }, "needs the ports shared with them (listen-reuseport)", ""},
		{"negative reuseport group", func(c *listen.Configuration) {
			c.ShareWithOtherProcesses, c.ReusePortGroup = true, -1
		}, "must not be negative", ""},
		{"one port", func(c *listen.Configuration) {
			*c = tlsConfig(server, "")
			c.TCP, c.TLS = []string{":4739"}, []string{"127.0.0.1:4739"}
		}, "share a port", ""},
		{"no certificate", func(c *listen.Configuration) {
			*c = tlsConfig(server, "")
			c.TLSCertFile = ""
		}, "needs a certificate file", "TLSCertFile"},
		{"missing key", func(c *listen.Configuration) {
			*c = tlsConfig(server, "")
			c.TLSKeyFile = filepath.Join(dir, "none.pem")
		}, "read key file", "TLSKeyFile"},
		{"key of another certificate", func(c *listen.Configuration) {
			*c = tlsConfig(server, "")
			c.TLSKeyFile = other.KeyFile
		}, "does not match", "TLSKeyFile"},
		{"certificate not PEM", func(c *listen.Configuration) {
			*c = tlsConfig(server, "")
			c.TLSCertFile = notPEM
		}, "holds no PEM certificate", "TLSCertFile"},
		{"client CA not PEM", func(c *listen.Configuration) {
			*c = tlsConfig(server, notPEM)
		}, "holds no PEM certificate", "TLSClientCAFile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := listen.DefaultConfiguration()
			tc.edit(&cfg)
			err := cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			var fe *listen.TLSFileError
			got := ""
			if errors.As(err, &fe) {
				got = fe.Field
			}
			if got != tc.field {
				t.Errorf("file at fault %q, want %q", got, tc.field)
			}
		})
	}
}

// TestStopReadsWhatWasSent: Stop closes its side of an IPFIX/TCP connection
// and reads what the exporter had already sent; closing at once threw away,
// with a reset, records the collector's kernel had acknowledged.
func TestStopReadsWhatWasSent(t *testing.T) {
	u := start(t, streamConfig())
	c := dialFrom(t, "127.0.0.1", u.Addrs()[0].String())
	send(t, c, listentest.IPFIX(t, 5000, 10))
	c.(*net.TCPConn).CloseWrite()
	if err := u.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := u.h.records(""); got != 5000 {
		t.Errorf("%d of the 5000 records sent before Stop decoded", got)
	}
	if !closedByCollector(c, 5*time.Second) {
		t.Error("the collector did not close its side")
	}
}

// TestStopAcceptsQueuedConnections: exporters that connected and sent just
// before Stop, while the accept loop had not yet taken their connections
// from the kernel's queue, lose nothing: Stop accepts what is queued and
// reads it.
func TestStopAcceptsQueuedConnections(t *testing.T) {
	cfg := streamConfig()
	cfg.MaxTCPConnectionsPerSource = 64
	u := start(t, cfg)
	addr := u.Addrs()[0].String()
	const conns, per = 24, 200
	msgs := listentest.IPFIX(t, per, 10)
	for range conns {
		c := dialFrom(t, "127.0.0.1", addr)
		send(t, c, msgs)
		c.(*net.TCPConn).CloseWrite()
	}
	if err := u.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := u.h.records(""); got != conns*per {
		t.Errorf("%d of the %d records sent before Stop decoded", got, conns*per)
	}
}

// A listener refuses a UDP or TCP port another socket holds, even one with
// SO_REUSEPORT that it could join; with ShareWithOtherProcesses on both, the
// second one joins.
func TestPortHeldElsewhere(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			cfg := listen.DefaultConfiguration()
			cfg.UDP, cfg.TCP, cfg.Sockets = nil, nil, 2
			if network == "udp" {
				cfg.UDP = []string{"127.0.0.1:0"}
			} else {
				cfg.TCP = []string{"127.0.0.1:0"}
			}
			first := start(t, cfg)
			addr := first.Addrs()[0].String()
			if network == "udp" {
				cfg.UDP = []string{addr}
			} else {
				cfg.TCP = []string{addr}
			}
			second, err := listen.New(reporter.NewForTest(nil), cfg, listen.Dependencies{NewHandler: func() listen.Handler { return first.h }})
			if err != nil {
				t.Fatal(err)
			}
			err = second.Start()
			var inUse *listen.PortInUseError
			if !errors.As(err, &inUse) || inUse.Addr != addr || inUse.Network != network || !errors.Is(err, syscall.EADDRINUSE) {
				second.Stop()
				t.Fatalf("second listener on %s %s: err = %v, want a PortInUseError", network, addr, err)
			}

			cfg.ShareWithOtherProcesses = true
			if network == "udp" {
				cfg.UDP = []string{"127.0.0.1:0"}
			} else {
				cfg.TCP = []string{"127.0.0.1:0"}
			}
			shared := start(t, cfg)
			if network == "udp" {
				cfg.UDP = []string{shared.Addrs()[0].String()}
			} else {
				cfg.TCP = []string{shared.Addrs()[0].String()}
			}
			start(t, cfg) // fails the test when it cannot bind
		})
	}
}

// The same port given twice (as netflow-listen and ipfix-listen) is this
// listener's own, not another process's.
func TestSamePortGivenTwice(t *testing.T) {
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.LocalAddr().String()
	l.Close()
	cfg := listen.DefaultConfiguration()
	cfg.UDP, cfg.TCP, cfg.Sockets = []string{addr, addr}, nil, 2
	start(t, cfg)
}
