package listen_test

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/listen"
	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/internal/reporter"
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

// TestUDPBatches sends datagrams to UDP sockets read in batches (recvmmsg
// on Linux) and checks that each arrives once, whole (up to the largest
// UDP payload), in order, with the source address and port the sender
// used, given as ReadFromUDPAddrPort gives it (an IPv6 socket's IPv4
// sources v4-mapped).
func TestUDPBatches(t *testing.T) {
	cases := []struct{ listen, from, want string }{
		{"127.0.0.1:0", "127.0.0.1", "127.0.0.1"},
		{"[::1]:0", "::1", "::1"},
		{"[::]:0", "127.0.0.1", "::ffff:127.0.0.1"},
	}
	for _, c := range cases {
		t.Run(c.listen+"<-"+c.from, func(t *testing.T) {
			h := &recording{}
			cfg := listen.DefaultConfiguration()
			cfg.UDP, cfg.TCP, cfg.Sockets = []string{c.listen}, nil, 1
			l, err := listen.New(reporter.NewForTest(nil), cfg, listen.Dependencies{NewHandler: func() listen.Handler { return h }})
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Start(); err != nil {
				t.Skipf("cannot listen on %s: %v", c.listen, err)
			}
			defer l.Stop()
			port := l.Addrs()[0].(*net.UDPAddr).Port
			to := netip.AddrPortFrom(netip.MustParseAddr(c.from), uint16(port))
			conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
			if err != nil {
				t.Skipf("cannot send from %s: %v", c.from, err)
			}
			defer conn.Close()
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
