//go:build linux

package capture

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Live reads frames from a network interface through an AF_PACKET
// TPACKET_V3 ring, in promiscuous mode. Next returns ErrIdle when no frame
// came for the poll interval (so the pipeline can expire flows) and
// ErrClosed once Close was called.
type Live struct {
	cfg     LiveConfiguration
	link    uint32 // pcap link type of the frames: Ethernet or raw IP
	ring    *ring
	promisc int // socket holding the PACKET_MR_PROMISC membership
	closed  atomic.Bool
	mu      sync.Mutex // guards the ring's counters
}

// LiveStats are the kernel's counters of the socket.
type LiveStats struct {
	Received  uint64 // frames the kernel passed to the ring (after the filter)
	Dropped   uint64 // frames the kernel dropped because the ring was full
	LinkDowns uint64 // times the interface went down (frames resume when it is up)
}

// OpenLive opens the interface. fanoutGroup, when non-zero, joins the socket
// to a PACKET_FANOUT hash group of that id (one socket per worker).
func OpenLive(cfg LiveConfiguration, fanoutGroup uint16) (*Live, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	iface, link, err := lookupInterface(cfg.Interface)
	if err != nil {
		return nil, err
	}
	const block = 1 << 20
	blocks := cfg.RingSize / block
	if blocks < 1 {
		blocks = 1
	}
	var filter []bpf.RawInstruction
	if cfg.Filter != "" {
		if filter, err = compileFilter(cfg.Filter, link); err != nil {
			return nil, fmt.Errorf("interface %s: %w", cfg.Interface, err)
		}
	}
	r, err := openRing(iface.Index, block, blocks, 10*time.Millisecond, pollInterval, filter, fanoutGroup)
	if err != nil {
		return nil, fmt.Errorf("open AF_PACKET ring on %s: %w", cfg.Interface, err)
	}
	l := &Live{cfg: cfg, link: link, ring: r, promisc: -1}
	if !cfg.NoPromiscuous {
		if err := l.setPromiscuous(); err != nil {
			l.Close()
			return nil, fmt.Errorf("interface %s: promiscuous mode: %w", cfg.Interface, err)
		}
	}
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
	mreq := unix.PacketMreq{Ifindex: int32(l.ring.ifindex), Type: unix.PACKET_MR_PROMISC}
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
	data, length, ts, err := l.ring.next()
	if err != nil {
		if l.closed.Load() {
			return ErrClosed
		}
		if errors.Is(err, errIdleRing) {
			return ErrIdle
		}
		if errors.Is(err, errGone) {
			return fmt.Errorf("read from %s: %w; start again once it is back", l.cfg.Interface, err)
		}
		return fmt.Errorf("read from %s: %w", l.cfg.Interface, err)
	}
	f.Data, f.Length, f.Timestamp = data, length, ts
	f.LinkType, f.ObservationPoint, f.IfIndex = l.link, l.cfg.ObservationPoint, uint32(l.ring.ifindex)
	if f.Length < len(data) {
		f.Length = len(data)
	}
	return nil
}

// pcap link types of live frames.
const (
	linkTypeEthernet = 1
	linkTypeRaw      = 101 // the frame starts with the IPv4 or IPv6 header
	linkTypeCHDLC    = 104 // Cisco HDLC: address, control, EtherType
)

// CheckInterface says what keeps the named interface from being captured:
// it is not on this host, or its frames are of a kind spanflow cannot
// decode. nil when it can be captured.
func CheckInterface(name string) error {
	_, _, err := lookupInterface(name)
	return err
}

// lookupInterface finds the named interface and the link type of its frames.
func lookupInterface(name string) (*net.Interface, uint32, error) {
	iface, err := net.InterfaceByName(name)
	if err != nil {
		return nil, 0, fmt.Errorf("interface %s: not on this host: %w", name, err)
	}
	link, err := linkTypeOf(iface)
	return iface, link, err
}

// linkTypeOf tells how frames of the interface begin, from its hardware
// type: with an Ethernet header (Ethernet, veth, bridges, bonds, VLAN
// interfaces, loopback), with the IP header (tun, WireGuard, IP-in-IP and
// SIT tunnels, and PPP, whose driver gives packet sockets no PPP header),
// or with a Cisco HDLC header (the kernel's hdlc_cisco serial links).
// Others (InfiniBand, CAN, ...) are refused.
func linkTypeOf(iface *net.Interface) (uint32, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("interface %s: %w", iface.Name, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(iface.Name)
	if err != nil {
		return 0, fmt.Errorf("interface %s: %w", iface.Name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFHWADDR, ifr); err != nil {
		return 0, fmt.Errorf("interface %s: hardware type: %w", iface.Name, err)
	}
	switch hw := ifr.Uint16(); hw {
	case unix.ARPHRD_ETHER, unix.ARPHRD_LOOPBACK:
		return linkTypeEthernet, nil
	case unix.ARPHRD_NONE, unix.ARPHRD_RAWIP, unix.ARPHRD_TUNNEL, unix.ARPHRD_TUNNEL6, unix.ARPHRD_SIT, unix.ARPHRD_PPP:
		return linkTypeRaw, nil
	case unix.ARPHRD_CISCO:
		return linkTypeCHDLC, nil
	default:
		return 0, fmt.Errorf("interface %s has hardware type %d (see ARPHRD_* in linux/if_arp.h), whose frames spanflow cannot decode; capture an Ethernet interface (a mirror port, a veth) or an IP tunnel", iface.Name, hw)
	}
}

// Stats reads the kernel's counters (cumulative since the open).
func (l *Live) Stats() LiveStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ring.stats()
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
	l.ring.close()
	return nil
}
