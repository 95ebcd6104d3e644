//go:build linux

// Package batchio holds what the collector's and the exporter's batched
// socket calls share: the message header of sendmmsg(2) and recvmmsg(2),
// and sendmmsg on a socket of the net package, through the runtime's
// poller.
package batchio

import (
	"errors"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Mmsghdr is struct mmsghdr of sendmmsg(2) and recvmmsg(2): a message and
// the bytes the kernel sent or received of it. Go pads it to the alignment
// of Msghdr as C does (64 bytes on 64-bit systems, 32 on 32-bit ones).
type Mmsghdr struct {
	Hdr unix.Msghdr
	Len uint32
}

// Sendmmsg runs sendmmsg(2) on rc's socket for hdrs (at least one),
// waiting while the socket's buffer is full. It returns how many messages
// the kernel took, at least one, or why it took none: the first message's
// error.
func Sendmmsg(rc syscall.RawConn, hdrs []Mmsghdr) (int, error) {
	var sent int
	var errno syscall.Errno
	if err := rc.Write(func(fd uintptr) bool {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), 0, 0, 0)
		sent, errno = int(r), e
		return errno != unix.EAGAIN
	}); err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	if sent <= 0 {
		return 0, errors.New("sendmmsg sent nothing")
	}
	return sent, nil
}
