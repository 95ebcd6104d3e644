package listen_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spanflow/spanflow/collector/listen"
	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// landing records which socket (numbered across every listener of the
// group) each datagram reached, by source address.
type landing struct {
	mu       sync.Mutex
	total    int
	bySource map[netip.Addr]map[int]int
}

type socketRecorder struct {
	l  *landing
	id int
}

func (h socketRecorder) Handle(dg decoders.Datagram) {
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	m := h.l.bySource[dg.Source.Addr()]
	if m == nil {
		m = map[int]int{}
		h.l.bySource[dg.Source.Addr()] = m
	}
	m[h.id]++
	h.l.total++
}

// reuseGroup starts processes listeners (standing for collector
// processes) of sockets sockets each on one shared 127.0.0.1 port, with
// group as their ReusePortGroup, bound to host; it returns the port and
// the record.
func reuseGroup(t *testing.T, host string, processes, sockets, group int) (*net.UDPAddr, *landing, []*listen.Listener) {
	t.Helper()
	l := &landing{bySource: map[netip.Addr]map[int]int{}}
	// A port no socket holds: one bound to port 0 with SO_REUSEPORT may be
	// given a port another reuseport socket of this user holds, and join it.
	free, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	addr := free.LocalAddr().String()
	free.Close()
	next := 0
	var lns []*listen.Listener
	for p := 0; p < processes; p++ {
		cfg := listen.DefaultConfiguration()
		cfg.UDP, cfg.TCP, cfg.Sockets, cfg.ShareWithOtherProcesses, cfg.ReusePortGroup = []string{addr}, nil, sockets, true, group
		ln, err := listen.New(reporter.NewForTest(&testutil.SyncBuffer{}), cfg, listen.Dependencies{NewHandler: func() listen.Handler {
			next++
			return socketRecorder{l, next - 1}
		}})
		if err != nil {
			t.Fatal(err)
		}
		if err := ln.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Stop() })
		lns = append(lns, ln)
		addr = ln.Addrs()[0].String()
	}
	to, _ := net.ResolveUDPAddr("udp", addr)
	return to, l, lns
}

// loopbackSources are 64 IPv4 loopback addresses, 127.0.1.1–127.0.2.32.
func loopbackSources() []net.IP {
	var ips []net.IP
	for x := 1; x <= 2; x++ {
		for y := 1; y <= 32; y++ {
			ips = append(ips, net.IPv4(127, 0, byte(x), byte(y)))
		}
	}
	return ips
}

// freebind lets a socket bind an IPv6 address the host does not have
// (fd00::/8 sources sent to ::1 over the loopback), without privileges.
var freebind = net.ListenConfig{Control: func(network, _ string, c syscall.RawConn) error {
	if network != "udp6" {
		return nil
	}
	var serr error
	if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1) }); err != nil {
		return err
	}
	return serr
}}

// sendFromMany sends 2 datagrams from each of 4 source ports of every
// source address and waits for them.
func sendFromMany(t *testing.T, to *net.UDPAddr, sources []net.IP, l *landing) {
	t.Helper()
	sent := 0
	for _, ip := range sources {
		for port := 0; port < 4; port++ {
			pc, err := freebind.ListenPacket(context.Background(), "udp", net.JoinHostPort(ip.String(), "0"))
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 2; i++ {
				if _, err := pc.WriteTo([]byte(fmt.Sprintf("datagram %d", i)), to); err != nil {
					t.Fatal(err)
				}
				sent++
			}
			pc.Close()
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		l.mu.Lock()
		got := l.total
		l.mu.Unlock()
		if got == sent {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d datagrams of %d arrived", got, sent)
		}
	}
}

// ipv6Sources are 64 addresses of fd00::/64, which the loopback carries
// to ::1 from a socket with IPV6_FREEBIND.
func ipv6Sources() []net.IP {
	var ips []net.IP
	for i := 1; i <= 64; i++ {
		ip := netip.MustParseAddr(fmt.Sprintf("fd00::%x:%x", i*7919%65536, i)).As16()
		ips = append(ips, ip[:])
	}
	return ips
}

// TestReusePortGroupHashesOnExporterAddress: with the program, every
// datagram of one source address reaches one socket whatever its source
// port, and the sources spread over every socket of the group (several
// sockets in one process, or one in each of several; IPv4 sources on an
// IPv4 or a dual-stack socket, IPv6 sources).
func TestReusePortGroupHashesOnExporterAddress(t *testing.T) {
	for _, c := range []struct {
		host               string
		sources            []net.IP
		processes, sockets int
	}{
		{"127.0.0.1", loopbackSources(), 1, 2},
		{"127.0.0.1", loopbackSources(), 1, 3},
		{"127.0.0.1", loopbackSources(), 2, 1},
		{"127.0.0.1", loopbackSources(), 3, 1},
		{"127.0.0.1", loopbackSources(), 2, 2},
		{"::", loopbackSources(), 3, 1},
		{"::1", ipv6Sources(), 3, 1},
	} {
		t.Run(fmt.Sprintf("%s/%dx%d", c.host, c.processes, c.sockets), func(t *testing.T) {
			to, l, _ := reuseGroup(t, c.host, c.processes, c.sockets, c.processes)
			if c.host == "::" {
				to.IP = net.IPv4(127, 0, 0, 1)
			}
			sendFromMany(t, to, c.sources, l)
			used := map[int]bool{}
			for src, on := range l.bySource {
				if len(on) != 1 {
					t.Errorf("datagrams from %s reached %d sockets: %v", src, len(on), on)
				}
				for s := range on {
					used[s] = true
				}
			}
			if len(l.bySource) != len(c.sources) {
				t.Errorf("%d source addresses seen, want %d", len(l.bySource), len(c.sources))
			}
			if n := c.processes * c.sockets; len(used) != n {
				t.Errorf("sources reached %d sockets of %d", len(used), n)
			}
		})
	}
}

// TestReusePortWithoutGroupSplitsSources is the control: without the
// program the kernel's hash covers the source port, and some source
// addresses reach several sockets (what the test above would catch).
func TestReusePortWithoutGroupSplitsSources(t *testing.T) {
	to, l, _ := reuseGroup(t, "127.0.0.1", 2, 1, 0)
	sendFromMany(t, to, loopbackSources(), l)
	split := 0
	for _, on := range l.bySource {
		if len(on) > 1 {
			split++
		}
	}
	if split == 0 {
		t.Errorf("no source address reached two sockets without the program: the test above could not fail")
	}
	t.Logf("without the program %d of %d source addresses reached both sockets", split, len(l.bySource))
}

// TestReusePortGroupLosesAProcess: when a process of the group is gone,
// the kernel moves the group's last socket into its slot, and a program
// result beyond the sockets left falls back to the kernel's own hash:
// every datagram still reaches a socket that is left.
func TestReusePortGroupLosesAProcess(t *testing.T) {
	to, l, lns := reuseGroup(t, "127.0.0.1", 3, 1, 3)
	lns[1].Stop()
	sendFromMany(t, to, loopbackSources(), l)
	split := 0
	for src, on := range l.bySource {
		if on[1] > 0 {
			t.Errorf("datagrams from %s reached the stopped socket", src)
		}
		if len(on) > 1 {
			split++
		}
	}
	t.Logf("with 2 of 3 processes left, %d of %d source addresses were split by the kernel's fallback hash", split, len(l.bySource))
}

// TestPortJoinedAtTheSameInstant: another process's SO_REUSEPORT socket
// that binds the port after the listener checked it (two collectors
// started at once) and before its own sockets bind would share the
// datagrams; Start sees the socket that is not its own on the address and
// refuses the port, as it refuses one held before. A listener alone on
// its port starts, and ShareWithOtherProcesses lets the other stay.
func TestPortJoinedAtTheSameInstant(t *testing.T) {
	free, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.LocalAddr().String()
	free.Close()
	var other net.PacketConn
	defer func() {
		if other != nil {
			other.Close()
		}
	}()
	join := func(string) {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
			return serr
		}}
		if other, err = lc.ListenPacket(context.Background(), "udp", addr); err != nil {
			t.Errorf("the other socket: %v", err)
		}
	}
	for _, share := range []bool{false, true} {
		restore := listen.SetAfterClaim(join)
		cfg := listen.DefaultConfiguration()
		cfg.UDP, cfg.TCP, cfg.Sockets, cfg.ShareWithOtherProcesses = []string{addr}, nil, 2, share
		l, err := listen.New(reporter.NewForTest(nil), cfg, listen.Dependencies{NewHandler: func() listen.Handler { return &decoding{} }})
		if err != nil {
			t.Fatal(err)
		}
		err = l.Start()
		restore()
		l.Stop()
		if other == nil {
			t.Fatal("the other socket did not bind")
		}
		other.Close()
		var inUse *listen.PortInUseError
		if share {
			if err != nil {
				t.Errorf("shared with other processes: %v", err)
			}
			continue
		}
		if !errors.As(err, &inUse) || inUse.Addr != addr || !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("a socket joined the port between the check and the binds: err = %v, want a PortInUseError", err)
		}
	}
	// Alone on the port (its own sockets only): it starts.
	cfg := listen.DefaultConfiguration()
	cfg.UDP, cfg.TCP, cfg.Sockets = []string{addr}, nil, 2
	start(t, cfg)
}

// blocked takes no datagram until release is closed.
type blocked struct{ release chan struct{} }

func (b *blocked) Handle(decoders.Datagram) { <-b.release }

// TestKernelDropsCounted: while the handler is stuck, the socket's buffer
// fills and the kernel drops what comes after; KernelDrops reports those
// drops, with the kernel's default buffer as with one asked for.
func TestKernelDropsCounted(t *testing.T) {
	for _, buffer := range []int{0, 64 << 10} {
		t.Run(fmt.Sprint("receive-buffer=", buffer), func(t *testing.T) {
			h := &blocked{release: make(chan struct{})}
			cfg := listen.DefaultConfiguration()
			cfg.UDP, cfg.TCP, cfg.Sockets, cfg.ReceiveBuffer = []string{"127.0.0.1:0"}, nil, 1, buffer
			l, err := listen.New(reporter.NewForTest(nil), cfg, listen.Dependencies{NewHandler: func() listen.Handler { return h }})
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Start(); err != nil {
				t.Fatal(err)
			}
			defer l.Stop()
			defer close(h.release)
			if d := l.KernelDrops(); d != 0 {
				t.Fatalf("%d drops before anything was sent", d)
			}
			c, err := net.Dial("udp", l.Addrs()[0].String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			payload := make([]byte, 1000)
			for range 8000 { // 8 MB: more than any default buffer holds
				c.Write(payload)
			}
			if d := l.KernelDrops(); d == 0 {
				t.Errorf("8,000 datagrams to a stuck reader: KernelDrops says none were dropped")
			}
		})
	}
}
