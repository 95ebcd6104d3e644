// Package listen is where flow datagrams enter the collector: UDP sockets
// (several per port with SO_REUSEPORT, each read by its own goroutine that
// also decodes, on Linux up to 32 datagrams per recvmmsg call, handed on as
// one batch; a port another process holds is refused unless sharing is
// asked for), IPFIX over TCP and IPFIX over TLS. Every datagram goes to a
// Handler (the pipeline's worker). Stream connections are checked against
// the allowed networks and the connection limits when accepted, before they
// take a slot, and closed when idle, so that strangers cannot keep the
// exporters out. The kernel's UDP drop counters of these sockets are
// exported as a metric.
package listen

import (
	"bufio"
	"context"
	"crypto/tls"
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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/decoders/reason"
	"github.com/spanflow/spanflow/internal/lifecycle"
	"github.com/spanflow/spanflow/internal/reporter"
)

// Reasons an IPFIX/TCP or TLS connection is refused: the values of the
// reason label of spanflow_listen_tcp_refused_total.
const (
	RefusedNotAllowed      = reason.NotAllowed  // source outside the allowed networks
	RefusedSourceLimit     = "source_limit"     // MaxTCPConnectionsPerSource from that address already open
	RefusedConnectionLimit = "connection_limit" // MaxTCPConnections already open
	RefusedTLSHandshake    = "tls_handshake"    // no valid client certificate, not TLS, or too slow
)

var refusedText = map[string]string{
	RefusedNotAllowed:      "connection from outside the allowed networks refused",
	RefusedSourceLimit:     "connection refused: too many from this address",
	RefusedConnectionLimit: "connection refused: too many connections",
	RefusedTLSHandshake:    "connection refused: tls handshake failed",
}

// tlsHandshakeTimeout bounds a TLS handshake (or the idle timeout, when
// shorter): an exporter completes it in a few round trips.
const tlsHandshakeTimeout = 10 * time.Second

// Handler takes datagrams from one goroutine.
type Handler interface {
	Handle(dg decoders.Datagram)
}

// BatchHandler also takes the datagrams one system call returned at once
// (Linux: recvmmsg), in the order they came; their payloads are valid until
// it returns. The listener uses it when the handler has it.
type BatchHandler interface {
	Handler
	HandleBatch(dgs []decoders.Datagram)
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
	tls     *tls.Config // nil without TLS addresses
	log     *reporter.Limited
	tracker lifecycle.Tracker
	// accepting counts the TCP accept loops; stopping tells them that an
	// accept deadline means Stop, not a fault.
	accepting sync.WaitGroup
	stopping  atomic.Bool

	mu        sync.Mutex
	closed    bool
	udp       []io.Closer // the UDP sockets' readers
	tcp       []net.Listener
	conns     map[net.Conn]net.Conn // accepted → what is read (the TLS conn once its handshake is done)
	draining  atomic.Int64          // when stopping: the deadline, unix ns, for reading what connections hold
	perSource map[netip.Addr]int
	inodes    map[uint64]bool
	addrs     []net.Addr

	tcpOpen    prometheus.Gauge
	tcpErr     prometheus.Counter
	tcpRefused *prometheus.CounterVec
	tcpIdle    prometheus.Counter
	coalesced  prometheus.Counter
	truncated  prometheus.Counter
}

// New returns the listeners; Start opens them. With TLS addresses, the
// certificate, key and client CA files are read here.
func New(r *reporter.Reporter, cfg Configuration, deps Dependencies) (*Listener, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("listen configuration: %w", err)
	}
	l := &Listener{r: r, cfg: cfg, deps: deps, log: reporter.NewLimited(r.Log, 10*time.Second),
		conns: map[net.Conn]net.Conn{}, perSource: map[netip.Addr]int{}, inodes: map[uint64]bool{}}
	if len(cfg.TLS) > 0 {
		var err error
		if l.tls, err = cfg.ServerTLS(); err != nil {
			return nil, fmt.Errorf("listen configuration: %w", err)
		}
	}
	f := r.Factory("listen")
	f.CounterFunc("kernel_drops_total", "Datagrams the kernel dropped on the collector's UDP sockets (receive buffer full), from /proc/net/udp.",
		func() float64 { return float64(l.KernelDrops()) })
	l.coalesced = f.Counter("udp_coalesced_datagrams_total", "UDP datagrams that the kernel handed up coalesced with others of their exporter (UDP GRO), and that were cut apart again.")
	l.truncated = f.Counter("udp_truncated_total", "UDP messages longer than the read buffer (a coalescing limit raised past 64 KiB); their last, partial datagram was dropped.")
	l.tcpOpen = f.Gauge("tcp_connections", "Open IPFIX/TCP and IPFIX/TLS connections.")
	l.tcpErr = f.Counter("tcp_errors_total", "IPFIX/TCP connections closed on a framing error.")
	l.tcpRefused = f.CounterVec("tcp_refused_total", "IPFIX/TCP and IPFIX/TLS connections refused, by reason.", "reason")
	for why := range refusedText {
		l.tcpRefused.WithLabelValues(why)
	}
	l.tcpIdle = f.Counter("tcp_idle_closed_total", "IPFIX/TCP and IPFIX/TLS connections closed after the idle timeout without a message.")
	return l, nil
}

// Name is used in lifecycle errors.
func (l *Listener) Name() string { return "listeners" }

// Addrs are the addresses actually listened on (useful with port 0): UDP,
// then TCP, then TLS, in the order configured.
func (l *Listener) Addrs() []net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]net.Addr(nil), l.addrs...)
}

// PortInUseError is a port another process holds (or, with
// ShareWithOtherProcesses, holds without sharing it). It wraps the bind
// error, so errors.Is(err, syscall.EADDRINUSE) holds.
type PortInUseError struct {
	Network string // udp or tcp
	Addr    string // as configured
	Err     error
}

func (e *PortInUseError) Error() string {
	return fmt.Sprintf("%s port %s is already in use by another process", e.Network, e.Addr)
}
func (e *PortInUseError) Unwrap() error { return e.Err }

// afterClaim, when set (tests), runs between claimUDP and the binds: where
// another process starting at the same instant would bind.
var afterClaim func(addr string)

// inUse wraps a bind error that says the address is taken.
func inUse(network, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return &PortInUseError{Network: network, Addr: addr, Err: err}
	}
	return fmt.Errorf("listen on %s %s: %w", network, addr, err)
}

// claimUDP makes sure no other process holds addr's port before the
// SO_REUSEPORT sockets bind it: those would join another process's
// sockets without a word, and the kernel would split the datagrams
// between the two. A socket without SO_REUSEPORT cannot bind a port that
// any other socket holds, so one is bound and closed first. Two
// collectors starting in the same instant could both pass it: once its
// sockets are bound, Start looks for sockets not its own on the same
// address (sharedWithOthers) and refuses the port then.
func (l *Listener) claimUDP(addr string) error {
	if l.cfg.ShareWithOtherProcesses {
		return nil
	}
	_, port, _ := net.SplitHostPort(addr)
	if port == "0" {
		return nil // the kernel picks a free port
	}
	for _, a := range l.addrs {
		if u, ok := a.(*net.UDPAddr); ok && strconv.Itoa(u.Port) == port {
			return nil // ours already, given twice (say as netflow-listen and ipfix-listen)
		}
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return inUse("udp", addr, err)
	}
	return pc.Close()
}

func (l *Listener) control(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		// UDP addresses take several sockets of this process (claimUDP
		// checked that no other holds the port); a TCP listener is one
		// socket, shared only when asked for.
		if strings.HasPrefix(network, "udp") || l.cfg.ShareWithOtherProcesses {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); serr != nil {
				return
			}
		}
		if strings.HasPrefix(network, "udp") {
			if l.cfg.ReceiveBuffer > 0 {
				setReceiveBuffer(int(fd), l.cfg.ReceiveBuffer)
			}
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

// hashOnExporter attaches the program that picks the socket of the port's
// group by the exporter's address to the group conn joined.
func (l *Listener) hashOnExporter(conn *net.UDPConn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var aerr error
	if err := rc.Control(func(fd uintptr) {
		aerr = attachReusePortProgram(int(fd), l.cfg.ReusePortGroup*l.cfg.Sockets)
	}); err != nil {
		return err
	}
	if aerr != nil {
		return fmt.Errorf("attach the reuseport program (SO_ATTACH_REUSEPORT_CBPF): %w", aerr)
	}
	return nil
}

// Start opens every socket and starts reading.
func (l *Listener) Start() error {
	lc := net.ListenConfig{Control: l.control}
	for _, a := range l.cfg.UDP {
		addr := a
		if err := l.claimUDP(addr); err != nil {
			l.Stop()
			return err
		}
		if afterClaim != nil {
			afterClaim(addr)
		}
		for i := 0; i < l.cfg.Sockets; i++ {
			l.mu.Lock()
			pc, err := lc.ListenPacket(context.Background(), "udp", addr)
			l.mu.Unlock()
			if err != nil {
				l.Stop()
				return inUse("udp", a, err)
			}
			conn := pc.(*net.UDPConn)
			if l.cfg.ReusePortGroup > 0 {
				if err := l.hashOnExporter(conn); err != nil {
					pc.Close()
					l.Stop()
					return fmt.Errorf("udp %s: %w", a, err)
				}
			}
			if i == 0 {
				// Later sockets join the same port, even when it was 0.
				addr = conn.LocalAddr().String()
				l.addrs = append(l.addrs, conn.LocalAddr())
			}
			r, err := l.startUDP(conn, l.deps.NewHandler())
			if err != nil {
				conn.Close()
				l.Stop()
				return fmt.Errorf("udp %s: %w", a, err)
			}
			l.mu.Lock()
			l.udp = append(l.udp, r)
			l.mu.Unlock()
		}
		if !l.cfg.ShareWithOtherProcesses {
			l.mu.Lock()
			other := sharedWithOthers(l.inodes)
			l.mu.Unlock()
			if other {
				l.Stop()
				return &PortInUseError{Network: "udp", Addr: a, Err: syscall.EADDRINUSE}
			}
		}
	}
	streams := []struct {
		addrs []string
		tls   *tls.Config
		proto string
	}{{l.cfg.TCP, nil, "tcp"}, {l.cfg.TLS, l.tls, "tls"}}
	for _, s := range streams {
		for _, a := range s.addrs {
			ln, err := lc.Listen(context.Background(), "tcp", a)
			if err != nil {
				l.Stop()
				return inUse(s.proto, a, err)
			}
			l.mu.Lock()
			l.tcp = append(l.tcp, ln)
			l.addrs = append(l.addrs, ln.Addr())
			l.mu.Unlock()
			l.accepting.Add(1)
			l.tracker.Go(func(ctx context.Context) error {
				defer l.accepting.Done()
				return l.acceptTCP(ln, s.tls, "ipfix/"+s.proto)
			})
		}
	}
	l.r.Log.Info("listening", "udp", l.cfg.UDP, "tcp", l.cfg.TCP, "tls", l.cfg.TLS, "sockets_per_port", l.cfg.Sockets,
		"shared_with_other_processes", l.cfg.ShareWithOtherProcesses, "reuseport_group", l.cfg.ReusePortGroup,
		"max_tcp_connections", l.cfg.MaxTCPConnections, "max_tcp_connections_per_source", l.cfg.MaxTCPConnectionsPerSource,
		"tcp_idle_timeout", l.cfg.TCPIdleTimeout)
	if len(l.cfg.TLS) > 0 && l.tls.ClientCAs == nil {
		l.r.Log.Warn("ipfix/tls without a client CA: any client may connect and send flows; give the exporters' CA to require their certificates",
			"tls", l.cfg.TLS)
	}
	if len(l.cfg.TCP)+len(l.cfg.TLS) > 0 && len(l.cfg.Allow) == 0 {
		l.r.Log.Info("ipfix/tcp and tls connections accepted from any address: no allowed networks")
	}
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

func (l *Listener) allowed(a netip.Addr) bool {
	if len(l.cfg.Allow) == 0 {
		return true
	}
	for _, n := range l.cfg.Allow {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// acceptTCP accepts the connections of one TCP or TLS listener (tlsCfg
// set). A connection is checked before it takes a slot; the TLS handshake
// runs on the connection's own goroutine, within its slot, so a slow one
// cannot hold up the others.
func (l *Listener) acceptTCP(ln net.Listener, tlsCfg *tls.Config, proto string) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || (l.stopping.Load() && errors.Is(err, os.ErrDeadlineExceeded)) {
				return nil
			}
			l.log.Warn("accept/"+proto, "accept "+proto, "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
		src := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		why, ok := l.admit(c, src.Addr())
		if !ok {
			if why != "" {
				l.refuse(c, proto, src, why)
			}
			c.Close()
			continue
		}
		l.tcpOpen.Inc()
		l.tracker.Go(func(ctx context.Context) error {
			defer l.release(c, src.Addr())
			l.serveTCP(ctx, c, src, tlsCfg, proto)
			return nil
		})
	}
}

// admit gives c a slot, or says why not (no reason when the listener is
// stopping).
func (l *Listener) admit(c net.Conn, src netip.Addr) (string, bool) {
	if !l.allowed(src) {
		return RefusedNotAllowed, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return "", false
	case l.perSource[src] >= l.cfg.MaxTCPConnectionsPerSource:
		return RefusedSourceLimit, false
	case len(l.conns) >= l.cfg.MaxTCPConnections:
		return RefusedConnectionLimit, false
	}
	l.conns[c] = c
	l.perSource[src]++
	return "", true
}

func (l *Listener) release(c net.Conn, src netip.Addr) {
	l.mu.Lock()
	delete(l.conns, c)
	if l.perSource[src]--; l.perSource[src] <= 0 {
		delete(l.perSource, src)
	}
	l.mu.Unlock()
	l.tcpOpen.Dec()
	c.Close()
}

// refuse counts and logs a refused connection (rate-limited: the sources
// may be many). One refused at accept is reset, so that no socket lingers
// in TIME_WAIT; after a failed handshake the client should read the TLS
// alert that says why, so that one is closed normally.
func (l *Listener) refuse(c net.Conn, proto string, src netip.AddrPort, why string, args ...any) {
	l.tcpRefused.WithLabelValues(why).Inc()
	switch why {
	case RefusedSourceLimit:
		args = append(args, "max_tcp_connections_per_source", l.cfg.MaxTCPConnectionsPerSource)
	case RefusedConnectionLimit:
		args = append(args, "max_tcp_connections", l.cfg.MaxTCPConnections)
	}
	l.log.Warn("refused/"+why, proto+" "+refusedText[why], append([]any{"remote", src, "reason", why}, args...)...)
	if tc, ok := c.(*net.TCPConn); ok && why != RefusedTLSHandshake {
		_ = tc.SetLinger(0)
	}
}

// serveTCP runs the TLS handshake when tlsCfg is set, then reads the
// connection's messages.
func (l *Listener) serveTCP(ctx context.Context, c net.Conn, src netip.AddrPort, tlsCfg *tls.Config, proto string) {
	conn := c
	if tlsCfg != nil {
		tc := tls.Server(c, tlsCfg)
		hctx, cancel := context.WithTimeout(ctx, min(tlsHandshakeTimeout, l.cfg.TCPIdleTimeout))
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				l.refuse(c, proto, src, RefusedTLSHandshake, "err", err)
			}
			return
		}
		conn = tc
		l.mu.Lock()
		if _, ok := l.conns[c]; ok {
			l.conns[c] = tc // Stop half-closes it with close_notify
		}
		l.mu.Unlock()
		if peer := tc.ConnectionState().PeerCertificates; len(peer) > 0 {
			l.r.Log.Debug(proto+" connection", "remote", src, "client", peer[0].Subject.String())
		}
	}
	l.readTCP(conn, src, l.deps.NewHandler(), proto)
}

// readTCP reads IPFIX messages from a stream: each starts with version 10
// and its length. A message must arrive whole within the idle timeout.
func (l *Listener) readTCP(c net.Conn, src netip.AddrPort, h Handler, proto string) {
	r := bufio.NewReaderSize(c, 65536)
	buf := make([]byte, 65536)
	for {
		_ = c.SetReadDeadline(time.Now().Add(l.cfg.TCPIdleTimeout))
		if d := l.draining.Load(); d != 0 {
			// Stopping (checked after the idle deadline was set, so that
			// Stop's deadline wins whichever came first).
			_ = c.SetReadDeadline(time.Unix(0, d))
		}
		if _, err := io.ReadFull(r, buf[:4]); err != nil {
			l.readFailed(proto, src, err, false)
			return
		}
		version, length := binary.BigEndian.Uint16(buf), int(binary.BigEndian.Uint16(buf[2:]))
		if version != 10 || length < 16 {
			l.tcpErr.Inc()
			l.log.Warn("framing/"+src.Addr().String(), proto+": not an IPFIX message, closing", "remote", src, "version", version, "length", length)
			return
		}
		if _, err := io.ReadFull(r, buf[4:length]); err != nil {
			l.readFailed(proto, src, err, true)
			return
		}
		h.Handle(decoders.Datagram{Source: src, Payload: buf[:length], Received: time.Now()})
	}
}

// readFailed counts why a read ended: the idle timeout, or within a
// message (a framing error); an orderly close is not counted.
func (l *Listener) readFailed(proto string, src netip.AddrPort, err error, inMessage bool) {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		l.tcpIdle.Inc()
		l.log.Warn("idle/"+src.Addr().String(), proto+" connection idle, closed", "remote", src, "idle_timeout", l.cfg.TCPIdleTimeout)
	case inMessage:
		l.tcpErr.Inc()
	case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
	default:
		l.log.Warn("read/"+src.Addr().String(), proto+" read", "remote", src, "err", err)
	}
}

// stopDrain bounds how long Stop reads what IPFIX/TCP connections still
// hold once it has closed its side of them.
const stopDrain = 2 * time.Second

// acceptDrain is how long Stop lets the accept loops take the connections
// already queued in the kernel.
const acceptDrain = 100 * time.Millisecond

// Stop closes the UDP sockets and the TCP listeners, then closes its side
// of each IPFIX/TCP connection (TLS: close_notify) and reads what the
// exporter had sent until the exporter closes its side too, or stopDrain
// passes: what the kernel had acknowledged to the exporter is decoded, not
// thrown away with a reset. Then it waits for the goroutines.
func (l *Listener) Stop() error {
	// Connections the kernel has completed but no one has accepted yet
	// hold what their exporters sent before Stop; closing the listener
	// would reset them. A short accept deadline lets each accept loop take
	// what is queued (Accept returns those at once), then end.
	l.stopping.Store(true)
	l.mu.Lock()
	for _, ln := range l.tcp {
		if tl, ok := ln.(*net.TCPListener); ok {
			_ = tl.SetDeadline(time.Now().Add(acceptDrain))
		}
	}
	l.mu.Unlock()
	l.accepting.Wait()
	l.mu.Lock()
	l.closed = true
	for _, c := range l.udp {
		c.Close()
	}
	for _, ln := range l.tcp {
		ln.Close()
	}
	deadline := time.Now().Add(stopDrain)
	l.draining.Store(deadline.UnixNano())
	for raw, c := range l.conns {
		_ = raw.SetReadDeadline(deadline)
		switch w := c.(type) {
		case *tls.Conn:
			_ = w.CloseWrite()
		case *net.TCPConn:
			_ = w.CloseWrite()
		default:
			c.Close()
		}
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
	for _, table := range udpSockets() {
		for _, s := range table {
			if inodes[s.ino] {
				total += s.drops
			}
		}
	}
	return total
}

// sharedWithOthers reports whether a UDP socket that is not one of mine
// (inodes) is bound to the local address of one of mine: another process
// that joined a port's SO_REUSEPORT group.
func sharedWithOthers(mine map[uint64]bool) bool {
	for _, table := range udpSockets() {
		ours := map[string]bool{}
		for _, s := range table {
			if mine[s.ino] {
				ours[s.local] = true
			}
		}
		for _, s := range table {
			if ours[s.local] && !mine[s.ino] {
				return true
			}
		}
	}
	return false
}

// udpSocket is a line of /proc/net/udp or udp6.
type udpSocket struct {
	local string // local address and port, as the kernel prints them
	ino   uint64
	drops uint64
}

// udpSockets reads the UDP sockets of the process's network namespace,
// /proc/net/udp then udp6 (a table each); a table it cannot read (not
// Linux) is empty.
func udpSockets() [2][]udpSocket {
	var out [2][]udpSocket
	for i, path := range []string{"/proc/net/udp", "/proc/net/udp6"} {
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
			if err != nil {
				continue
			}
			d, _ := strconv.ParseUint(f[len(f)-1], 10, 64)
			out[i] = append(out[i], udpSocket{local: f[1], ino: ino, drops: d})
		}
	}
	return out
}
