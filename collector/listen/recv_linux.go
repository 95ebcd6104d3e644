package listen

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/spanflow/spanflow/decoders"
)

// recvBatch is how many datagrams one recvmmsg call may return. Each has a
// buffer of the largest UDP payload, so that none is cut; only the pages a
// datagram fills become resident.
const recvBatch = 32

// mmsghdr is struct mmsghdr of recvmmsg(2) (Go pads it to the alignment of
// Msghdr as C does: 64 bytes on 64-bit systems, 32 on 32-bit ones).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// batchReader reads up to recvBatch datagrams per system call with
// recvmmsg, through the runtime's poller: it waits only when nothing is
// queued, and takes what is there without waiting for a full batch.
type batchReader struct {
	rc    syscall.RawConn
	hdrs  [recvBatch]mmsghdr
	iovs  [recvBatch]unix.Iovec
	names [recvBatch]unix.RawSockaddrInet6
	bufs  [][]byte
	dgs   []decoders.Datagram
	n     int
	errno syscall.Errno
}

func newBatchReader(conn *net.UDPConn) (*batchReader, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	b := &batchReader{rc: rc, bufs: make([][]byte, recvBatch), dgs: make([]decoders.Datagram, 0, recvBatch)}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, 65536)
	}
	return b, nil
}

// read returns the next datagrams, valid until the next call.
func (b *batchReader) read() ([]decoders.Datagram, error) {
	for i := range b.hdrs {
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(len(b.bufs[i]))
		h := &b.hdrs[i].hdr
		*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&b.names[i])), Namelen: uint32(unsafe.Sizeof(b.names[i])), Iov: &b.iovs[i]}
		h.SetIovlen(1)
	}
	err := b.rc.Read(b.recv)
	if err != nil {
		return nil, err
	}
	if b.errno != 0 {
		return nil, b.errno
	}
	now := time.Now()
	b.dgs = b.dgs[:0]
	for i := range b.n {
		b.dgs = append(b.dgs, decoders.Datagram{Source: sockaddr(&b.names[i]), Payload: b.bufs[i][:b.hdrs[i].n], Received: now})
	}
	return b.dgs, nil
}

func (b *batchReader) recv(fd uintptr) bool {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), recvBatch, unix.MSG_DONTWAIT, 0, 0)
	for errno == unix.EINTR {
		n, _, errno = unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), recvBatch, unix.MSG_DONTWAIT, 0, 0)
	}
	if errno == unix.EAGAIN || errno == unix.EWOULDBLOCK {
		return false // wait for the poller
	}
	b.n, b.errno = int(n), errno
	return true
}

// sockaddr is the source address recvmmsg wrote, as ReadFromUDPAddrPort
// gives it (an IPv6 socket's IPv4 sources stay v4-mapped).
func sockaddr(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), ntohs(sa4.Port))
	case unix.AF_INET6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			if ifi, err := net.InterfaceByIndex(int(sa.Scope_id)); err == nil {
				a = a.WithZone(ifi.Name)
			}
		}
		return netip.AddrPortFrom(a, ntohs(sa.Port))
	}
	return netip.AddrPort{}
}

func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// readUDPBatches hands the datagrams of conn to h in batches when h takes
// them, else one by one.
func (l *Listener) readUDPBatches(conn *net.UDPConn, h BatchHandler) error {
	b, err := newBatchReader(conn)
	if err != nil {
		return err
	}
	for {
		dgs, err := b.read()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			l.log.Warn("read udp", "read udp", "addr", conn.LocalAddr(), "err", err)
			continue
		}
		h.HandleBatch(dgs)
	}
}
