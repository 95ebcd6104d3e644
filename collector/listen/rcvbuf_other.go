//go:build !linux

package listen

import "golang.org/x/sys/unix"

// setReceiveBuffer asks for n bytes of socket receive buffer (the system
// may give less).
func setReceiveBuffer(fd, n int) {
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, n)
}
