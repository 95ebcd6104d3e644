// Package export is the exporter's last stage: it carries finished IPFIX
// messages to every configured collector (the spanflow collector and any
// existing NMS) over UDP.
package transport

import (
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spanflow/spanflow/internal/reporter"
)

// Configuration of the transport.
type Configuration struct {
	// Collectors are HOST:PORT (UDP) or udp://, tcp:// or tls://HOST:PORT
	// addresses; each gets every message.
	Collectors []string
	// CAFile is the PEM file of the CAs a tls:// collector's certificate
	// must chain to (the system's when empty).
	CAFile string
	// CertFile and KeyFile are the exporter's client certificate (PEM,
	// with its intermediates) and key, presented to tls:// collectors
	// that ask for one: both or neither.
	CertFile, KeyFile string
	// QueueSize is how many messages a TCP collector buffers while away.
	QueueSize int
}

// DefaultQueueSize buffers 4096 messages (about 5 MiB at MTU 1400).
const DefaultQueueSize = 4096

// Validate checks that every collector is a HOST:PORT with a valid port.
func (c Configuration) Validate() error {
	if len(c.Collectors) == 0 {
		return errors.New("no collector: give at least one HOST:PORT")
	}
	var errs []error
	for _, a := range c.Collectors {
		if _, _, err := SplitCollector(a); err != nil {
			errs = append(errs, err)
		}
	}
	if c.CAFile != "" {
		if _, err := os.Stat(c.CAFile); err != nil {
			errs = append(errs, fmt.Errorf("CA file: %w", err))
		}
	}
	if c.CertFile != "" || c.KeyFile != "" {
		if _, err := c.clientCertificate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// clientCertificate reads the certificate and key files; an error says
// which file is wrong.
func (c Configuration) clientCertificate() (tls.Certificate, error) {
	switch {
	case c.CertFile == "":
		return tls.Certificate{}, errors.New("key file given without a certificate file: give both or neither")
	case c.KeyFile == "":
		return tls.Certificate{}, errors.New("certificate file given without a key file: give both or neither")
	}
	certPEM, err := os.ReadFile(c.CertFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("read certificate file: %w", err)
	}
	keyPEM, err := os.ReadFile(c.KeyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("read key file: %w", err)
	}
	if b, _ := pem.Decode(certPEM); b == nil || b.Type != "CERTIFICATE" {
		return tls.Certificate{}, fmt.Errorf("certificate file %s holds no PEM certificate first", c.CertFile)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("key file %s with certificate file %s: %w", c.KeyFile, c.CertFile, err)
	}
	return cert, nil
}

// SplitCollector returns the transport ("udp", "tcp" or "tls") and the
// HOST:PORT of a collector written [SCHEME://]HOST:PORT[?compat=PROFILE].
func SplitCollector(a string) (scheme, addr string, err error) {
	c, err := ParseCollector(a)
	return c.Scheme, c.Addr, err
}

// Collector is one collector as configured.
type Collector struct {
	Scheme string // udp, tcp or tls
	Addr   string // HOST:PORT
	// Compat is the collector's compatibility profile ("" for none):
	// CompatPmacct sends it tcpControlBits in 1 octet.
	Compat string
}

// CompatPmacct is the profile of collectors that read tcpControlBits
// (IE 6) only in 1 octet, as pmacct's nfacctd does: their messages carry
// it in 1 octet (reduced-size encoding, RFC 7011 §6.2), without the NS
// flag (0x100), which needs the second octet.
const CompatPmacct = "pmacct"

// ParseCollector reads a collector written [SCHEME://]HOST:PORT, with an
// optional ?compat=PROFILE.
func ParseCollector(a string) (Collector, error) {
	c := Collector{Scheme: "udp", Addr: a}
	if i := strings.Index(a, "://"); i >= 0 {
		c.Scheme, c.Addr = a[:i], a[i+3:]
		switch c.Scheme {
		case "udp", "tcp", "tls":
		default:
			return Collector{}, fmt.Errorf("collector %q: transport must be udp://, tcp:// or tls://", a)
		}
	}
	if addr, query, ok := strings.Cut(c.Addr, "?"); ok {
		c.Addr = addr
		v, ok := strings.CutPrefix(query, "compat=")
		if !ok || v != CompatPmacct {
			return Collector{}, fmt.Errorf("collector %q: the only option is ?compat=%s (tcpControlBits in 1 octet)", a, CompatPmacct)
		}
		c.Compat = v
	}
	if err := checkAddress(a, c.Addr); err != nil {
		return Collector{}, err
	}
	return c, nil
}

// checkAddress checks the HOST:PORT part (addr) of collector a.
func checkAddress(a, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("collector %q: want HOST:PORT: %w", a, err)
	}
	if host == "" {
		return fmt.Errorf("collector %q: missing host", a)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("collector %q: port must be a number from 1 to 65535", a)
	}
	return nil
}

// UDP sends each message to every collector from one unconnected socket
// (an unreachable collector then cannot fail the sends to the others).
type UDP struct {
	conn  *net.UDPConn
	dests []*net.UDPAddr
	names []string
	// narrow says, per collector, that it gets the messages with
	// tcpControlBits in 1 octet (compat=pmacct).
	narrow []bool
	log    *reporter.Limited
	mu     sync.Mutex // guards stats: Send and metrics may run in different goroutines
	stats  Stats
	per    []Stats  // per collector
	batch  udpBatch // the system's way of sending several datagrams at once
}

// Stats counts datagrams per outcome (and, per collector, the flow records
// of the datagrams sent and of those the kernel refused to send).
type Stats struct {
	Sent, Errors   uint64
	Records        uint64
	DroppedRecords uint64
}

// NewUDP resolves the collectors and opens the socket.
func NewUDP(r *reporter.Reporter, cfg Configuration) (*UDP, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u := &UDP{log: reporter.NewLimited(r.Log, 10*time.Second), names: cfg.Collectors, per: make([]Stats, len(cfg.Collectors))}
	v4only := true
	for _, a := range cfg.Collectors {
		c, _ := ParseCollector(a)
		u.narrow = append(u.narrow, c.Compat == CompatPmacct)
		addr, err := net.ResolveUDPAddr("udp", c.Addr)
		if err != nil {
			return nil, fmt.Errorf("collector %q: %w", a, err)
		}
		if addr.IP.To4() == nil {
			v4only = false
		}
		u.dests = append(u.dests, addr)
	}
	network := "udp"
	if v4only {
		network = "udp4"
	}
	conn, err := net.ListenUDP(network, nil)
	if err != nil {
		return nil, fmt.Errorf("open udp socket to collectors: %w", err)
	}
	_ = conn.SetWriteBuffer(4 << 20)
	u.conn = conn
	if err := u.initBatch(!v4only); err != nil {
		conn.Close()
		return nil, fmt.Errorf("open udp socket to collectors: %w", err)
	}
	f := r.Factory("export")
	f.CounterFunc("datagrams_sent_total", "IPFIX datagrams sent (one per message and collector).", func() float64 { return float64(u.Stats().Sent) })
	f.CounterFunc("datagram_errors_total", "IPFIX datagrams the kernel refused to send.", func() float64 { return float64(u.Stats().Errors) })
	return u, nil
}

// Send writes msg to every collector. A send the kernel refuses is counted
// and logged, not fatal. Nothing tells of a datagram lost on the way or
// at a collector with nothing listening: the socket is not connected, so
// the kernel does not report ICMP port unreachable (a connected one would
// report it on a later send, blaming another message).
func (u *UDP) Send(msg []byte) error { return u.send(msg, nil, 0) }

// send writes msg to every collector (narrowed, when not nil, to those
// that asked for tcpControlBits in 1 octet).
func (u *UDP) send(msg, narrowed []byte, records uint64) error {
	var n [][]byte
	if narrowed != nil {
		n = [][]byte{narrowed}
	}
	_, err := u.sendBatch([][]byte{msg}, n, []uint64{records})
	return err
}

// sendBatch writes plain, in order, to every collector (on Linux, with one
// sendmmsg per collector for as many as the kernel takes at once); records
// are the flow records of each message. The collectors that asked for
// tcpControlBits in 1 octet get narrowed instead (the same messages
// rewritten, see narrower) when it is not nil. It returns how many
// messages failed to reach at least one collector, and the first error.
func (u *UDP) sendBatch(plain, narrowed [][]byte, records []uint64) (failed int, first error) {
	var sent, errs uint64
	var lost []bool // per message, made at the first failure
	defer func() {
		u.mu.Lock()
		u.stats.Sent += sent
		u.stats.Errors += errs
		u.mu.Unlock()
	}()
	for i := range u.dests {
		msgs := plain
		if u.narrow[i] && narrowed != nil {
			msgs = narrowed
		}
		var ok, bad, okRecords, badRecords uint64
		for j, try := 0, 0; j < len(msgs); {
			n, err := u.write(i, msgs[j:])
			for _, r := range records[j : j+n] {
				ok++
				okRecords += r
			}
			if n > 0 {
				j, try = j+n, 0
			}
			if err == nil {
				continue
			}
			if (errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.EAGAIN)) && try < 1000 {
				// The kernel's buffers are full: wait for room rather than drop.
				time.Sleep(100 * time.Microsecond)
				try++
				continue
			}
			// msgs[j] failed: count it and go on with the next.
			if lost == nil {
				lost = make([]bool, len(msgs))
			}
			if !lost[j] {
				lost[j] = true
				failed++
			}
			bad++
			badRecords += records[j]
			u.log.Warn("send:"+u.names[i], "cannot send IPFIX to collector", "collector", u.names[i], "err", err)
			if first == nil {
				first = fmt.Errorf("send to collector %s: %w", u.names[i], err)
			}
			j, try = j+1, 0
		}
		sent += ok
		errs += bad
		u.mu.Lock()
		u.per[i].Sent += ok
		u.per[i].Records += okRecords
		u.per[i].Errors += bad
		u.per[i].DroppedRecords += badRecords
		u.mu.Unlock()
	}
	return failed, first
}

// Stats returns the counters.
func (u *UDP) Stats() Stats {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.stats
}

// Close closes the socket.
func (u *UDP) Close() error { return u.conn.Close() }
