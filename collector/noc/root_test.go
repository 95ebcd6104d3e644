package noc

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spanflow/spanflow/collector/rollup"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	tu "github.com/spanflow/spanflow/internal/testutil"
)

// newTestServer starts a view on an engine that ticks by event time.
func newTestServer(t *testing.T, mod func(*Configuration)) (*Server, *rollup.Engine, *reporter.Reporter) {
	t.Helper()
	rc := rollup.DefaultConfiguration()
	rc.EventTime, rc.Delay = true, 0
	r := reporter.NewForTest(nil)
	e, err := rollup.New(r, rc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfiguration()
	cfg.Listen = "127.0.0.1:0"
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(r, cfg, Dependencies{Rollups: e})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s, e, r
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		mod  func(*Configuration)
		want string // "" valid
	}{
		{"off", func(c *Configuration) { c.Listen = "" }, ""},
		{"port only binds loopback", func(c *Configuration) { c.Listen = ":8080" }, ""},
		{"bare port", func(c *Configuration) { c.Listen = "8080" }, ""},
		{"localhost", func(c *Configuration) { c.Listen = "localhost:8080" }, ""},
		{"v6 loopback", func(c *Configuration) { c.Listen = "[::1]:8080" }, ""},
		{"beyond loopback, bare", func(c *Configuration) { c.Listen = "0.0.0.0:8080" }, "give ui-tls-cert-file and ui-tls-key-file"},
		{"beyond loopback, no auth", func(c *Configuration) { c.Listen, c.TLSCertFile, c.TLSKeyFile = "10.0.0.1:8080", "c", "k" },
			"give ui-token-file, or ui-user-header"},
		{"beyond loopback, TLS and token", func(c *Configuration) {
			c.Listen, c.TLSCertFile, c.TLSKeyFile, c.TokenFile = "10.0.0.1:8080", "c", "k", filepath.Join(dir, "t")
		}, ""},
		{"header without proxy", func(c *Configuration) { c.Listen, c.UserHeader = ":8080", "X-Forwarded-User" }, "needs ui-trusted-proxy"},
		{"bad proxy", func(c *Configuration) {
			c.Listen, c.UserHeader, c.TrustedProxies = ":8080", "X-Forwarded-User", []string{"10.0.0.300/32"}
		}, "want a CIDR"},
		{"cert without key", func(c *Configuration) { c.Listen, c.TLSCertFile = ":8080", "c" }, "give both"},
		{"history", func(c *Configuration) { c.Listen, c.History = ":8080", time.Second }, "ui-history"},
		{"negative delay", func(c *Configuration) { c.Listen, c.Delay = ":8080", -time.Second }, "ui-delay"},
		{"no delay", func(c *Configuration) { c.Listen, c.Delay = ":8080", 0 }, ""},
		{"port out of range", func(c *Configuration) { c.Listen = "127.0.0.1:99999" }, `ui: "127.0.0.1:99999": port 99999: want a number from 0 to 65535`},
		{"port a word", func(c *Configuration) { c.Listen = "garbage" }, `ui: "garbage": port garbage: want a number`},
		{"clients", func(c *Configuration) { c.Listen, c.MaxClients = ":8080", 0 }, "at least 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfiguration()
			cfg.Listen = ":8080"
			c.mod(&cfg)
			err := cfg.Validate()
			if (err == nil) != (c.want == "") || (err != nil && !strings.Contains(err.Error(), c.want)) {
				t.Errorf("Validate: %v; want %q", err, c.want)
			}
		})
	}
	if a := (Configuration{Listen: ":9"}).Addr(); a != "127.0.0.1:9" {
		t.Errorf(":9 binds %s", a)
	}
}

// TestAuthentication: with a token, over TLS, the page answers 401 without
// it, and takes it as a bearer header, once as ?token= (which sets a
// cookie) and then from the cookie; a trusted proxy's user header is
// believed only from the proxy's network.
func TestAuthentication(t *testing.T) {
	ca := tu.NewCA(t, "ui")
	leaf := ca.Server(t, "ui")
	token := "0123456789abcdef-token"
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
	s, _, _ := newTestServer(t, func(c *Configuration) {
		c.TLSCertFile, c.TLSKeyFile, c.TokenFile = leaf.CertFile, leaf.KeyFile, tokenFile
	})
	if !strings.HasPrefix(s.URL(), "https://") {
		t.Fatalf("URL %s", s.URL())
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(url string, hdr map[string]string) *http.Response {
		req, _ := http.NewRequest("GET", url, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	base := s.URL()
	if r := get(base, nil); r.StatusCode != 401 {
		t.Errorf("no token: %s", r.Status)
	}
	if r := get(base+"api/frame", map[string]string{"Authorization": "Bearer wrong-token-0123456"}); r.StatusCode != 401 {
		t.Errorf("wrong token: %s", r.Status)
	}
	if r := get(base+"api/frame", map[string]string{"Authorization": "Bearer " + token}); r.StatusCode != 200 {
		t.Errorf("bearer: %s", r.Status)
	}
	r := get(base+"?token="+token, nil)
	var cookie *http.Cookie
	for _, c := range r.Cookies() {
		if c.Name == TokenCookie {
			cookie = c
		}
	}
	if r.StatusCode != 200 || cookie == nil || !cookie.HttpOnly || !cookie.Secure {
		t.Fatalf("?token=: %s, cookie %+v", r.Status, cookie)
	}
	if r := get(base+"noc.js", map[string]string{"Cookie": TokenCookie + "=" + cookie.Value}); r.StatusCode != 200 {
		t.Errorf("cookie: %s", r.Status)
	}
	if r.Header.Get("Strict-Transport-Security") == "" {
		t.Error("no HSTS over TLS")
	}

	for _, c := range []struct {
		proxy string
		want  int
	}{{"127.0.0.0/8", 200}, {"10.0.0.0/8", 401}} {
		s, _, _ := newTestServer(t, func(cfg *Configuration) {
			cfg.UserHeader, cfg.TrustedProxies = "X-Forwarded-User", []string{c.proxy}
		})
		req, _ := http.NewRequest("GET", s.URL()+"api/frame", nil)
		req.Header.Set("X-Forwarded-User", "noc-operator")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("user header, proxy %s: %s, want %d", c.proxy, resp.Status, c.want)
		}
	}
}

// slowClient opens the stream with a tiny receive buffer and never reads.
func slowClient(t *testing.T, addr string) net.Conn {
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048) })
	}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
	return conn
}

// TestSlowAndManyClients: with two clients that never read and one that
// does, ticking goes on (frames for the slow ones are dropped and counted,
// then they are closed), the reading client gets the last frame, and a
// client past ui-max-clients is refused.
func TestSlowAndManyClients(t *testing.T) {
	s, e, r := newTestServer(t, func(c *Configuration) {
		c.MaxClients, c.ClientQueue, c.WriteTimeout, c.MaxRows = 3, 2, 500*time.Millisecond, 200
	})
	slowClient(t, s.Addr())
	slowClient(t, s.Addr())
	resp, err := http.Get(s.URL() + "api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lastSeq := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, `data: {"seq":`) {
				select {
				case <-lastSeq:
				default:
				}
				lastSeq <- strings.SplitN(strings.TrimPrefix(l, `data: {"seq":`), ",", 2)[0]
			}
		}
	}()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if cond() {
				return
			}
		}
		t.Fatalf("timed out waiting for %s", what)
	}
	waitFor("three clients", func() bool { return testutil.ToFloat64(s.m.clients) == 3 })
	if resp, err := http.Get(s.URL() + "api/events"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("fourth client: %v %v, want 503", resp.Status, err)
	}

	// 200 lines with 10 talkers each: frames of about 100 kB.
	t0 := time.Unix(1_800_000_000, 0)
	const ticks = 150
	for i := range ticks {
		now := t0.Add(time.Duration(i) * time.Second)
		var recs []flow.Record
		for l := range 200 {
			for k := range 10 {
				recs = append(recs, flow.Record{ObserverIP: netip.MustParseAddr("10.0.0.1"), Received: now, Start: now, End: now,
					InIf: uint32(l + 1), Proto: 17, SrcAddr: netip.AddrFrom4([4]byte{10, 1, byte(l), byte(k)}),
					DstAddr: netip.MustParseAddr("10.9.9.9"), Bytes: uint64(1000 * (k + 1)), Packets: 1})
			}
		}
		e.Write(recs)
		e.Tick(now.Add(time.Second))
	}
	want := fmt.Sprint(s.view.seq)
	waitFor("the reading client's last frame", func() bool {
		select {
		case got := <-lastSeq:
			if got == want {
				return true
			}
		default:
		}
		return false
	})
	waitFor("the slow clients closed", func() bool { return testutil.ToFloat64(s.m.slowClosed) == 2 })
	waitFor("one client left", func() bool { return testutil.ToFloat64(s.m.clients) == 1 })
	dropped := testutil.ToFloat64(s.m.framesDropped)
	t.Logf("%d ticks, %s frames; %g frames dropped for slow clients", ticks, want, dropped)
	if dropped == 0 {
		t.Error("no frame dropped for the clients that never read")
	}
	tu.LintMetrics(t, r.Registry, "spanflow_")
}
