package listen

import (
	"fmt"
	"net"
	"runtime"
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
	// MaxTCPConnections bounds concurrent IPFIX/TCP connections.
	MaxTCPConnections int
}

// DefaultConfiguration listens on the standard ports.
func DefaultConfiguration() Configuration {
	return Configuration{
		UDP:               []string{":2055", ":4739", ":6343"},
		TCP:               []string{":4739"},
		Sockets:           runtime.NumCPU(),
		ReceiveBuffer:     8 << 20,
		MaxTCPConnections: 256,
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
	for _, a := range append(append([]string{}, c.UDP...), c.TCP...) {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("listen address %q: %w", a, err)
		}
	}
	return nil
}
