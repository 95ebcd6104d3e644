//go:build linux

package capture

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// ring is an AF_PACKET socket with a TPACKET_V3 receive ring, read in
// place. The kernel fills fixed-size blocks with frames and hands a block
// over (block_status TP_STATUS_USER) when it is full or its timeout passed;
// the reader walks the block's frames and gives it back.
//
// spanflow reads the ring itself rather than through gopacket's afpacket,
// whose ZeroCopyReadPacketData takes a mutex, adds to an atomic counter,
// calls seven methods through an interface and, for every frame with a VLAN
// tag, allocates (see docs/exporter.md#dependencies for the measurement).
// Here a frame costs a few loads from its header.
type ring struct {
	fd      int
	mem     []byte
	block   int    // block size
	nblocks int    // blocks in the ring
	cur     int    // block being read
	held    bool   // the current block is ours until released
	left    uint32 // frames of the current block not read yet
	off     uintptr
	poll    time.Duration
	ifindex int
	kernel  LiveStats // cumulative: the kernel's counters reset on every read
	downs   atomic.Uint64
}

// Offsets in struct tpacket_block_desc (linux/if_packet.h).
const (
	blockStatusOff = 8  // hdr.bh1.block_status
	blockNumOff    = 12 // hdr.bh1.num_pkts
	blockFirstOff  = 16 // hdr.bh1.offset_to_first_pkt
)

// tpacket3Hdr is struct tpacket3_hdr.
type tpacket3Hdr struct {
	next     uint32
	sec      uint32
	nsec     uint32
	snaplen  uint32
	len      uint32
	status   uint32
	mac      uint16
	net      uint16
	rxhash   uint32
	vlanTCI  uint32
	vlanTPID uint16
	_        uint16
	_        [8]uint8
}

const (
	statusVLANValid     = 1 << 4 // TP_STATUS_VLAN_VALID
	statusVLANTPIDValid = 1 << 6 // TP_STATUS_VLAN_TPID_VALID
	vlanReserve         = 4      // PACKET_RESERVE: room to put a VLAN tag back in place
)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openRing opens a socket on interface ifindex with a ring of nblocks
// blocks of block bytes, the filter (may be empty) attached before any
// frame arrives, joined to fanout group when it is not 0.
func openRing(ifindex, block, nblocks int, retire, poll time.Duration, filter []bpf.RawInstruction, fanout uint16) (*ring, error) {
	// Protocol 0: no frame is queued before the ring and filter are set;
	// bind below starts the capture.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	r := &ring{fd: fd, block: block, nblocks: nblocks, poll: poll, ifindex: ifindex}
	fail := func(what string, err error) (*ring, error) {
		r.close()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return fail("TPACKET_V3", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_RESERVE, vlanReserve); err != nil {
		return fail("PACKET_RESERVE", err)
	}
	if len(filter) > 0 {
		prog := make([]unix.SockFilter, len(filter))
		for i, in := range filter {
			prog[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
		}
		fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
			return fail("attach filter", err)
		}
	}
	const frame = 2048 // V3 packs frames of any size into a block; frame size only has to divide it
	req := unix.TpacketReq3{
		Block_size:     uint32(block),
		Block_nr:       uint32(nblocks),
		Frame_size:     frame,
		Frame_nr:       uint32(block / frame * nblocks),
		Retire_blk_tov: uint32(retire / time.Millisecond),
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return fail("receive ring", err)
	}
	if r.mem, err = unix.Mmap(fd, 0, block*nblocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return fail("map the ring", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		return fail("bind", err)
	}
	if fanout != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT, int(fanout)|unix.PACKET_FANOUT_HASH<<16); err != nil {
			return fail(fmt.Sprintf("join fanout group %d", fanout), err)
		}
	}
	// The counters restart from zero: what came before the ring was ready
	// is not ours.
	_, _ = unix.GetsockoptTpacketStatsV3(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	return r, nil
}

func (r *ring) status(b int) *uint32 {
	return (*uint32)(unsafe.Pointer(&r.mem[b*r.block+blockStatusOff]))
}

// next returns the next frame: its bytes (in the ring, valid until the next
// call), original length and receive time. It waits up to the poll interval
// for a block; errIdleRing when none came.
func (r *ring) next() (data []byte, length int, ts int64, err error) {
	for r.left == 0 {
		if r.held {
			// Give the block back: the kernel may fill it again.
			atomic.StoreUint32(r.status(r.cur), unix.TP_STATUS_KERNEL)
			r.held = false
			r.cur = (r.cur + 1) % r.nblocks
		}
		if atomic.LoadUint32(r.status(r.cur))&unix.TP_STATUS_USER == 0 {
			if err := r.wait(); err != nil {
				return nil, 0, 0, err
			}
			if atomic.LoadUint32(r.status(r.cur))&unix.TP_STATUS_USER == 0 {
				return nil, 0, 0, errIdleRing
			}
		}
		base := r.cur * r.block
		r.held = true
		r.left = *(*uint32)(unsafe.Pointer(&r.mem[base+blockNumOff]))
		r.off = uintptr(base) + uintptr(*(*uint32)(unsafe.Pointer(&r.mem[base+blockFirstOff])))
	}
	h := (*tpacket3Hdr)(unsafe.Pointer(&r.mem[r.off]))
	start := int(r.off) + int(h.mac)
	snap := int(h.snaplen)
	length = int(h.len)
	ts = int64(h.sec)*1e9 + int64(h.nsec)
	if h.status&statusVLANValid != 0 && snap >= 12 && h.mac >= vlanReserve {
		// The kernel took the outer VLAN tag off into the header; put it
		// back in place so that the frame is as on the wire: move the MAC
		// addresses 4 bytes down (into the reserved room) and write the
		// tag behind them.
		tpid := uint16(0x8100)
		if h.status&statusVLANTPIDValid != 0 && h.vlanTPID != 0 {
			tpid = h.vlanTPID
		}
		tci := uint16(h.vlanTCI)
		copy(r.mem[start-4:start+8], r.mem[start:start+12])
		start -= 4
		r.mem[start+12], r.mem[start+13] = byte(tpid>>8), byte(tpid)
		r.mem[start+14], r.mem[start+15] = byte(tci>>8), byte(tci)
		snap += 4
		length += 4
	}
	data = r.mem[start : start+snap : start+snap]
	r.left--
	r.off += uintptr(h.next)
	return data, length, ts, nil
}

var errIdleRing = errors.New("no block for the poll interval")

// errGone is returned once the interface was deleted (or moved to another
// network namespace): the socket is unbound for good.
var errGone = errors.New("the interface is gone (deleted or moved to another network namespace)")

// wait polls the socket for a block. When the interface goes down the
// kernel flags an error on the socket (ENETDOWN): it is counted, cleared,
// and the wait goes on, as frames come again once the interface is up.
// errGone once the socket lost its interface.
func (r *ring) wait() error {
	fds := []unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN | unix.POLLERR}}
	for {
		n, err := unix.Poll(fds, int(r.poll/time.Millisecond))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		if n > 0 && fds[0].Revents&unix.POLLERR != 0 {
			// Reading SO_ERROR clears it.
			soerr, err := unix.GetsockoptInt(r.fd, unix.SOL_SOCKET, unix.SO_ERROR)
			if err != nil {
				return fmt.Errorf("socket error: %w", err)
			}
			if soerr != 0 && unix.Errno(soerr) != unix.ENETDOWN {
				return fmt.Errorf("socket error: %w", unix.Errno(soerr))
			}
			if soerr != 0 {
				r.downs.Add(1)
			}
		}
		if n == 0 || fds[0].Revents&unix.POLLERR != 0 {
			// Idle or down: still bound? An interface deleted while
			// down raises no error, so look each time.
			if !r.bound() {
				return errGone
			}
		}
		return nil
	}
}

// bound tells whether the socket is still bound to its interface: the
// kernel sets the socket's interface index to -1 when the interface is
// unregistered.
func (r *ring) bound() bool {
	sa, err := unix.Getsockname(r.fd)
	if err != nil {
		return true // cannot tell: assume so
	}
	ll, ok := sa.(*unix.SockaddrLinklayer)
	return !ok || ll.Ifindex == r.ifindex
}

// stats reads the kernel's counters and adds them to the totals (reading
// resets them). tp_packets counts the dropped frames too.
func (r *ring) stats() LiveStats {
	if r.fd < 0 {
		return r.kernel
	}
	s, err := unix.GetsockoptTpacketStatsV3(r.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err == nil {
		r.kernel.Received += uint64(s.Packets)
		r.kernel.Dropped += uint64(s.Drops)
	}
	r.kernel.LinkDowns = r.downs.Load()
	return r.kernel
}

func (r *ring) close() {
	if r.mem != nil {
		_ = unix.Munmap(r.mem)
		r.mem = nil
	}
	if r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
}
