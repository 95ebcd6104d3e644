package distribute

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// txRing sends frames on a local interface through a PACKET_TX_RING
// (TPACKET_V2): the sender copies each frame into a slot of a ring shared
// with the kernel and one send() hands the kernel every filled slot. With
// sendmmsg, each frame also cost a message header to read and an iovec to
// import.
// PACKET_QDISC_BYPASS sends straight to the driver, as a packet generator
// does: no queueing discipline on the way, and captures on this interface
// itself do not see the frames (the peer and the wire do).
//
// Every frame put in the ring is accounted for once: sent when the kernel
// takes it; dropped (a send error) when the kernel refuses it. A refused
// frame stays in its slot with length 0, shorter than the virtio-net
// header, which the kernel skips (PACKET_LOSS) on its next pass instead of
// sending it.
type txRing struct {
	fd        int
	mem       []byte
	frameSize int
	perBlock  int
	blockSize int
	n         int
	maxLen    int // the longest frame a slot holds
	ifindex   int
	ifname    string

	mac net.HardwareAddr // the interface's

	// prefix, when set, writes prefixLen bytes of headers before each
	// packet in its slot (GRE's Ethernet and IPv4 headers): the packets
	// written are then what follows them.
	prefix    func(b []byte, n int) int
	prefixLen int

	mtu      int     // the interface's, read again before each batch
	next     int     // the slot to fill next
	oldest   int     // the oldest slot handed to the kernel and not seen taken
	pending  int     // slots from oldest on: handed to the kernel, not seen taken
	lens     []int32 // each pending slot's frame length
	idx      []int32 // each pending slot's packet in the write under way
	refused  []bool  // that write's packets not sent
	dropped  []bool  // pending slots already counted as dropped
	refusing bool    // the last flush's frames were refused: do not wait for slots
	// congested: the device refused a frame for txRingRetry and no frame
	// left since; the next ones it refuses are dropped without waiting
	// (a veth whose peer is down refuses every frame).
	congested bool
	mu        sync.Mutex
	closed    atomic.Bool
}

const (
	tpacket2HdrLen = 32 // sizeof(struct tpacket2_hdr): frames begin after it
	vnetHdrLen     = 10 // sizeof(struct virtio_net_hdr)
	txRingFrames   = 256
	txRingMaxBytes = 4 << 20
	ethHeaderLen   = 14
	// txRingPatience is how long a slot or the kernel's buffer may stay
	// busy (a device queue that does not drain) before the frames waiting
	// for them are dropped and counted.
	txRingPatience = 500 * time.Millisecond
	// txRingRetry is how long a frame the device refuses is tried again.
	txRingRetry = time.Millisecond
)

// useTXRing lets tests force the sendmmsg writer.
var useTXRing = true

// openTXRing opens the ring on the interface, or returns an error when the
// kernel or the interface cannot have one (the caller then uses sendmmsg).
func openTXRing(ifi *net.Interface) (*txRing, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0) // protocol 0: send only
	if err != nil {
		return nil, fmt.Errorf("AF_PACKET (needs CAP_NET_RAW): %w", err)
	}
	r := &txRing{fd: fd, ifindex: ifi.Index, ifname: ifi.Name, mtu: ifi.MTU}
	fail := func(what string, err error) (*txRing, error) {
		if r.mem != nil {
			_ = unix.Munmap(r.mem)
		}
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	// Only Ethernet: the MTU check counts an Ethernet header (and an
	// 802.1Q tag).
	ifr, err := unix.NewIfreq(ifi.Name)
	if err != nil {
		return fail("interface name", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFHWADDR, ifr); err != nil {
		return fail("link type", err)
	}
	if t := ifr.Uint16(); t != unix.ARPHRD_ETHER {
		return fail("link type", fmt.Errorf("%d is not Ethernet", t))
	}
	// struct ifreq: the name, then the sockaddr's family and its data.
	hw := (*[unix.IFNAMSIZ + 2 + 6]byte)(unsafe.Pointer(ifr))
	r.mac = append(net.HardwareAddr(nil), hw[unix.IFNAMSIZ+2:]...)
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2); err != nil {
		return fail("TPACKET_V2", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_LOSS, 1); err != nil {
		return fail("PACKET_LOSS", err)
	}
	// A virtio-net header before each frame, whose header length is the
	// whole frame, has the kernel copy the frame into the socket buffer
	// rather than map the ring's page: a veth would otherwise copy it
	// again into a page of its own (skb_copy_ubufs) before its peer sees
	// it, and the slot is free as soon as the frame is copied.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		return fail("PACKET_VNET_HDR", err)
	}
	// Not fatal: without it the frames go through the queueing discipline.
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)

	page := os.Getpagesize()
	r.maxLen = max(ifi.MTU, 1500) + ethHeaderLen + 4 // a VLAN tag may ride above the MTU
	r.frameSize = (tpacket2HdrLen + vnetHdrLen + r.maxLen + 15) &^ 15
	if r.frameSize <= page/2 {
		r.frameSize = page / (page / r.frameSize) &^ 15 // whole frames per page, no waste
	}
	r.blockSize = (r.frameSize + page - 1) / page * page
	r.perBlock = r.blockSize / r.frameSize
	blocks := max(1, min(txRingFrames, txRingMaxBytes/r.frameSize)/r.perBlock)
	r.n = blocks * r.perBlock
	r.maxLen = r.frameSize - tpacket2HdrLen - vnetHdrLen
	req := unix.TpacketReq{Block_size: uint32(r.blockSize), Block_nr: uint32(blocks), Frame_size: uint32(r.frameSize), Frame_nr: uint32(r.n)}
	if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_TX_RING, &req); err != nil {
		return fail("PACKET_TX_RING", err)
	}
	if r.mem, err = unix.Mmap(fd, 0, r.blockSize*blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return fail("mmap the ring", err)
	}
	// Room in the socket's send buffer for a whole ring in flight: the
	// kernel refuses (EAGAIN) past it.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 2*r.n*r.frameSize) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 2*r.n*r.frameSize)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
		return fail("bind", err)
	}
	r.lens = make([]int32, r.n)
	r.idx = make([]int32, r.n)
	r.dropped = make([]bool, r.n)
	return r, nil
}

// frame is slot i: its tpacket2_hdr, then the frame.
func (r *txRing) frame(i int) []byte {
	off := i/r.perBlock*r.blockSize + i%r.perBlock*r.frameSize
	return r.mem[off : off+r.frameSize]
}

func (r *txRing) status(i int) uint32 {
	return atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.frame(i)[0])))
}

func (r *txRing) setStatus(i int, s uint32) {
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&r.frame(i)[0])), s)
}

// write puts the packets in the ring and hands them to the kernel; it
// returns once each of them is sent or counted in failed.
func (r *txRing) write(pkts [][]byte, refused []bool) (failed int, last error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		return refuseAll(refused), net.ErrClosed
	}
	r.refusing, r.refused = false, refused
	defer func() { r.refused = nil }()
	r.readMTU()
	for i, p := range pkts {
		// The kernel checks no MTU on frames with a virtio-net header
		// (the device may segment them): a veth refuses longer ones
		// after a millisecond of retries, a NIC may send them anyway.
		n := r.prefixLen + len(p)
		if n < ethHeaderLen || n > r.maxLen ||
			n > r.mtu+ethHeaderLen && (n > r.mtu+ethHeaderLen+4 || r.prefix != nil || !vlanTagged(p)) {
			refused[i] = true
			failed++
			last = fmt.Errorf("frame of %d bytes on %s (MTU %d): %w", n, r.ifname, r.mtu, unix.EMSGSIZE)
			continue
		}
		if r.pending == r.n || r.status(r.next) != unix.TP_STATUS_AVAILABLE {
			// The ring is full: hand the kernel what it holds, then wait
			// for the slot (a frame still leaving on a slow device).
			if !r.refusing {
				f, err := r.flush()
				failed += f
				if err != nil {
					last = err
				}
			}
			if r.refusing || !r.waitSlot() {
				refused[i] = true
				failed++
				if !r.refusing {
					last = errors.New("send ring busy")
				}
				continue
			}
		}
		h := r.frame(r.next)
		v := h[tpacket2HdrLen:]
		clear(v[:vnetHdrLen])
		binary.NativeEndian.PutUint16(v[2:], uint16(n)) // hdr_len: copy it all
		off := vnetHdrLen
		if r.prefix != nil {
			off += r.prefix(v[vnetHdrLen:], len(p))
		}
		copy(v[off:], p)
		*(*uint32)(unsafe.Pointer(&h[4])) = uint32(vnetHdrLen + n) // tp_len
		r.lens[r.next] = int32(n)
		r.idx[r.next] = int32(i)
		r.setStatus(r.next, unix.TP_STATUS_SEND_REQUEST)
		r.next = (r.next + 1) % r.n
		r.pending++
	}
	f, err := r.flush()
	failed += f
	if err != nil {
		last = err
	}
	return failed, last
}

// waitSlot waits for the next slot to be free; false when it stays busy
// for txRingPatience or the ring is closed.
func (r *txRing) waitSlot() bool {
	deadline := time.Now().Add(txRingPatience)
	for r.status(r.next) != unix.TP_STATUS_AVAILABLE {
		if r.closed.Load() || time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Microsecond)
	}
	return true
}

// flush has the kernel send the slots filled since the last flush and
// accounts for each: taken by the kernel (sent), or dropped and counted
// when the kernel refuses it. The kernel's buffer full (EAGAIN: frames
// still leaving) is waited for up to txRingPatience; a frame the device
// refuses (ENOBUFS: its queue full, or its carrier down) is tried again
// for txRingRetry, then dropped alone; any other error (interface down or
// gone) drops every frame waiting.
func (r *txRing) flush() (failed int, last error) {
	var busySince, refusedSince time.Time
	for r.pending > 0 {
		n, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(r.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
		// The kernel takes slots in order from the oldest pending one;
		// those no longer waiting for it are taken (sent, or skipped).
		taken, takenBytes := 0, 0
		for r.pending > 0 && r.status(r.oldest)&unix.TP_STATUS_SEND_REQUEST == 0 {
			if !r.dropped[r.oldest] {
				takenBytes += int(r.lens[r.oldest])
				taken++
			}
			r.dropped[r.oldest] = false
			r.oldest = (r.oldest + 1) % r.n
			r.pending--
		}
		if errno == 0 && takenBytes != int(n) {
			// The kernel skipped frames it finds malformed (PACKET_LOSS),
			// which write's checks keep out: count one at least rather
			// than none. (After an error it does not say what it sent.)
			failed++
			last = fmt.Errorf("the kernel skipped %d bytes of frames", takenBytes-int(n))
		}
		if r.pending == 0 {
			break
		}
		if taken > 0 {
			busySince, refusedSince, r.congested = time.Time{}, time.Time{}, false
			if errno == 0 {
				continue
			}
		}
		now := time.Now()
		switch {
		case r.closed.Load():
		case errno == unix.EAGAIN || errno == 0:
			if busySince.IsZero() {
				busySince = now
			}
			if now.Sub(busySince) < txRingPatience {
				time.Sleep(50 * time.Microsecond)
				continue
			}
		case errno == unix.ENOBUFS:
			if refusedSince.IsZero() {
				refusedSince = now
			}
			if !r.congested && now.Sub(refusedSince) < txRingRetry {
				time.Sleep(50 * time.Microsecond)
				continue
			}
			refusedSince, r.congested = time.Time{}, true
			if r.drop(r.oldest) {
				failed++
			}
			last = errno
			continue
		}
		if errno != 0 {
			last = errno
		} else {
			last = errors.New("the kernel does not take the frames")
		}
		for i, s := 0, r.oldest; i < r.pending; i, s = i+1, (s+1)%r.n {
			if r.drop(s) {
				failed++
			}
		}
		r.refusing = true
		return failed, last
	}
	return failed, last
}

// drop makes pending slot s a frame the kernel skips without sending it
// on its next pass (the slot is reused after that); false when it was
// dropped already.
func (r *txRing) drop(s int) bool {
	if r.dropped[s] || r.status(s)&unix.TP_STATUS_SEND_REQUEST == 0 {
		return false
	}
	h := r.frame(s)
	*(*uint32)(unsafe.Pointer(&h[4])) = 0 // shorter than its virtio-net header: skipped
	r.dropped[s] = true
	// A slot not dropped yet holds a packet of the write under way: those
	// of an earlier write were all taken or dropped before it returned.
	if i := int(r.idx[s]); i < len(r.refused) {
		r.refused[i] = true
	}
	return true
}

// readMTU reads the interface's MTU (it may change while the ring is
// open), by name, finding the name again by index when it was renamed.
// Through the socket: the sender's thread may be in another namespace.
func (r *txRing) readMTU() {
	for range 2 {
		ifr, err := unix.NewIfreq(r.ifname)
		if err == nil && unix.IoctlIfreq(r.fd, unix.SIOCGIFMTU, ifr) == nil {
			r.mtu = int(ifr.Uint32())
			return
		}
		ifr, _ = unix.NewIfreq("")
		ifr.SetUint32(uint32(r.ifindex))
		if unix.IoctlIfreq(r.fd, unix.SIOCGIFNAME, ifr) != nil {
			return // gone: the send says so
		}
		r.ifname = ifr.Name()
	}
}

func vlanTagged(frame []byte) bool {
	return len(frame) >= ethHeaderLen && frame[12] == 0x81 && frame[13] == 0x00
}

// close stops the ring: a write in progress gives up its waiting, and the
// ring is unmapped once it has returned.
func (r *txRing) close() error {
	r.closed.Store(true)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mem == nil {
		return nil
	}
	_ = unix.Munmap(r.mem)
	r.mem = nil
	return unix.Close(r.fd)
}
