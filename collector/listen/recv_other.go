//go:build !linux

package listen

import "net"

// readUDPBatches reads one datagram per system call where recvmmsg is
// missing.
func (l *Listener) readUDPBatches(conn *net.UDPConn, h BatchHandler) error {
	return l.readUDP(conn, h)
}
