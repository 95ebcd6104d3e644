//go:build linux

// Package batchio holds the system call the exporter's batched senders share:
// sendmmsg(2) on a socket of the net package, through the runtime's poller.
package batchio

import (
	"errors"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Sendmmsg runs sendmmsg(2) on rc's socket for the n message headers (struct
// mmsghdr, as each caller lays it out) at hdrs, waiting while the socket's
// buffer is full. It returns how many messages the kernel took, at least
// one, or why it took none: the first message's error.
func Sendmmsg(rc syscall.RawConn, hdrs unsafe.Pointer, n int) (int, error) {
	var sent int
	var errno syscall.Errno
	if err := rc.Write(func(fd uintptr) bool {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(hdrs), uintptr(n), 0, 0, 0)
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
