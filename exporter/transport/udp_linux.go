package transport

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/spanflow/spanflow/internal/batchio"
)

type mmsghdr = batchio.Mmsghdr

// udpBatch holds sendmmsg's arguments (one batch at a time: pipelines that
// share a transport send from several goroutines).
//
// A run of consecutive messages of one length (the run's last may be
// shorter) goes to a collector as one message with UDP_SEGMENT (UDP GSO):
// the kernel builds one socket buffer and walks its UDP and IP send path
// once for the run, and the device (or, on one host, the receiving socket)
// cuts it into the same datagrams, in the same order. A full IPFIX message
// of one template has the length of the next, so most of a busy
// exporter's messages go in runs. When the kernel refuses a run (EIO: no
// checksum offload on the route; EINVAL: a message longer than the path
// MTU; an old kernel), its messages go one by one, and runs of that length
// or longer are not offered to that collector again.
type udpBatch struct {
	mu     sync.Mutex // held while the arguments are built and sent
	rc     syscall.RawConn
	names  []unix.RawSockaddrInet6 // each collector's address, as the socket's family takes it
	maxLen []int                   // per collector, the longest message a run may have; 0: no runs
	v6     bool
	hdrs   []mmsghdr
	iovs   []unix.Iovec
	ctrl   []byte
	count  []int // each header's messages
}

const (
	gsoMaxSegments = 64    // UDP_MAX_SEGMENTS of kernels before 6.9
	gsoMaxBytes    = 65000 // a run's messages in all: one IP packet's payload at most
)

var gsoCmsgSpace = unix.CmsgSpace(2)

// initBatch prepares sendmmsg: the socket is AF_INET6 when v6 (IPv4
// collectors then as IPv4-mapped addresses), AF_INET otherwise.
func (u *UDP) initBatch(v6 bool) error {
	rc, err := u.conn.SyscallConn()
	if err != nil {
		return err
	}
	u.batch = udpBatch{rc: rc, v6: v6}
	for _, d := range u.dests {
		a := d.AddrPort()
		var n unix.RawSockaddrInet6
		if v6 {
			n.Family = unix.AF_INET6
			n.Addr = netip.AddrFrom16(a.Addr().As16()).As16()
			if z := d.Zone; z != "" {
				if ifi, err := net.InterfaceByName(z); err == nil {
					n.Scope_id = uint32(ifi.Index)
				} else if k, err := strconv.Atoi(z); err == nil {
					n.Scope_id = uint32(k)
				}
			}
		} else {
			s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&n))
			s4.Family = unix.AF_INET
			s4.Addr = a.Addr().Unmap().As4()
		}
		// The port, in network byte order in both families.
		p := (*[2]byte)(unsafe.Pointer(&n.Port))
		p[0], p[1] = byte(a.Port()>>8), byte(a.Port())
		u.batch.names = append(u.batch.names, n)
		u.batch.maxLen = append(u.batch.maxLen, gsoMaxBytes/2)
	}
	return nil
}

// write sends msgs to collector i with one sendmmsg, runs of equal
// lengths as one message each: it returns how many messages the kernel
// took, and the error of the first it did not take (when it took none).
func (u *UDP) write(i int, msgs [][]byte) (int, error) {
	b := &u.batch
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		b.build(i, msgs)
		n, err := batchio.Sendmmsg(b.rc, b.hdrs)
		if err == nil {
			taken := 0
			for _, c := range b.count[:n] {
				taken += c
			}
			return taken, nil
		}
		var errno syscall.Errno
		if b.count[0] > 1 && errors.As(err, &errno) && gsoRefused(errno) {
			// The run, not its messages: no runs this long (or none at
			// all) to this collector from now on, and again.
			if errno == unix.EINVAL || errno == unix.EMSGSIZE {
				b.maxLen[i] = min(b.maxLen[i], len(msgs[0])-1)
			} else {
				b.maxLen[i] = 0
			}
			continue
		}
		return 0, err
	}
}

// build makes sendmmsg's headers for msgs to collector i: one per run of
// equal lengths or single message.
func (b *udpBatch) build(i int, msgs [][]byte) {
	nameLen := uint32(unix.SizeofSockaddrInet4)
	if b.v6 {
		nameLen = unix.SizeofSockaddrInet6
	}
	b.hdrs, b.iovs, b.count = b.hdrs[:0], b.iovs[:0], b.count[:0]
	if need := len(msgs) * gsoCmsgSpace; len(b.ctrl) < need {
		b.ctrl = make([]byte, need)
	}
	for _, m := range msgs {
		var v unix.Iovec
		if len(m) > 0 {
			v.Base = &m[0]
		}
		v.SetLen(len(m))
		b.iovs = append(b.iovs, v)
	}
	for j := 0; j < len(msgs); {
		l, k, total := len(msgs[j]), j+1, len(msgs[j])
		if l > 0 && l <= b.maxLen[i] {
			for k < len(msgs) && k-j < gsoMaxSegments && total+len(msgs[k]) <= gsoMaxBytes {
				if n := len(msgs[k]); n != l {
					if n < l && n > 0 {
						k++ // a shorter message ends the run
					}
					break
				}
				total += l
				k++
			}
		}
		var h mmsghdr
		h.Hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Hdr.Namelen = nameLen
		h.Hdr.Iov = &b.iovs[j]
		h.Hdr.SetIovlen(k - j)
		if k-j > 1 {
			c := b.ctrl[len(b.hdrs)*gsoCmsgSpace:][:gsoCmsgSpace]
			clear(c)
			cm := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
			cm.Level = unix.SOL_UDP
			cm.Type = unix.UDP_SEGMENT
			cm.SetLen(unix.CmsgLen(2))
			*(*uint16)(unsafe.Pointer(&c[unix.CmsgLen(0)])) = uint16(l)
			h.Hdr.Control = &c[0]
			h.Hdr.SetControllen(gsoCmsgSpace)
		}
		b.hdrs = append(b.hdrs, h)
		b.count = append(b.count, k-j)
		j = k
	}
}

// gsoRefused: the kernel refuses the segmentation, not the messages.
func gsoRefused(e syscall.Errno) bool {
	switch e {
	case unix.EIO, unix.EINVAL, unix.EMSGSIZE, unix.ENOPROTOOPT, unix.EOPNOTSUPP:
		return true
	}
	return false
}
