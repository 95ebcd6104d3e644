package listen

import "golang.org/x/sys/unix"

// setReceiveBuffer asks for n bytes of socket receive buffer:
// SO_RCVBUFFORCE passes net.core.rmem_max when root (CAP_NET_ADMIN);
// otherwise SO_RCVBUF, which the kernel caps at rmem_max.
func setReceiveBuffer(fd, n int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, n)
	}
}
