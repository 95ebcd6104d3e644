package listen_test

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/listen"
	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// recording keeps what it is handed, through either method.
type recording struct {
	mu      sync.Mutex
	dgs     []decoders.Datagram
	batches int
}

func (h *recording) Handle(dg decoders.Datagram) { h.HandleBatch([]decoders.Datagram{dg}) }

func (h *recording) HandleBatch(dgs []decoders.Datagram) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.batches++
	for _, dg := range dgs {
		dg.Payload = bytes.Clone(dg.Payload) // valid only during the call
		h.dgs = append(h.dgs, dg)
	}
}

func (h *recording) wait(t *testing.T, n int) []decoders.Datagram {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		got := append([]decoders.Datagram(nil), h.dgs...)
		h.mu.Unlock()
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// addrCases are the listening addresses and senders of the batch tests:
// IPv4, IPv6, and IPv4 to a dual-stack socket (its sources v4-mapped).
var addrCases = []addrCase{
	{"127.0.0.1:0", "127.0.0.1", "127.0.0.1"},
	{"[::1]:0", "::1", "::1"},
	{"[::]:0", "127.0.0.1", "::ffff:127.0.0.1"},
}

type addrCase struct{ listen, from, want string }

// start runs a listener of one UDP socket on c.listen handing to h, with
// r's metrics, until the test ends, and returns a client sending from
// c.from; it skips where the machine has no such address.
func (c addrCase) start(t *testing.T, h listen.Handler, r *reporter.Reporter) *net.UDPConn {
	t.Helper()
	cfg := listen.DefaultConfiguration()
	cfg.UDP, cfg.TCP, cfg.Sockets = []string{c.listen}, nil, 1
	l, err := listen.New(r, cfg, listen.Dependencies{NewHandler: func() listen.Handler { return h }})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(); err != nil {
		t.Skipf("cannot listen on %s: %v", c.listen, err)
	}
	t.Cleanup(func() { l.Stop() })
	port := l.Addrs()[0].(*net.UDPAddr).Port
	to := netip.AddrPortFrom(netip.MustParseAddr(c.from), uint16(port))
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Skipf("cannot send from %s: %v", c.from, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestUDPBatches sends datagrams to UDP sockets read in batches (recvmmsg
// on Linux) and checks that each arrives once, whole (up to the largest
// UDP payload), in order, with the source address and port the sender
// used, given as ReadFromUDPAddrPort gives it (an IPv6 socket's IPv4
// sources v4-mapped).
func TestUDPBatches(t *testing.T) {
	for _, c := range addrCases {
		t.Run(c.listen+"<-"+c.from, func(t *testing.T) {
			h := &recording{}
			conn := c.start(t, h, reporter.NewForTest(nil))
			const n = 200
			var sent [][]byte
			for i := range n {
				p := []byte(fmt.Sprintf("datagram %d", i))
				if i == n/2 {
					p = bytes.Repeat([]byte{byte(i)}, 65507-40) // fits IPv4 and IPv6 alike
				}
				if _, err := conn.Write(p); err != nil {
					t.Fatal(err)
				}
				sent = append(sent, p)
				if i%50 == 0 {
					time.Sleep(5 * time.Millisecond) // some batches of one, some of many
				}
			}
			got := h.wait(t, n)
			if len(got) != n {
				t.Fatalf("received %d datagrams, want %d", len(got), n)
			}
			from := netip.MustParseAddrPort(conn.LocalAddr().String()).Port()
			want := netip.AddrPortFrom(netip.MustParseAddr(c.want), from)
			for i, dg := range got {
				if dg.Source != want {
					t.Fatalf("datagram %d from %v, want %v", i, dg.Source, want)
				}
				if !bytes.Equal(dg.Payload, sent[i]) {
					t.Fatalf("datagram %d: %d bytes %.20q, want %d bytes %.20q", i, len(dg.Payload), dg.Payload, len(sent[i]), sent[i])
				}
				if dg.Received.IsZero() {
					t.Fatalf("datagram %d without a receive time", i)
				}
			}
		})
	}
}

// startUDP starts a listener of sockets UDP sockets on loopback with the
// receive wait, every socket handing its datagrams to h, and a client
// connected to it.
func startUDP(t *testing.T, h listen.Handler, sockets int, wait time.Duration) (*listen.Listener, *net.UDPConn) {
	t.Helper()
	cfg := listen.DefaultConfiguration()
	cfg.UDP, cfg.TCP, cfg.Sockets, cfg.ReceiveWait = []string{"127.0.0.1:0"}, nil, sockets, wait
	l, err := listen.New(reporter.NewForTest(nil), cfg, listen.Dependencies{NewHandler: func() listen.Handler { return h }})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialUDP("udp", nil, l.Addrs()[0].(*net.UDPAddr))
	if err != nil {
		l.Stop()
		t.Fatal(err)
	}
	return l, conn
}

// gate holds the first batch it is handed until released, so that what
// comes after queues in the socket.
type gate struct {
	recording
	held    chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gate) HandleBatch(dgs []decoders.Datagram) {
	g.once.Do(func() {
		close(g.held)
		<-g.release
	})
	g.recording.HandleBatch(dgs)
}

// TestUDPStopReadsWhatWasQueued: datagrams the kernel had queued on a UDP
// socket when Stop came are read and handed on, not thrown away with the
// socket.
func TestUDPStopReadsWhatWasQueued(t *testing.T) {
	g := &gate{held: make(chan struct{}), release: make(chan struct{})}
	l, conn := startUDP(t, g, 1, time.Millisecond)
	defer conn.Close()
	if _, err := conn.Write([]byte("first")); err != nil {
		t.Fatal(err)
	}
	<-g.held // the reader is busy with the first datagram
	const n = 2000
	for i := range n {
		if _, err := conn.Write([]byte(fmt.Sprintf("queued %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	stopped := make(chan error)
	go func() { stopped <- l.Stop() }()
	time.Sleep(50 * time.Millisecond) // Stop has shut the socket by now
	close(g.release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	got := g.wait(t, n+1)
	if len(got) != n+1 {
		t.Fatalf("handed on %d datagrams, want the %d sent before Stop", len(got), n+1)
	}
	for i, dg := range got[1:] {
		if want := fmt.Sprintf("queued %d", i); string(dg.Payload) != want {
			t.Fatalf("datagram %d is %q, want %q", i+1, dg.Payload, want)
		}
	}
}

// trickle sends datagrams "trickle 0", "trickle 1"... with a pause after
// each, for d; it returns how many it sent.
func trickle(t *testing.T, conn *net.UDPConn, d, pause time.Duration) int {
	t.Helper()
	start, n := time.Now(), 0
	for time.Since(start) < d {
		if _, err := conn.Write([]byte(fmt.Sprintf("trickle %d", n))); err != nil {
			t.Fatal(err)
		}
		n++
		time.Sleep(pause)
	}
	return n
}

// TestUDPReceiveWaitGathersBatches: with a receive wait, a steady trickle
// of datagrams is read a batch per wait, not one read per datagram; with
// none, each is read as it comes (the datagrams are the same either way).
func TestUDPReceiveWaitGathersBatches(t *testing.T) {
	const wait = 5 * time.Millisecond
	for _, w := range []time.Duration{wait, 0} {
		t.Run(w.String(), func(t *testing.T) {
			h := &recording{}
			l, conn := startUDP(t, h, 1, w)
			defer l.Stop()
			defer conn.Close()
			start := time.Now()
			n := trickle(t, conn, 200*time.Millisecond, 20*time.Microsecond)
			elapsed := time.Since(start)
			got := h.wait(t, n)
			if len(got) != n {
				t.Fatalf("received %d datagrams, want %d", len(got), n)
			}
			for i, dg := range got {
				if want := fmt.Sprintf("trickle %d", i); string(dg.Payload) != want {
					t.Fatalf("datagram %d is %q, want %q", i, dg.Payload, want)
				}
			}
			h.mu.Lock()
			batches := h.batches
			h.mu.Unlock()
			t.Logf("%d datagrams in %v read in %d batches", n, elapsed, batches)
			if w == 0 {
				return
			}
			// A short batch is followed by a wait; full ones (32) by
			// none: at most one short batch per wait, plus the full ones.
			if most := int(elapsed/w)*3/2 + n/32 + 10; batches > most {
				t.Errorf("%d datagrams in %v read in %d batches; with a %v wait, want at most %d", n, elapsed, batches, w, most)
			}
		})
	}
}

// TestUDPReceiveWaitBoundedByBuffer: a receive wait longer than the
// socket's buffer holds of a 1 Gbit/s burst is shortened to that, and said
// once: with a 64 KiB buffer a 1 s wait would let a burst overflow it, so
// a trickle is read in many batches, not one per second.
func TestUDPReceiveWaitBoundedByBuffer(t *testing.T) {
	var logs testutil.SyncBuffer
	cfg := listen.DefaultConfiguration()
	cfg.UDP, cfg.TCP, cfg.Sockets, cfg.ReceiveWait, cfg.ReceiveBuffer = []string{"127.0.0.1:0"}, nil, 2, time.Second, 64<<10
	h := &recording{}
	l, err := listen.New(reporter.NewForTest(&logs), cfg, listen.Dependencies{NewHandler: func() listen.Handler { return h }})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	conn, err := net.DialUDP("udp", nil, l.Addrs()[0].(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	n := trickle(t, conn, 200*time.Millisecond, 100*time.Microsecond)
	if got := h.wait(t, n); len(got) != n {
		t.Fatalf("received %d datagrams, want %d", len(got), n)
	}
	h.mu.Lock()
	batches := h.batches
	h.mu.Unlock()
	t.Logf("%d datagrams in %v read in %d batches", n, time.Since(start), batches)
	// A 1 s wait would read 200 ms of trickle in at most a few batches;
	// 64 KiB (the kernel's 128 KiB) holds about 0.5 ms at 1 Gbit/s.
	if batches < 10 {
		t.Errorf("%d datagrams read in %d batches: the 1 s wait was not shortened to what a 64 KiB buffer holds", n, batches)
	}
	if c := strings.Count(logs.String(), "receive wait shortened"); c != 1 {
		t.Errorf("the shortened wait was logged %d times, want once:\n%s", c, logs.String())
	}
}

// TestUDPStopWhileIdle: a reader waiting in the kernel on a silent socket
// ends at Stop without handing on anything (a socket shut for reading
// answers "no data", which recvmmsg counts as a datagram).
func TestUDPStopWhileIdle(t *testing.T) {
	for _, w := range []time.Duration{time.Millisecond, 0} {
		h := &recording{}
		l, conn := startUDP(t, h, 2, w)
		if _, err := conn.Write([]byte("only")); err != nil {
			t.Fatal(err)
		}
		h.wait(t, 1)
		time.Sleep(100 * time.Millisecond) // past the empty reads: the readers wait in the kernel
		if err := l.Stop(); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		h.mu.Lock()
		got := append([]decoders.Datagram(nil), h.dgs...)
		h.mu.Unlock()
		if len(got) != 1 || string(got[0].Payload) != "only" {
			t.Errorf("wait %v: handed on %d datagrams %v, want the one sent", w, len(got), got)
		}
	}
}
