// Package listen is where flow datagrams enter the collector: UDP sockets
// (several per port with SO_REUSEPORT, each read by its own goroutine that
// also decodes) and IPFIX over TCP. Every datagram goes to a Handler (the
// pipeline's worker). The kernel's UDP drop counters of these sockets are
// exported as a metric.
package listen

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/internal/lifecycle"
	"github.com/spanflow/spanflow/internal/reporter"
)

// Handler takes datagrams from one goroutine.
type Handler interface {
	Handle(dg decoders.Datagram)
}

// Dependencies of the listeners.
type Dependencies struct {
	// NewHandler returns a handler for one reading goroutine.
	NewHandler func() Handler
}

// Listener owns the sockets.
type Listener struct {
	r       *reporter.Reporter
	cfg     Configuration
	deps    Dependencies
	tracker lifecycle.Tracker

	mu      sync.Mutex
	udp     []*net.UDPConn
	tcp     []net.Listener
	conns   map[net.Conn]struct{}
	inodes  map[uint64]bool
	addrs   []net.Addr
	tcpOpen prometheus.Gauge
	tcpErr  prometheus.Counter
}

// New returns the listeners; Start opens them.
func New(r *reporter.Reporter, cfg Configuration, deps Dependencies) (*Listener, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("listen configuration: %w", err)
	}
	l := &Listener{r: r, cfg: cfg, deps: deps, conns: map[net.Conn]struct{}{}, inodes: map[uint64]bool{}}
	f := r.Factory("listen")
	f.CounterFunc("kernel_drops_total", "Datagrams the kernel dropped on the collector's UDP sockets (receive buffer full), from /proc/net/udp.",
		func() float64 { return float64(l.KernelDrops()) })
	l.tcpOpen = f.Gauge("tcp_connections", "Open IPFIX/TCP connections.")
	l.tcpErr = f.Counter("tcp_errors_total", "IPFIX/TCP connections closed on a framing error.")
	return l, nil
}

// Name is used in lifecycle errors.
func (l *Listener) Name() string { return "listeners" }

// Addrs are the addresses actually listened on (useful with port 0).
func (l *Listener) Addrs() []net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]net.Addr(nil), l.addrs...)
}

func (l *Listener) control(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); serr != nil {
			return
		}
		if strings.HasPrefix(network, "udp") && l.cfg.ReceiveBuffer > 0 {
			setReceiveBuffer(int(fd), l.cfg.ReceiveBuffer)
			var st unix.Stat_t
			if unix.Fstat(int(fd), &st) == nil {
				l.inodes[st.Ino] = true
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// Start opens every socket and starts reading.
func (l *Listener) Start() error {
	lc := net.ListenConfig{Control: l.control}
	for _, a := range l.cfg.UDP {
		addr := a
		for i := 0; i < l.cfg.Sockets; i++ {
			l.mu.Lock()
			pc, err := lc.ListenPacket(context.Background(), "udp", addr)
			l.mu.Unlock()
			if err != nil {
				l.Stop()
				return fmt.Errorf("listen on udp %s: %w", a, err)
			}
			conn := pc.(*net.UDPConn)
			if i == 0 {
				// Later sockets join the same port, even when it was 0.
				addr = conn.LocalAddr().String()
				l.addrs = append(l.addrs, conn.LocalAddr())
			}
			l.mu.Lock()
			l.udp = append(l.udp, conn)
			l.mu.Unlock()
			h := l.deps.NewHandler()
			l.tracker.Go(func(ctx context.Context) error { return l.readUDP(conn, h) })
		}
	}
	for _, a := range l.cfg.TCP {
		ln, err := lc.Listen(context.Background(), "tcp", a)
		if err != nil {
			l.Stop()
			return fmt.Errorf("listen on tcp %s: %w", a, err)
		}
		l.mu.Lock()
		l.tcp = append(l.tcp, ln)
		l.addrs = append(l.addrs, ln.Addr())
		l.mu.Unlock()
		l.tracker.Go(func(ctx context.Context) error { return l.acceptTCP(ln) })
	}
	l.r.Log.Info("listening", "udp", l.cfg.UDP, "tcp", l.cfg.TCP, "sockets_per_port", l.cfg.Sockets)
	return nil
}

func (l *Listener) readUDP(conn *net.UDPConn, h Handler) error {
	buf := make([]byte, 65536)
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			l.r.Log.Warn("read udp", "addr", conn.LocalAddr(), "err", err)
			continue
		}
		h.Handle(decoders.Datagram{Source: src, Payload: buf[:n], Received: time.Now()})
	}
}

func (l *Listener) acceptTCP(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			l.r.Log.Warn("accept ipfix/tcp", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		l.mu.Lock()
		if len(l.conns) >= l.cfg.MaxTCPConnections {
			l.mu.Unlock()
			l.r.Log.Warn("ipfix/tcp connection refused: too many", "remote", c.RemoteAddr(), "max", l.cfg.MaxTCPConnections)
			c.Close()
			continue
		}
		l.conns[c] = struct{}{}
		l.mu.Unlock()
		l.tcpOpen.Inc()
		h := l.deps.NewHandler()
		l.tracker.Go(func(ctx context.Context) error {
			defer func() {
				l.mu.Lock()
				delete(l.conns, c)
				l.mu.Unlock()
				l.tcpOpen.Dec()
				c.Close()
			}()
			l.readTCP(c, h)
			return nil
		})
	}
}

// readTCP reads IPFIX messages from a stream: each starts with version 10
// and its length.
func (l *Listener) readTCP(c net.Conn, h Handler) {
	src, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	r := bufio.NewReaderSize(c, 65536)
	buf := make([]byte, 65536)
	for {
		if _, err := io.ReadFull(r, buf[:4]); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				l.r.Log.Warn("ipfix/tcp read", "remote", c.RemoteAddr(), "err", err)
			}
			return
		}
		version, length := binary.BigEndian.Uint16(buf), int(binary.BigEndian.Uint16(buf[2:]))
		if version != 10 || length < 16 {
			l.tcpErr.Inc()
			l.r.Log.Warn("ipfix/tcp: not an IPFIX message, closing", "remote", c.RemoteAddr(), "version", version, "length", length)
			return
		}
		if _, err := io.ReadFull(r, buf[4:length]); err != nil {
			l.tcpErr.Inc()
			return
		}
		h.Handle(decoders.Datagram{Source: src, Payload: buf[:length], Received: time.Now()})
	}
}

// Stop closes every socket and waits for the goroutines.
func (l *Listener) Stop() error {
	l.mu.Lock()
	for _, c := range l.udp {
		c.Close()
	}
	for _, ln := range l.tcp {
		ln.Close()
	}
	for c := range l.conns {
		c.Close()
	}
	l.udp, l.tcp = nil, nil
	l.mu.Unlock()
	return l.tracker.Stop()
}

// KernelDrops sums the drop counters the kernel keeps for this listener's
// UDP sockets (last column of /proc/net/udp and udp6).
func (l *Listener) KernelDrops() uint64 {
	l.mu.Lock()
	inodes := make(map[uint64]bool, len(l.inodes))
	for k := range l.inodes {
		inodes[k] = true
	}
	l.mu.Unlock()
	var total uint64
	for _, path := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 13 {
				continue
			}
			ino, err := strconv.ParseUint(f[9], 10, 64)
			if err != nil || !inodes[ino] {
				continue
			}
			d, _ := strconv.ParseUint(f[len(f)-1], 10, 64)
			total += d
		}
	}
	return total
}
