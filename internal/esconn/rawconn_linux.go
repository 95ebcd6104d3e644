package esconn

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawConn is a TCP connection to the cluster whose reads and writes are
// system calls the runtime is not told about (RawSyscall): the socket is
// non-blocking, so they never wait in the kernel, and a call that would
// wait returns EAGAIN and the connection waits in the runtime's poller as
// any net.Conn does (deadlines included).
//
// A system call the runtime is told about wakes its monitor (sysmon) when
// every processor was idle, and the monitor then polls every 20 µs for a
// millisecond or more before it sleeps again. A collector that waits for
// each bulk answer went idle before nearly every one: reading the answer
// woke the monitor about once per request, some 50 wake-ups each, and on
// a VM, where a timer sleep costs about 12 µs, that was a seventh of the
// collector's CPU (docs/performance.md).
//
// A body made of slices (Slices, the output's bulk requests) is written
// with writev, as many slices per call as the kernel takes, instead of
// being copied 32 KiB at a time through a buffer.
type rawConn struct {
	net.Conn // the *net.TCPConn; only net.Conn's methods are promoted
	rc       syscall.RawConn
	iovs     []unix.Iovec // writev's, used under the descriptor's write lock (in rc.Write's function)
}

// wrapRaw returns c as a rawConn, or c when it is not a TCP connection.
func wrapRaw(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &rawConn{Conn: tc, rc: rc}
}

func (c *rawConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // wait in the poller
			}
			n, errno = int(r), e
			return true
		}
	})
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *rawConn) Write(p []byte) (int, error) {
	n, err := c.writev([][]byte{p})
	return int(n), err
}

// ReadFrom writes what r holds: a body of slices with writev, anything
// else copied through a buffer (io.Copy, with Write).
func (c *rawConn) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok {
		if s, ok := lr.R.(Slices); ok && s.Len() <= lr.N {
			n, err := c.writev(s.Take())
			lr.N -= n
			return n, err
		}
	}
	return io.Copy(struct{ io.Writer }{c}, r)
}

// maxIovecs bounds the slices of one writev (the kernel's IOV_MAX is 1024).
const maxIovecs = 512

// writev writes every byte of bufs, waiting in the poller while the
// socket's buffer is full.
func (c *rawConn) writev(bufs [][]byte) (int64, error) {
	var total int64
	var errno syscall.Errno
	err := c.rc.Write(func(fd uintptr) bool {
		if c.iovs == nil {
			c.iovs = make([]unix.Iovec, maxIovecs) // once per connection, not per call
		}
		iovs, used := c.iovs, 0
		defer func() { clear(iovs[:used]) }() // keep no buffer alive after the call
		for {
			n := 0
			for _, b := range bufs {
				if n == len(iovs) {
					break
				}
				if len(b) > 0 {
					iovs[n] = unix.Iovec{Base: &b[0]}
					iovs[n].SetLen(len(b))
					n++
				}
			}
			used = max(used, n)
			if n == 0 {
				return true
			}
			r, _, e := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iovs[0])), uintptr(n))
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // wait in the poller until the socket takes more
			case 0:
			default:
				errno = e
				return true
			}
			total += int64(r)
			bufs = consume(bufs, int(r))
		}
	})
	switch {
	case err != nil:
		return total, c.opError("write", err)
	case errno != 0:
		return total, c.opError("write", errno)
	}
	return total, nil
}

// consume drops the first n bytes of bufs.
func consume(bufs [][]byte, n int) [][]byte {
	for n > 0 && len(bufs) > 0 {
		if len(bufs[0]) > n {
			bufs[0] = bufs[0][n:]
			return bufs
		}
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	for len(bufs) > 0 && len(bufs[0]) == 0 {
		bufs = bufs[1:]
	}
	return bufs
}

// opError wraps err as net's connections do (a deadline's error stays a
// net.Error whose Timeout is true, a closed connection's net.ErrClosed).
func (c *rawConn) opError(op string, err error) error {
	if errno, ok := err.(syscall.Errno); ok {
		err = os.NewSyscallError(op, errno)
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
