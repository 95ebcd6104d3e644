package vsphere

import (
	"bytes"
	"context"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// blackhole is a TCP proxy in front of vCenter that can go silent the way a
// firewall or load balancer that lost its connection state does: once the
// client sends trigger (while armed), nothing is forwarded any more in either
// direction and no connection is closed. heal makes it forward again, but
// only on connections opened afterwards: the ones open during the silence
// stay dead, as they would behind a failed-over load balancer.
type blackhole struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	trigger []byte
	silent  bool
	conns   map[*bhConn]bool
	dropped []string // what clients sent while silent (or on dead connections), as read
}

type bhConn struct {
	client, server net.Conn
	dead           bool // opened before the last heal, while silent
}

func newBlackhole(t *testing.T, target string) *blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln, target: target, conns: map[*bhConn]bool{}}
	go b.accept()
	t.Cleanup(b.close)
	return b
}

func (b *blackhole) accept() {
	for {
		cc, err := b.ln.Accept()
		if err != nil {
			return
		}
		sc, err := net.Dial("tcp", b.target)
		if err != nil {
			cc.Close()
			continue
		}
		c := &bhConn{client: cc, server: sc}
		b.mu.Lock()
		b.conns[c] = true
		b.mu.Unlock()
		go b.pipe(c, cc, sc, true)
		go b.pipe(c, sc, cc, false)
	}
}

// pipe copies from src to dst unless the proxy is silent or the connection
// dead: then what src sends is read and dropped.
func (b *blackhole) pipe(c *bhConn, src, dst net.Conn, fromClient bool) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			b.mu.Lock()
			if fromClient && b.trigger != nil && bytes.Contains(buf[:n], b.trigger) {
				b.trigger, b.silent = nil, true
			}
			drop := b.silent || c.dead
			if drop && fromClient {
				b.dropped = append(b.dropped, string(buf[:n]))
			}
			b.mu.Unlock()
			if !drop {
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
		}
		if err != nil {
			// A silent or dead connection is not closed towards the other
			// side either: the other side just hears nothing.
			b.mu.Lock()
			quiet := c.dead || b.silent
			b.mu.Unlock()
			if !quiet {
				dst.Close()
			}
			return
		}
	}
}

// armSilence makes the proxy go silent when a client next sends trigger.
func (b *blackhole) armSilence(trigger string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.trigger = []byte(trigger)
}

// sawDropped reports whether something containing s (a request line, a
// SOAP method) was sent into the silence.
func (b *blackhole) sawDropped(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, d := range b.dropped {
		if strings.Contains(d, s) {
			return true
		}
	}
	return false
}

// heal forwards again on new connections; those open now stay dead.
func (b *blackhole) heal() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.conns {
		c.dead = true
	}
	b.silent = false
}

func (b *blackhole) close() {
	b.ln.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.conns {
		c.client.Close()
		c.server.Close()
	}
}

// waitFor polls cond for up to limit: a liveness bound, far above what the
// configured timeouts need.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A vCenter that goes silent while tags are being read (the tagging service
// answers the login, then nothing more comes back) must not hang the
// session: once vCenter answers again, on new connections, the enrichment
// reconnects and follows changes, and Stop returns.
func TestSilentVCenterDuringTagRead(t *testing.T) {
	s := newSim(t, "127.0.0.1:0", false)
	bh, cfg := throughBlackhole(t, s)
	cfg.RequestTimeout = 2 * time.Second
	cfg.TagRefresh = 100 * time.Millisecond

	var logs testutil.SyncBuffer
	c, err := New(reporter.NewForTest(&logs), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	stop := sync.OnceFunc(func() {
		go func() { stopped <- c.Stop() }()
	})
	// Registered after the proxy's cleanup, so it runs before it: a Stop
	// hung on a dead connection shows as a failure, not a test timeout.
	t.Cleanup(func() {
		stop()
		select {
		case err := <-stopped:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("Stop did not return; logs:\n%s", logs.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitLoaded(ctx); err != nil {
		t.Fatal(err)
	}

	// Silence as soon as the tags are listed (after the REST login), and
	// until the REST logout that follows the listing's timeout was sent
	// into it.
	bh.armSilence("/tagging/")
	waitFor(t, 30*time.Second, "REST logout sent into the silence", func() bool {
		return bh.sawDropped("DELETE /rest/com/vmware/cis/session")
	})
	bh.heal()

	// A change made after the silence must show: the session was replaced.
	s.setGuestIPs(t, "lb-01", []simNIC{{"pg-edge-130", "00:50:56:00:00:04", []string{"10.3.0.44"}}})
	waitFor(t, 30*time.Second, "change followed after vCenter answered again", func() bool {
		vs := lookupVM(c, "10.3.0.44")
		return vs != nil && vs.VMName == "lb-01"
	})
}

// gaugeValue reads a gauge of the component's registry.
func gaugeValue(t *testing.T, r *reporter.Reporter, name string) float64 {
	t.Helper()
	mfs, err := r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// A collector started while vCenter is unreachable (or refuses the
// password) has no inventory at all: the inventory age, which the docs say
// to alert on, must grow from the start instead of staying at 0.
func TestInventoryAgeGrowsBeforeFirstLoad(t *testing.T) {
	s := newSim(t, "127.0.0.1:0", false)
	cfg := s.config()
	cfg.Password = "wrong"
	cfg.StartWait = 1500 * time.Millisecond // Start returns once it passed
	r := reporter.NewForTest(nil)
	c, err := New(r, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if c.Snapshot() != nil || c.LastError() == nil {
		t.Fatalf("with a wrong password: snapshot %v, last error %v", c.Snapshot(), c.LastError())
	}
	if got := gaugeValue(t, r, "spanflow_vsphere_connected"); got != 0 {
		t.Errorf("connected = %v with a wrong password", got)
	}
	if a := gaugeValue(t, r, "spanflow_vsphere_inventory_age_seconds"); a < 1 {
		t.Errorf("inventory age %v s, 1.5 s after a start that loaded nothing; want >= 1", a)
	}
}

// A refused login is not an outage: retried quickly it would lock the
// account (vCenter's default policy locks it after 5 failed logins in 3
// minutes). Every retry after one waits the longest interval.
func TestRefusedLoginRetriesSlowly(t *testing.T) {
	s := newSim(t, "127.0.0.1:0", false)
	cfg := s.config()
	cfg.Password = "wrong"
	var logs testutil.SyncBuffer
	c, err := New(reporter.NewForTest(&logs), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	retries := func() []string {
		var out []string
		for _, l := range strings.Split(logs.String(), "\n") {
			if _, after, ok := strings.Cut(l, " retry_in="); ok {
				d, _, _ := strings.Cut(after, " ")
				out = append(out, d)
			}
		}
		return out
	}
	waitFor(t, 30*time.Second, "two failed logins", func() bool { return len(retries()) >= 2 })
	for i, d := range retries()[:2] {
		if d != cfg.ReconnectMax.String() {
			t.Errorf("retry %d after a refused login in %s, want %s (ReconnectMax)\nlogs:\n%s", i+1, d, cfg.ReconnectMax, logs.String())
		}
	}
	if log := logs.String(); !strings.Contains(log, "vcenter refused the login") || strings.Contains(log, "unreachable") {
		t.Errorf("the log does not say the login was refused:\n%s", log)
	}
}

// When vCenter goes silent, spanflow_vsphere_connected must drop to 0 as
// soon as the session is given up, not once its clean-up (destroying the
// view and the property collector, logging out: each waiting for a silent
// vCenter) is over.
func TestConnectedDropsBeforeCleanUp(t *testing.T) {
	s := newSim(t, "127.0.0.1:0", false)
	bh, cfg := throughBlackhole(t, s)
	cfg.RequestTimeout = time.Second
	_, r, _ := startEnrichment(t, cfg)
	if got := gaugeValue(t, r, "spanflow_vsphere_connected"); got != 1 {
		t.Fatalf("connected = %v after the load", got)
	}
	bh.armSilence("WaitForUpdatesEx")
	// The clean-up's first call, sent into the silence: the session has
	// been given up.
	waitFor(t, 30*time.Second, "clean-up sent into the silence", func() bool { return bh.sawDropped("DestroyView") })
	if got := gaugeValue(t, r, "spanflow_vsphere_connected"); got != 0 {
		t.Errorf("connected = %v while the given-up session is being cleaned up", got)
	}
}

// throughBlackhole puts a blackhole proxy before s and gives the
// configuration that reaches s through it.
func throughBlackhole(t *testing.T, s *sim) (*blackhole, Configuration) {
	t.Helper()
	bh := newBlackhole(t, s.server.URL.Host)
	cfg := s.config()
	u, _ := url.Parse(cfg.URL)
	u.Host = bh.ln.Addr().String()
	cfg.URL = u.String()
	return bh, cfg
}
