//go:build linux

package transport

import (
	"net"

	"golang.org/x/sys/unix"
)

// ackedBytes is how many bytes of the stream the peer's kernel
// acknowledged (TCP_INFO's tcpi_bytes_acked); ok is false when the kernel
// cannot say.
func ackedBytes(raw *net.TCPConn) (uint64, bool) {
	sc, err := raw.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info *unix.TCPInfo
	var gerr error
	cerr := sc.Control(func(fd uintptr) { info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
	if cerr != nil || gerr != nil || info == nil {
		return 0, false
	}
	return info.Bytes_acked, true
}

// tcpClose is TCP_CLOSE of the kernel's tcp_states.h.
const tcpClose = 7

// resetState says whether the connection is closed without our close: the
// peer reset it (a peer that closed in order leaves it in CLOSE_WAIT).
func resetState(raw *net.TCPConn) (bool, bool) {
	sc, err := raw.SyscallConn()
	if err != nil {
		return false, false
	}
	var info *unix.TCPInfo
	var gerr error
	cerr := sc.Control(func(fd uintptr) { info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
	if cerr != nil || gerr != nil || info == nil {
		return false, false
	}
	return info.State == tcpClose, true
}
