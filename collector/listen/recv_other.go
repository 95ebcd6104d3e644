//go:build !linux

package listen

import (
	"context"
	"io"
	"net"
)

// startUDP reads conn one datagram per system call where recvmmsg is
// missing; it returns what Stop closes.
func (l *Listener) startUDP(conn *net.UDPConn, h Handler) (io.Closer, error) {
	l.tracker.Go(func(ctx context.Context) error { return l.readUDP(conn, h) })
	return conn, nil
}
