package listen

import (
	"fmt"
	"net"
	"net/netip"
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
	// Sockets is the number of SO_REUSEPORT sockets (each with its own
	// reading and decoding goroutine) per UDP address.
	Sockets int
	// ReceiveBuffer is the socket receive buffer asked of the kernel, bytes
	// (as root, beyond net.core.rmem_max).
	ReceiveBuffer int
	// Allow lists the networks TCP connections are accepted from;
	// empty accepts all. It is checked at accept, before a connection
	// takes a slot (the pipeline checks every datagram again).
	Allow []netip.Prefix
	// MaxTCPConnections bounds concurrent IPFIX/TCP connections.
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
		MaxTCPConnections:          256,
		MaxTCPConnectionsPerSource: 4,
		TCPIdleTimeout:             5 * time.Minute,
	}
}

// Validate checks the configuration.
func (c Configuration) Validate() error {
	if c.Sockets < 1 {
		return fmt.Errorf("sockets per port must be at least 1, not %d", c.Sockets)
	}
	if c.ReceiveBuffer < 0 {
		return fmt.Errorf("receive buffer must not be negative")
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
	for _, a := range append(append([]string{}, c.UDP...), c.TCP...) {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("listen address %q: %w", a, err)
		}
	}
	return nil
}
