package distribute

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/spanflow/spanflow/internal/batchio"
)

type mmsghdr = batchio.Mmsghdr

// mmsg builds sendmmsg's arguments for a batch; one per sender goroutine.
type mmsg struct {
	hdrs []mmsghdr
	iovs []unix.Iovec
}

func (m *mmsg) set(pkts [][]byte) {
	m.hdrs, m.iovs = m.hdrs[:0], m.iovs[:0]
	for _, p := range pkts {
		m.iovs = append(m.iovs, unix.Iovec{Base: &p[0]})
		m.iovs[len(m.iovs)-1].SetLen(len(p))
	}
	for i := range pkts {
		var h mmsghdr
		h.Hdr.Iov = &m.iovs[i]
		h.Hdr.SetIovlen(1)
		m.hdrs = append(m.hdrs, h)
	}
}

// sendAll sends the batch with sendmmsg through call (which runs the system
// call on the socket); a packet the kernel refuses is skipped and counted.
func sendAll(m *mmsg, pkts [][]byte, refused []bool, call func(hdrs []mmsghdr) (int, error)) (failed int, last error) {
	m.set(pkts)
	hdrs := m.hdrs
	for len(hdrs) > 0 {
		n, err := call(hdrs)
		if err != nil {
			refused[len(pkts)-len(hdrs)] = true
			failed++
			last = err
			hdrs = hdrs[1:]
			continue
		}
		hdrs = hdrs[n:]
	}
	return failed, last
}

func sendmmsg(fd uintptr, hdrs []mmsghdr) (int, syscall.Errno) {
	r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), 0, 0, 0)
	return int(r), e
}

// connWriter sends batches on a connected socket of the net package,
// waiting for it to be writable when the kernel's buffer is full.
func connWriter(c syscall.Conn) batchWriter {
	rc, err := c.SyscallConn()
	if err != nil {
		return func(pkts [][]byte, refused []bool) (int, error) { return refuseAll(refused), err }
	}
	var m mmsg
	return func(pkts [][]byte, refused []bool) (int, error) {
		return sendAll(&m, pkts, refused, func(hdrs []mmsghdr) (int, error) {
			return batchio.Sendmmsg(rc, hdrs)
		})
	}
}

// udpWriter sends runs of equal datagrams with UDP GSO (gsoWriter).
func udpWriter(c *net.UDPConn) batchWriter { return newGSOWriter(c) }

// openInterface opens an AF_PACKET socket that writes frames as they are
// on a local interface (a veth to a tool's VM or container, a NIC to a
// packet tool).
func openInterface(name string) (batchWriter, func() error, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, nil, fmt.Errorf("open interface %s: %w", name, err)
	}
	if useTXRing {
		if r, err := openTXRing(ifi); err == nil {
			return r.write, r.close, nil
		}
		// No ring (an old kernel, not Ethernet, no memory): sendmmsg.
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0) // protocol 0: send only
	if err != nil {
		return nil, nil, fmt.Errorf("open interface %s (AF_PACKET: needs CAP_NET_RAW): %w", name, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("bind to interface %s: %w", name, err)
	}
	var m mmsg
	w := func(pkts [][]byte, refused []bool) (int, error) {
		return sendAll(&m, pkts, refused, func(hdrs []mmsghdr) (int, error) {
			n, errno := sendmmsg(uintptr(fd), hdrs)
			if errno != 0 {
				return 0, errno
			}
			if n <= 0 {
				return 0, errors.New("sendmmsg sent nothing")
			}
			return n, nil
		})
	}
	return w, func() error { return unix.Close(fd) }, nil
}
