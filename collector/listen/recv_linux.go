package listen

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/spanflow/spanflow/internal/batchio"

	"github.com/spanflow/spanflow/decoders"
)

// recvBatch is how many messages one recvmmsg call may return. Each has a
// buffer of the largest UDP payload, so that none is cut; only the pages a
// datagram fills become resident. A message may hold several datagrams
// that the kernel coalesced (UDP GRO); the handler gets them at most
// recvBatch at a time.
const recvBatch = 32

// cmsgSpace is room for one control message of an int: the UDP_GRO
// segment size (a cmsghdr of 16 bytes and the int, aligned).
const cmsgSpace = 32

type mmsghdr = batchio.Mmsghdr

// batchReader reads up to recvBatch messages per system call with
// recvmmsg from a blocking socket of its own, outside the runtime's poller:
// it waits in the kernel only when nothing is queued, and takes what is
// there without waiting for a full batch (MSG_WAITFORONE). A socket in the
// poller's epoll set wakes whichever thread waits in it on every datagram
// that arrives, read or not, and that was most of a small-datagram
// stream's cost (a context switch per datagram); out of it, a reader that
// pauses between short batches (ReceiveWait) wakes once per pause.
//
// The socket asks the kernel for UDP GRO: datagrams of one exporter (same
// addresses and ports) and the same length that arrive in one receive
// poll of the interface come up as one message, with the length of each in
// a control message, and the reader cuts them apart again. One pass
// through the kernel's socket queue and one copy then carry up to 64 of
// them: most of a small-datagram stream's receive cost was per datagram.
type batchReader struct {
	fd       int
	stopping atomic.Bool
	hdrs     [recvBatch]mmsghdr
	iovs     [recvBatch]unix.Iovec
	names    [recvBatch]unix.RawSockaddrInet6
	ctrls    [recvBatch][cmsgSpace]byte
	bufs     [][]byte
	dgs      []decoders.Datagram
	drained  int // batches read since stopping

	// Of the last read: messages the kernel returned, datagrams that came
	// coalesced with others, and messages cut at the end of their buffer
	// (their last, partial datagram is dropped and not in dgs).
	msgs, coalesced, truncated int
}

// detach takes conn's socket out of the runtime's poller: its descriptor
// is duplicated, made blocking and conn closed (which removes it from the
// poller's epoll set; the socket lives on in the duplicate). The reader
// owns the duplicate and closes it when it ends.
func detach(conn *net.UDPConn) (*batchReader, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("duplicate the udp socket: %w", derr)
	}
	conn.Close()
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("make the udp socket blocking: %w", err)
	}
	// Without UDP GRO (a kernel before 5.0) every datagram comes alone.
	_ = unix.SetsockoptInt(fd, unix.SOL_UDP, unix.UDP_GRO, 1)
	b := &batchReader{fd: fd, bufs: make([][]byte, recvBatch), dgs: make([]decoders.Datagram, 0, recvBatch)}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, 65536)
	}
	return b, nil
}

// burstRate is the arrival rate, bytes a second, that a reader's pause must
// leave room for in the socket's buffer: 1 Gbit/s of flow export is about
// two million records a second, far beyond any one socket's exporters.
const burstRate = 125_000_000

// pauseBound is the longest pause between reads whose arrivals at
// burstRate the socket's receive buffer holds: a pause must never be what
// makes the kernel drop. The kernel reports twice the buffer asked for (it
// counts its own bookkeeping per datagram against it); half is the
// payload it holds of full-size datagrams.
func (b *batchReader) pauseBound() time.Duration {
	n, err := unix.GetsockoptInt(b.fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(int64(n/2) * int64(time.Second) / burstRate)
}

// Close ends the reader: a read under way returns (shutdown wakes it),
// what the socket holds is still read, then the reader closes the socket.
func (b *batchReader) Close() error {
	b.stopping.Store(true)
	// An unbound or unconnected UDP socket answers ENOTCONN, having
	// marked itself shut for reading and woken its readers all the same.
	if err := unix.Shutdown(b.fd, unix.SHUT_RD); err != nil && err != unix.ENOTCONN {
		return err
	}
	return nil
}

// read returns the next datagrams, valid until the next call; none (and
// no error) once the reader is stopping and the socket is empty.
func (b *batchReader) read(flags int) ([]decoders.Datagram, error) {
	for i := range b.hdrs {
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(len(b.bufs[i]))
		h := &b.hdrs[i].Hdr
		*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&b.names[i])), Namelen: uint32(unsafe.Sizeof(b.names[i])), Iov: &b.iovs[i],
			Control: &b.ctrls[i][0]}
		h.SetIovlen(1)
		h.SetControllen(cmsgSpace)
	}
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(b.fd), uintptr(unsafe.Pointer(&b.hdrs[0])), recvBatch, uintptr(flags), 0, 0)
	b.dgs = b.dgs[:0]
	b.msgs, b.coalesced, b.truncated = 0, 0, 0
	switch {
	case errno == unix.EINTR:
		return b.dgs, nil
	case errno == unix.EAGAIN:
		return b.dgs, nil // shut down and empty, or nothing queued (MSG_DONTWAIT)
	case errno != 0:
		return nil, errno
	}
	now := time.Now()
	for i := range int(n) {
		if b.hdrs[i].Hdr.Namelen == 0 {
			// Not a datagram: a socket shut for reading returns "no
			// data" (0 bytes, no source), which recvmmsg counts as one.
			break
		}
		b.msgs++
		h := &b.hdrs[i].Hdr
		src, payload := sockaddr(&b.names[i]), b.bufs[i][:b.hdrs[i].Len]
		seg := groSize(b.ctrls[i][:min(int(h.Controllen), cmsgSpace)])
		cut := h.Flags&unix.MSG_TRUNC != 0
		if cut {
			b.truncated++
		}
		if seg <= 0 || seg >= len(payload) && !cut {
			if !cut { // a datagram cut cannot happen with 64 KiB buffers; not decoded
				b.dgs = append(b.dgs, decoders.Datagram{Source: src, Payload: payload, Received: now})
			}
			continue
		}
		// Datagrams coalesced by the kernel: each seg bytes long, the
		// last one possibly shorter. A message cut at its buffer's end
		// (a coalescing limit raised past 64 KiB) ends in a partial
		// datagram, which is dropped.
		if cut {
			payload = payload[:len(payload)/seg*seg]
		}
		for len(payload) > 0 {
			d := payload[:min(seg, len(payload)):min(seg, len(payload))]
			payload = payload[len(d):]
			b.dgs = append(b.dgs, decoders.Datagram{Source: src, Payload: d, Received: now})
			b.coalesced++
		}
	}
	return b.dgs, nil
}

// groSize is the segment size of a UDP_GRO control message in ctrl, or 0.
func groSize(ctrl []byte) int {
	for len(ctrl) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(ctrl) {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && l >= unix.CmsgLen(4) {
			return int(*(*int32)(unsafe.Pointer(&ctrl[unix.CmsgLen(0)])))
		}
		ctrl = ctrl[min(len(ctrl), unix.CmsgSpace(l-unix.CmsgLen(0))):]
	}
	return 0
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
			if name := zoneName(sa.Scope_id); name != "" {
				a = a.WithZone(name)
			}
		}
		return netip.AddrPortFrom(a, ntohs(sa.Port))
	}
	return netip.AddrPort{}
}

// zones caches the names of interface indexes for link-local sources, as
// the standard library's own zone cache does: net.InterfaceByIndex is a
// netlink dump (42 µs and 15 KB a call), which per datagram capped a
// reader of link-local exporters at about 24,000 datagrams a second. A name
// is looked up again after zoneTTL (an index can be given to another
// interface).
var zones struct {
	sync.RWMutex
	names map[uint32]zone
}

type zone struct {
	name string
	at   time.Time
}

const zoneTTL = time.Minute

func zoneName(index uint32) string {
	now := time.Now()
	zones.RLock()
	z, ok := zones.names[index]
	zones.RUnlock()
	if ok && now.Sub(z.at) < zoneTTL {
		return z.name
	}
	z = zone{at: now}
	if ifi, err := net.InterfaceByIndex(int(index)); err == nil {
		z.name = ifi.Name
	}
	zones.Lock()
	if zones.names == nil || len(zones.names) > 4096 {
		zones.names = map[uint32]zone{} // indexes come and go: start afresh
	}
	zones.names[index] = z
	zones.Unlock()
	return z.name
}

func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// stopDrainBatches bounds what a stopping reader still reads: the socket's
// queue when it stopped, not a stream that goes on.
const stopDrainBatches = 4096

// startUDP reads conn on a goroutine of the tracker, in batches when h
// takes them, else one by one; it returns what Stop closes.
func (l *Listener) startUDP(conn *net.UDPConn, h Handler) (io.Closer, error) {
	bh, ok := h.(BatchHandler)
	if !ok {
		l.tracker.Go(func(ctx context.Context) error { return l.readUDP(conn, h) })
		return conn, nil
	}
	local := conn.LocalAddr()
	b, err := detach(conn)
	if err != nil {
		return nil, err
	}
	l.tracker.Go(func(ctx context.Context) error { return l.readUDPBatches(b, local, bh) })
	return b, nil
}

// idleReads is how many reads in a row may find nothing before a pausing
// reader waits in the kernel for the next datagram instead: a silent socket
// costs no wake-ups, and a busy one never blocks (a read that waits in the
// kernel makes the runtime's monitor hand its processor to another thread,
// and keep polling every 20 µs while that goes on).
const idleReads = 8

// readUDPBatches hands the datagrams of b to h until b is closed and what
// its socket held then is read.
func (l *Listener) readUDPBatches(b *batchReader, local net.Addr, h BatchHandler) error {
	defer unix.Close(b.fd)
	wait, empty := l.cfg.ReceiveWait, 0
	if most := b.pauseBound(); wait > most {
		l.log.Warn("receive-wait", "receive wait shortened to what the socket's buffer holds of a 1 Gbit/s burst; for the whole wait raise --receive-buffer (and net.core.rmem_max when not root)",
			"addr", local, "receive_wait", wait, "shortened_to", most)
		wait = most
	}
	for {
		stopping := b.stopping.Load()
		flags := unix.MSG_DONTWAIT
		if !stopping && (wait == 0 || empty >= idleReads) {
			flags = unix.MSG_WAITFORONE
		}
		dgs, err := b.read(flags)
		if err != nil {
			if stopping {
				return nil
			}
			l.log.Warn("read udp", "read udp", "addr", local, "err", err)
			time.Sleep(10 * time.Millisecond) // not a busy loop on a lasting error
			continue
		}
		if b.coalesced > 0 {
			l.coalesced.Add(float64(b.coalesced))
		}
		if b.truncated > 0 {
			l.truncated.Add(float64(b.truncated))
			l.log.Warn("udp truncated", "a received message was longer than the read buffer; its last datagram was dropped: lower the interface's gro_ipv4_max_size / gro_max_size to 65536",
				"addr", local, "messages", b.truncated)
		}
		if len(dgs) > 0 {
			// At most a read's worth of datagrams at a time, however many
			// came coalesced: the handler's buffers are sized for that.
			for len(dgs) > recvBatch {
				h.HandleBatch(dgs[:recvBatch])
				dgs = dgs[recvBatch:]
			}
			h.HandleBatch(dgs)
			empty = 0
		} else {
			empty++
		}
		if stopping {
			// Read on what was queued when Stop came, a bounded amount.
			b.drained++
			if len(dgs) == 0 || b.drained > stopDrainBatches {
				return nil
			}
			continue
		}
		if b.msgs < recvBatch/2 && wait > 0 && empty < idleReads {
			// A short batch: the socket is nearly empty. Let datagrams
			// gather rather than wake for each one. The goroutine sleeps
			// in the runtime, which frees its processor for the others.
			// Sleeping in the kernel instead (nanosleep on the thread)
			// keeps the processor in a system call: whenever the other
			// processors are busy, the runtime's monitor takes it back
			// after 20 µs and then polls every 20 µs for a millisecond or
			// more. With two sockets busy at 200 k flows/s that was 79 %
			// of the process's context switches (17,000 against 5,000 for
			// 600,000 flows) and 21-35 % more CPU a flow (medians); with one busy
			// socket the two cost the same (docs/performance.md).
			time.Sleep(wait)
		}
	}
}
