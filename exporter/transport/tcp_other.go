//go:build !linux

package transport

import "net"

// ackedBytes cannot be known here: after a broken connection every message
// written on it is sent again (the collector may see some twice).
func ackedBytes(raw *net.TCPConn) (uint64, bool) { return 0, false }

// resetState cannot be known here.
func resetState(raw *net.TCPConn) (bool, bool) { return false, false }
