package listen

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"time"
)

// Configuration of the listeners.
type Configuration struct {
	// UDP addresses to receive flow datagrams on (NetFlow, IPFIX and sFlow
	// are told apart by content, so any port takes any of them).
	UDP []string
	// TCP addresses to receive IPFIX over TCP on (RFC 7011 §10.4).
	TCP []string
	// TLS addresses to receive IPFIX over TLS on (RFC 7011 §11), framed
	// as over TCP, with the same limits.
	TLS []string
	// TLSCertFile and TLSKeyFile are the collector's certificate (PEM,
	// with its intermediates) and key, needed when TLS is.
	TLSCertFile, TLSKeyFile string
	// TLSClientCAFile, when set, holds the CAs (PEM) that sign the
	// exporters' certificates: a client must present one (mutual TLS).
	// Without it any client may connect, as over TCP.
	TLSClientCAFile string
	// Sockets is the number of SO_REUSEPORT sockets (each with its own
	// reading and decoding goroutine) per UDP address.
	Sockets int
	// ShareWithOtherProcesses lets other processes bind the same ports
	// (SO_REUSEPORT across processes): the kernel then splits the
	// datagrams and connections between them. Off, a port another process
	// holds is refused with a PortInUseError.
	ShareWithOtherProcesses bool
	// ReusePortGroup, when not 0, is the number of processes sharing the
	// UDP ports (ShareWithOtherProcesses), each with the same Sockets: a
	// BPF program then sends every datagram of one exporter address to
	// one socket of the ReusePortGroup×Sockets of the port, whatever its
	// source port, so that its templates stay with its data (Linux).
	ReusePortGroup int
	// ReceiveBuffer is the socket receive buffer asked of the kernel, bytes
	// (as root, beyond net.core.rmem_max).
	ReceiveBuffer int
	// ReceiveWait is how long a UDP socket's reader pauses after a read
	// that found fewer datagrams than a batch, so that the next read takes
	// many at once instead of waking for each: at a steady trickle of
	// small datagrams the wake-ups, not the records, cost most. A full
	// batch is read on at once, so a busy socket is never paused. The
	// socket's buffer holds what arrives meanwhile (ReceiveBuffer): a wait
	// longer than the buffer holds of a 1 Gbit/s burst is shortened to
	// that, and said. 0 reads as soon as a datagram is queued.
	ReceiveWait time.Duration
	// Allow lists the networks TCP and TLS connections are accepted from;
	// empty accepts all. It is checked at accept, before a connection
	// takes a slot (the pipeline checks every datagram again).
	Allow []netip.Prefix
	// MaxTCPConnections bounds concurrent IPFIX/TCP and TLS connections,
	// together.
	MaxTCPConnections int
	// MaxTCPConnectionsPerSource bounds those from one address, so that one
	// host cannot take every slot.
	MaxTCPConnectionsPerSource int
	// TCPIdleTimeout closes a connection on which no whole message arrived
	// for this long, so that idle connections give their slot back.
	TCPIdleTimeout time.Duration
}

// DefaultConfiguration listens on the standard ports.
func DefaultConfiguration() Configuration {
	return Configuration{
		UDP:                        []string{":2055", ":4739", ":6343"},
		TCP:                        []string{":4739"},
		Sockets:                    runtime.NumCPU(),
		ReceiveBuffer:              8 << 20,
		ReceiveWait:                5 * time.Millisecond,
		MaxTCPConnections:          256,
		MaxTCPConnectionsPerSource: 4,
		TCPIdleTimeout:             5 * time.Minute,
	}
}

// Validate checks the configuration; with TLS addresses it reads the
// certificate, key and client CA files.
func (c Configuration) Validate() error {
	if c.Sockets < 1 {
		return fmt.Errorf("sockets per port must be at least 1, not %d", c.Sockets)
	}
	if c.ReusePortGroup < 0 {
		return fmt.Errorf("reuseport group (listen-reuseport-group) must not be negative, not %d", c.ReusePortGroup)
	}
	if c.ReusePortGroup > 0 && !c.ShareWithOtherProcesses {
		return fmt.Errorf("a reuseport group of %d processes (listen-reuseport-group) needs the ports shared with them (listen-reuseport)", c.ReusePortGroup)
	}
	if c.ReusePortGroup > 0 && runtime.GOOS != "linux" {
		return fmt.Errorf("a reuseport group hashed on the exporter's address (listen-reuseport-group) needs Linux")
	}
	if c.ReceiveBuffer < 0 {
		return fmt.Errorf("receive buffer must not be negative")
	}
	if c.ReceiveWait < 0 || c.ReceiveWait > time.Second {
		return fmt.Errorf("receive wait must be between 0 and 1s, not %s", c.ReceiveWait)
	}
	if c.MaxTCPConnections < 1 {
		return fmt.Errorf("tcp connections must be at least 1, not %d", c.MaxTCPConnections)
	}
	if c.MaxTCPConnectionsPerSource < 1 {
		return fmt.Errorf("tcp connections per source must be at least 1, not %d", c.MaxTCPConnectionsPerSource)
	}
	if c.TCPIdleTimeout <= 0 {
		return fmt.Errorf("tcp idle timeout must be positive, not %s", c.TCPIdleTimeout)
	}
	for _, p := range c.Allow {
		if !p.IsValid() {
			return fmt.Errorf("invalid allowed network %v", p)
		}
	}
	for _, a := range append(append(append([]string{}, c.UDP...), c.TCP...), c.TLS...) {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("listen address %q: %w", a, err)
		}
	}
	if a, b, ok := SharedPort(c.TCP, c.TLS); ok {
		return fmt.Errorf("tcp address %q and tls address %q share a port", a, b)
	}
	if len(c.TLS) > 0 {
		if _, err := c.ServerTLS(); err != nil {
			return err
		}
	}
	return nil
}

// SharedPort finds an address of tcp and one of tls that would take the same
// port: the second would fail to bind (or, when sharing with other
// processes, bind, and the kernel would hand connections to either at
// random), so it is refused with a clearer word first.
func SharedPort(tcp, tls []string) (string, string, bool) {
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	for _, a := range tcp {
		ah, ap, _ := net.SplitHostPort(a)
		for _, b := range tls {
			bh, bp, _ := net.SplitHostPort(b)
			if ap == bp && ap != "0" && (ah == bh || wildcard(ah) || wildcard(bh)) {
				return a, b, true
			}
		}
	}
	return "", "", false
}

// TLSFileError is a TLS file of the configuration that cannot be used;
// Field names it (TLSCertFile, TLSKeyFile or TLSClientCAFile), so that
// the collector can point at its setting.
type TLSFileError struct {
	Field string
	Err   error
}

func (e *TLSFileError) Error() string { return e.Err.Error() }
func (e *TLSFileError) Unwrap() error { return e.Err }

// ServerTLS reads the certificate, key and client CA files into the TLS
// configuration of the IPFIX/TLS listeners.
func (c Configuration) ServerTLS() (*tls.Config, error) {
	read := func(field, what, path string) ([]byte, error) {
		if path == "" {
			return nil, &TLSFileError{field, fmt.Errorf("ipfix over tls needs a %s file", what)}
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, &TLSFileError{field, fmt.Errorf("read %s file: %w", what, err)}
		}
		return data, nil
	}
	certPEM, certErr := read("TLSCertFile", "certificate", c.TLSCertFile)
	keyPEM, keyErr := read("TLSKeyFile", "key", c.TLSKeyFile)
	if err := errors.Join(certErr, keyErr); err != nil {
		return nil, err
	}
	if b, _ := pem.Decode(certPEM); b == nil || b.Type != "CERTIFICATE" {
		return nil, &TLSFileError{"TLSCertFile", fmt.Errorf("certificate file %s holds no PEM certificate first", c.TLSCertFile)}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, &TLSFileError{"TLSKeyFile", fmt.Errorf("key file %s with certificate file %s: %w", c.TLSKeyFile, c.TLSCertFile, err)}
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.TLSClientCAFile != "" {
		caPEM, err := read("TLSClientCAFile", "client CA", c.TLSClientCAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, &TLSFileError{"TLSClientCAFile", fmt.Errorf("client CA file %s holds no PEM certificate", c.TLSClientCAFile)}
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
