//go:build linux && cgo

package capture

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/gopacket/afpacket"
	"golang.org/x/sys/unix"
)

// Live reads frames from a network interface through an AF_PACKET
// TPACKET_V3 ring, in promiscuous mode. Next returns ErrIdle when no frame
// came for the poll interval (so the pipeline can expire flows) and
// ErrClosed once Close was called.
type Live struct {
	cfg     LiveConfiguration
	tp      *afpacket.TPacket
	promisc int // socket holding the PACKET_MR_PROMISC membership
	ifindex int
	buf     []byte // frame with its VLAN tag put back
	closed  atomic.Bool
	mu      sync.Mutex // guards stats and tp.SocketStats
	stats   LiveStats
}

// LiveStats are the kernel's counters of the socket.
type LiveStats struct {
	Received uint64 // frames the kernel passed to the ring (after the filter)
	Dropped  uint64 // frames the kernel dropped because the ring was full
}

// OpenLive opens the interface. fanoutGroup, when non-zero, joins the socket
// to a PACKET_FANOUT hash group of that id (one socket per worker).
func OpenLive(cfg LiveConfiguration, fanoutGroup uint16) (*Live, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	iface, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", cfg.Interface, err)
	}
	const block = 1 << 20
	blocks := cfg.RingSize / block
	if blocks < 1 {
		blocks = 1
	}
	tp, err := afpacket.NewTPacket(
		afpacket.OptInterface(cfg.Interface),
		afpacket.OptTPacketVersion(afpacket.TPacketVersion3),
		afpacket.OptFrameSize(afpacket.DefaultFrameSize),
		afpacket.OptBlockSize(block),
		afpacket.OptNumBlocks(blocks),
		afpacket.OptBlockTimeout(10*time.Millisecond),
		afpacket.OptPollTimeout(pollInterval),
	)
	if err != nil {
		return nil, fmt.Errorf("open AF_PACKET ring on %s: %w", cfg.Interface, err)
	}
	l := &Live{cfg: cfg, tp: tp, promisc: -1, ifindex: iface.Index, buf: make([]byte, 0, 65536+4)}
	if cfg.Filter != "" {
		prog, err := CompileFilter(cfg.Filter)
		if err == nil {
			err = tp.SetBPF(prog)
		}
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("interface %s: %w", cfg.Interface, err)
		}
	}
	if fanoutGroup != 0 {
		if err := tp.SetFanout(afpacket.FanoutHash, fanoutGroup); err != nil {
			l.Close()
			return nil, fmt.Errorf("interface %s: join fanout group %d: %w", cfg.Interface, fanoutGroup, err)
		}
	}
	if !cfg.NoPromiscuous {
		if err := l.setPromiscuous(); err != nil {
			l.Close()
			return nil, fmt.Errorf("interface %s: promiscuous mode: %w", cfg.Interface, err)
		}
	}
	// Counters restart from zero: what came before the ring was ready is
	// not ours.
	_ = tp.InitSocketStats()
	return l, nil
}

// setPromiscuous adds a promiscuous membership on a socket of its own: the
// kernel counts memberships and drops it when the socket closes, so the
// interface is left as found even if the process is killed.
func (l *Live) setPromiscuous() error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	mreq := unix.PacketMreq{Ifindex: int32(l.ifindex), Type: unix.PACKET_MR_PROMISC}
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
		unix.Close(fd)
		return err
	}
	l.promisc = fd
	return nil
}

// Next returns the next frame. Its data stays valid until the next call.
func (l *Live) Next(f *Frame) error {
	if l.closed.Load() {
		return ErrClosed
	}
	data, ci, err := l.tp.ZeroCopyReadPacketData()
	if err != nil {
		if errors.Is(err, afpacket.ErrTimeout) {
			if l.closed.Load() {
				return ErrClosed
			}
			return ErrIdle
		}
		if l.closed.Load() {
			return ErrClosed
		}
		return fmt.Errorf("read from %s: %w", l.cfg.Interface, err)
	}
	f.Length = ci.Length
	for _, a := range ci.AncillaryData {
		// The kernel takes the outer VLAN tag off into the frame's
		// metadata; put it back so that the frame is as on the wire.
		if v, ok := a.(afpacket.AncillaryVLAN); ok && len(data) >= 12 {
			l.buf = append(l.buf[:0], data[:12]...)
			l.buf = append(l.buf, 0x81, 0x00, byte(v.VLAN>>8), byte(v.VLAN))
			l.buf = append(l.buf, data[12:]...)
			data = l.buf
			f.Length += 4
		}
	}
	f.Data, f.LinkType, f.ObservationPoint = data, linkTypeEthernet, l.cfg.ObservationPoint
	f.Timestamp = ci.Timestamp.UnixNano()
	if f.Length < len(data) {
		f.Length = len(data)
	}
	return nil
}

const linkTypeEthernet = 1

// Stats reads the kernel's counters (cumulative since the open).
func (l *Live) Stats() LiveStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return l.stats
	}
	_, s3, err := l.tp.SocketStats()
	if err == nil {
		// tp_packets counts dropped frames too.
		l.stats = LiveStats{Received: uint64(s3.Packets()), Dropped: uint64(s3.Drops())}
	}
	return l.stats
}

// Close stops the capture: a Next waiting in poll returns ErrClosed within
// the poll interval.
func (l *Live) Close() error {
	l.Stats()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Swap(true) {
		return nil
	}
	if l.promisc >= 0 {
		unix.Close(l.promisc)
		l.promisc = -1
	}
	// The ring is unmapped only once no Next can be reading it: Close is
	// called from the pipeline goroutine after its last Next, or Cancel
	// first stops it.
	l.tp.Close()
	return nil
}
