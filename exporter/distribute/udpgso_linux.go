package distribute

import (
	"errors"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/spanflow/spanflow/internal/batchio"
)

// gsoWriter sends batches on a connected UDP socket (VXLAN) with UDP
// segmentation offload: a run of consecutive datagrams of one length (the
// run's last may be shorter) goes as one message with UDP_SEGMENT, so the
// kernel builds one socket buffer and walks its UDP and IP send path once
// for the run; the device (or, on loopback, the receiving socket) splits
// it into the same datagrams, in the same order. The messages of a batch,
// runs and single datagrams, still go with one sendmmsg.
//
// When the kernel refuses a run (EIO: no checksum offload on the route;
// EINVAL: a datagram longer than the path MTU; an old kernel), its
// datagrams are sent one by one, and runs of that length or longer are not
// offered again: single datagrams longer than the MTU are fragmented by
// the kernel, as before.
type gsoWriter struct {
	rc     syscall.RawConn
	hdrs   []mmsghdr
	iovs   []unix.Iovec
	ctrl   []byte
	first  []int // each message's first packet
	count  []int // each message's packets
	maxLen int   // the longest datagram a run may have; 0: GSO off
	single mmsg
}

const (
	gsoMaxSegments = 64    // UDP_MAX_SEGMENTS of kernels before 6.9
	gsoMaxBytes    = 65000 // a run's datagrams in all: one IP packet's payload at most
)

var cmsgSpace = unix.CmsgSpace(2)

func newGSOWriter(c syscall.Conn) batchWriter {
	rc, err := c.SyscallConn()
	if err != nil {
		return func(pkts [][]byte, refused []bool) (int, error) { return refuseAll(refused), err }
	}
	w := &gsoWriter{rc: rc, maxLen: gsoMaxBytes / 2}
	return w.write
}

// build makes one message per run or single datagram.
func (w *gsoWriter) build(pkts [][]byte) {
	if cap(w.iovs) < len(pkts) {
		w.iovs = make([]unix.Iovec, 0, len(pkts))
		w.hdrs = make([]mmsghdr, 0, len(pkts))
		w.ctrl = make([]byte, len(pkts)*cmsgSpace)
		w.first = make([]int, 0, len(pkts))
		w.count = make([]int, 0, len(pkts))
	}
	w.iovs, w.hdrs, w.first, w.count = w.iovs[:0], w.hdrs[:0], w.first[:0], w.count[:0]
	for _, p := range pkts {
		iov := unix.Iovec{Base: &p[0]}
		iov.SetLen(len(p))
		w.iovs = append(w.iovs, iov)
	}
	for i := 0; i < len(pkts); {
		l, j, total := len(pkts[i]), i+1, len(pkts[i])
		if l <= w.maxLen {
			for j < len(pkts) && j-i < gsoMaxSegments && total+len(pkts[j]) <= gsoMaxBytes {
				if n := len(pkts[j]); n != l {
					if n < l && n > 0 {
						j++ // a shorter datagram ends the run
					}
					break
				}
				total += l
				j++
			}
		}
		var h mmsghdr
		h.Hdr.Iov = &w.iovs[i]
		h.Hdr.SetIovlen(j - i)
		if j-i > 1 {
			c := w.ctrl[len(w.hdrs)*cmsgSpace:][:cmsgSpace]
			clear(c)
			cm := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
			cm.Level = unix.SOL_UDP
			cm.Type = unix.UDP_SEGMENT
			cm.SetLen(unix.CmsgLen(2))
			*(*uint16)(unsafe.Pointer(&c[unix.CmsgLen(0)])) = uint16(l)
			h.Hdr.Control = &c[0]
			h.Hdr.SetControllen(cmsgSpace)
		}
		w.hdrs = append(w.hdrs, h)
		w.first = append(w.first, i)
		w.count = append(w.count, j-i)
		i = j
	}
}

func (w *gsoWriter) write(pkts [][]byte, refused []bool) (failed int, last error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	w.build(pkts)
	hdrs, first, count := w.hdrs, w.first, w.count
	for len(hdrs) > 0 {
		n, err := w.send(hdrs)
		if err == nil {
			hdrs, first, count = hdrs[n:], first[n:], count[n:]
			continue
		}
		// The first message failed.
		run := pkts[first[0] : first[0]+count[0]]
		var errno syscall.Errno
		if count[0] > 1 && errors.As(err, &errno) && gsoRefused(errno) {
			// Not this run: its datagrams one by one, and no runs this
			// long (or none at all) from now on.
			if errno == unix.EINVAL || errno == unix.EMSGSIZE {
				w.maxLen = min(w.maxLen, len(run[0])-1)
			} else {
				w.maxLen = 0
			}
			f, e := sendAll(&w.single, run, refused[first[0]:first[0]+count[0]], w.send)
			failed += f
			if e != nil {
				last = e
			}
			// The rest of the batch again, in runs the kernel may take.
			f, e = w.write(pkts[first[0]+count[0]:], refused[first[0]+count[0]:])
			failed += f
			if e != nil {
				last = e
			}
			return failed, last
		} else {
			failed += refuseAll(refused[first[0] : first[0]+count[0]])
			last = err
		}
		hdrs, first, count = hdrs[1:], first[1:], count[1:]
	}
	return failed, last
}

// gsoRefused: the kernel refuses the segmentation, not the datagrams.
func gsoRefused(e syscall.Errno) bool {
	switch e {
	case unix.EIO, unix.EINVAL, unix.EMSGSIZE, unix.ENOPROTOOPT, unix.EOPNOTSUPP:
		return true
	}
	return false
}

// send runs sendmmsg, waiting for room in the socket's buffer.
func (w *gsoWriter) send(hdrs []mmsghdr) (int, error) {
	return batchio.Sendmmsg(w.rc, hdrs)
}
