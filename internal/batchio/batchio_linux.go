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

// Runs sends messages with sendmmsg, a run of consecutive messages of one
// length (the run's last may be shorter) as one message with UDP_SEGMENT
// (UDP GSO): the kernel builds one socket buffer and walks its UDP and IP
// send path once for the run, and the device (or, on one host, the
// receiving socket) cuts it into the same datagrams, in the same order.
// When the kernel refuses a run (EIO: no checksum offload on the route;
// EINVAL: a message longer than the path MTU; an old kernel), its messages
// go one by one, and runs of that length or longer are not offered again.
// A Runs serves one destination, one call at a time.
type Runs struct {
	maxLen int // the longest message a run may have; 0: no runs
	hdrs   []Mmsghdr
	iovs   []unix.Iovec
	ctrl   []byte
	count  []int // each header's messages
}

const (
	gsoMaxSegments = 64    // UDP_MAX_SEGMENTS of kernels before 6.9
	gsoMaxBytes    = 65000 // a run's messages in all: one IP packet's payload at most
)

var gsoCmsgSpace = unix.CmsgSpace(2)

// NewRuns returns a Runs that offers runs of messages up to 32,500 bytes.
func NewRuns() *Runs { return &Runs{maxLen: gsoMaxBytes / 2} }

// MaxLen is the longest message a run may still have (0: runs are off).
func (r *Runs) MaxLen() int { return r.maxLen }

// Send sends msgs on rc's socket, to name (nameLen bytes; nil on a
// connected socket), waiting while the socket's buffer is full. It returns
// how many messages the kernel took, and the error of the first it did not
// take (when it took none).
func (r *Runs) Send(rc syscall.RawConn, name unsafe.Pointer, nameLen uint32, msgs [][]byte) (int, error) {
	for {
		r.build(name, nameLen, msgs)
		n, err := Sendmmsg(rc, r.hdrs)
		if err == nil {
			taken := 0
			for _, c := range r.count[:n] {
				taken += c
			}
			return taken, nil
		}
		var errno syscall.Errno
		if r.count[0] > 1 && errors.As(err, &errno) && gsoRefused(errno) {
			// The run, not its messages: no runs this long (or none at
			// all) from now on, and again.
			if errno == unix.EINVAL || errno == unix.EMSGSIZE {
				r.maxLen = min(r.maxLen, len(msgs[0])-1)
			} else {
				r.maxLen = 0
			}
			continue
		}
		return 0, err
	}
}

// SendAll sends every message of msgs as Send does, skipping each one the
// kernel refuses: refused is called with its index and the error. It
// returns how many were sent.
func (r *Runs) SendAll(rc syscall.RawConn, name unsafe.Pointer, nameLen uint32, msgs [][]byte, refused func(i int, err error)) (sent int) {
	for j := 0; j < len(msgs); {
		n, err := r.Send(rc, name, nameLen, msgs[j:])
		sent, j = sent+n, j+n
		if err != nil {
			refused(j, err)
			j++
		}
	}
	return sent
}

// build makes sendmmsg's headers for msgs: one per run of equal lengths
// or single message.
func (r *Runs) build(name unsafe.Pointer, nameLen uint32, msgs [][]byte) {
	r.hdrs, r.iovs, r.count = r.hdrs[:0], r.iovs[:0], r.count[:0]
	if need := len(msgs) * gsoCmsgSpace; len(r.ctrl) < need {
		r.ctrl = make([]byte, need)
	}
	for _, m := range msgs {
		var v unix.Iovec
		if len(m) > 0 {
			v.Base = &m[0]
		}
		v.SetLen(len(m))
		r.iovs = append(r.iovs, v)
	}
	for j := 0; j < len(msgs); {
		l, k, total := len(msgs[j]), j+1, len(msgs[j])
		if l > 0 && l <= r.maxLen {
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
		var h Mmsghdr
		h.Hdr.Name = (*byte)(name)
		h.Hdr.Namelen = nameLen
		h.Hdr.Iov = &r.iovs[j]
		h.Hdr.SetIovlen(k - j)
		if k-j > 1 {
			c := r.ctrl[len(r.hdrs)*gsoCmsgSpace:][:gsoCmsgSpace]
			clear(c)
			cm := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
			cm.Level = unix.SOL_UDP
			cm.Type = unix.UDP_SEGMENT
			cm.SetLen(unix.CmsgLen(2))
			*(*uint16)(unsafe.Pointer(&c[unix.CmsgLen(0)])) = uint16(l)
			h.Hdr.Control = &c[0]
			h.Hdr.SetControllen(gsoCmsgSpace)
		}
		r.hdrs = append(r.hdrs, h)
		r.count = append(r.count, k-j)
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
