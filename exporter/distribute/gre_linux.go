package distribute

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// GRE and ERSPAN over IPv4 leave as whole Ethernet frames through a
// PACKET_TX_RING on the route's interface, their Ethernet and IPv4 headers
// written by us: a raw IP socket takes one packet per system call, with a
// route lookup and a socket buffer each, about a tenth of what the ring
// forwards (docs/performance.md). The raw socket stays for what the ring
// cannot send: before the next hop's MAC address is known (its packets
// make the kernel resolve it), to a local address (loopback is not
// Ethernet), packets longer than the interface's MTU (the kernel fragments
// them), and everything once the route has moved to another interface than
// the one the ring was opened on (sockets belong to the network namespace
// they were opened in, and later lookups run on whatever thread the sender
// is on: the ring and the netlink socket are opened at the start, in the
// rule's namespace).

// greRingPackets counts the GRE packets handed to a ring (tests read it).
var greRingPackets atomic.Uint64

// greResolveEvery is how often the route and the next hop's MAC address
// are looked up again (a route or a neighbour that changed).
const greResolveEvery = 5 * time.Second

// greUnresolvedRetry is how soon they are looked up again when the ring
// could not be used.
const greUnresolvedRetry = time.Second

// greWriter is the writer of GRE packets to dst: through a ring on the
// route's interface for IPv4 (greRing), else the raw socket alone.
func greWriter(dst netip.Addr, raw batchWriter, closeRaw func() error) (batchWriter, func() error) {
	if !useTXRing || !dst.Is4() {
		return raw, closeRaw
	}
	g, err := newGRERing(dst, raw)
	if err != nil {
		return raw, closeRaw
	}
	return g.write, func() error { return errors.Join(g.close(), closeRaw()) }
}

type greRing struct {
	dst    netip.Addr
	raw    batchWriter
	nl     int     // a netlink socket, opened in the destination's namespace
	ring   *txRing // on the route's interface at the start; nil when none
	usable bool    // the next hop's MAC address is known and the route still uses the ring's interface
	at     time.Time
	// hdr is the frame's Ethernet and IPv4 headers; the IPv4 total length,
	// identification and checksum are written per packet.
	hdr                     [ethHeaderLen + 20]byte
	sum                     uint32 // hdr's IPv4 header summed without those three
	id                      uint16
	seq                     uint32 // the last netlink request's
	ringPkts, rawPkts       [][]byte
	ringIdx, rawIdx         []int
	ringRefused, rawRefused []bool
}

// newGRERing returns a writer of GRE packets to dst (IPv4), sending
// through raw until the ring can be used. It must be called in the network
// namespace the packets leave from.
func newGRERing(dst netip.Addr, raw batchWriter) (*greRing, error) {
	nl, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(nl, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(nl)
		return nil, err
	}
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	_ = unix.SetsockoptTimeval(nl, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	g := &greRing{dst: dst, raw: raw, nl: nl}
	if oif, _, _, err := g.route(); err == nil {
		if ifi, err := interfaceByIndexIn(nl, oif); err == nil {
			if r, err := openTXRing(ifi); err == nil {
				r.prefix, r.prefixLen = g.prefix, len(g.hdr)
				g.ring = r
			}
		}
	}
	if g.ring != nil {
		g.at = time.Now()
		g.resolve()
	}
	return g, nil
}

// write sends the packets (GRE header onwards) through the ring when it
// can, the others through the raw socket.
func (g *greRing) write(pkts [][]byte, refused []bool) (failed int, last error) {
	if g.ring == nil {
		return g.raw(pkts, refused)
	}
	if now := time.Now(); now.Sub(g.at) > greResolveEvery || !g.usable && now.Sub(g.at) > greUnresolvedRetry {
		g.at = now
		g.resolve()
	}
	if !g.usable {
		return g.raw(pkts, refused)
	}
	g.ringPkts, g.ringIdx, g.rawPkts, g.rawIdx = g.ringPkts[:0], g.ringIdx[:0], g.rawPkts[:0], g.rawIdx[:0]
	g.ring.readMTU()
	for i, p := range pkts {
		if 20+len(p) > g.ring.mtu || len(g.hdr)+len(p) > g.ring.maxLen {
			g.rawPkts, g.rawIdx = append(g.rawPkts, p), append(g.rawIdx, i)
		} else {
			g.ringPkts, g.ringIdx = append(g.ringPkts, p), append(g.ringIdx, i)
		}
	}
	send := func(w batchWriter, pkts [][]byte, idx []int, ref []bool) []bool {
		if len(pkts) == 0 {
			return ref
		}
		ref = slices.Grow(ref[:0], len(pkts))[:len(pkts)]
		clear(ref)
		f, err := w(pkts, ref)
		failed += f
		if err != nil {
			last = err
		}
		for k, r := range ref {
			if r {
				refused[idx[k]] = true
			}
		}
		return ref
	}
	g.ringRefused = send(g.ring.write, g.ringPkts, g.ringIdx, g.ringRefused)
	greRingPackets.Add(uint64(len(g.ringPkts)))
	g.rawRefused = send(g.raw, g.rawPkts, g.rawIdx, g.rawRefused)
	if g.ring.refusing {
		g.at = time.Time{} // the interface went down or away: look again
	}
	return failed, last
}

// prefix writes the Ethernet and IPv4 headers of a GRE packet of n bytes
// at b and returns their length.
func (g *greRing) prefix(b []byte, n int) int {
	copy(b, g.hdr[:])
	ip := b[ethHeaderLen:]
	total := uint16(20 + n)
	binary.BigEndian.PutUint16(ip[2:], total)
	binary.BigEndian.PutUint16(ip[4:], g.id)
	s := g.sum + uint32(total) + uint32(g.id)
	g.id++
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	binary.BigEndian.PutUint16(ip[10:], ^uint16(s))
	return len(g.hdr)
}

// resolve looks up the route to the destination and the next hop's MAC
// address: the ring is usable when the route still leaves by the ring's
// interface and the kernel knows the next hop's address. Only with a ring.
func (g *greRing) resolve() {
	g.usable = false
	oif, src, via, err := g.route()
	if err != nil || oif != g.ring.ifindex {
		return
	}
	mac, err := g.neighbour(oif, via)
	if err != nil {
		return
	}
	copy(g.hdr[0:6], mac)
	copy(g.hdr[6:12], g.ring.mac)
	binary.BigEndian.PutUint16(g.hdr[12:], 0x0800)
	ip := g.hdr[ethHeaderLen:]
	clear(ip)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // don't fragment: longer packets take the raw socket
	ip[8], ip[9] = 64, 47
	s4, d4 := src.As4(), g.dst.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	var s uint32
	for i := 0; i < 20; i += 2 {
		s += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	g.sum, g.usable = s, true
}

func (g *greRing) close() error {
	if g.ring != nil {
		g.ring.close()
	}
	return unix.Close(g.nl)
}

// errNoRoute says the ring cannot be used for the destination.
var errNoRoute = errors.New("no route through an Ethernet next hop")

// request sends one netlink request and returns the messages of its
// answer (up to NLMSG_DONE for a dump).
func (g *greRing) request(typ uint16, flags uint16, body []byte) ([]syscall.NetlinkMessage, error) {
	g.seq++
	hdr := unix.NlMsghdr{Len: uint32(unix.NLMSG_HDRLEN + len(body)), Type: typ, Flags: unix.NLM_F_REQUEST | flags, Seq: g.seq}
	b := make([]byte, 0, hdr.Len)
	b = append(b, unsafe.Slice((*byte)(unsafe.Pointer(&hdr)), unix.NLMSG_HDRLEN)...)
	b = append(b, body...)
	if err := unix.Sendto(g.nl, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	var out []syscall.NetlinkMessage
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(g.nl, buf, 0)
		if err != nil {
			return nil, err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.Header.Seq != g.seq {
				continue // the rest of an earlier answer that timed out
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
						return nil, unix.Errno(-e)
					}
				}
				return out, nil
			}
			out = append(out, m)
		}
		if flags&unix.NLM_F_DUMP == 0 {
			return out, nil
		}
	}
}

// route is the kernel's route to the destination: its interface, the
// source address it would use and the next hop (a gateway, or the
// destination itself).
func (g *greRing) route() (oif int, src, via netip.Addr, err error) {
	rtm := unix.RtMsg{Family: unix.AF_INET, Dst_len: 32}
	body := append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&rtm)), unix.SizeofRtMsg)...)
	d4 := g.dst.As4()
	body = appendAttr(body, unix.RTA_DST, d4[:])
	msgs, err := g.request(unix.RTM_GETROUTE, 0, body)
	if err != nil {
		return 0, src, via, err
	}
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWROUTE || len(m.Data) < unix.SizeofRtMsg {
			continue
		}
		r := (*unix.RtMsg)(unsafe.Pointer(&m.Data[0]))
		if r.Type != unix.RTN_UNICAST {
			return 0, src, via, errNoRoute // local, blackhole, unreachable...
		}
		via = g.dst
		for _, a := range parseAttrs(m.Data[unix.SizeofRtMsg:]) {
			switch a.typ {
			case unix.RTA_OIF:
				if len(a.value) >= 4 {
					oif = int(binary.NativeEndian.Uint32(a.value))
				}
			case unix.RTA_PREFSRC:
				if v, ok := netip.AddrFromSlice(a.value); ok {
					src = v
				}
			case unix.RTA_GATEWAY:
				if v, ok := netip.AddrFromSlice(a.value); ok {
					via = v
				}
			}
		}
		if oif == 0 || !src.Is4() {
			return 0, src, via, errNoRoute
		}
		return oif, src, via, nil
	}
	return 0, src, via, errNoRoute
}

// neighbour is the MAC address the kernel has for addr on interface oif,
// when it is reachable (or was lately: stale, delay, probe).
func (g *greRing) neighbour(oif int, addr netip.Addr) (net.HardwareAddr, error) {
	ndm := unix.NdMsg{Family: unix.AF_INET}
	body := unsafe.Slice((*byte)(unsafe.Pointer(&ndm)), unix.SizeofNdMsg)
	msgs, err := g.request(unix.RTM_GETNEIGH, unix.NLM_F_DUMP, append([]byte(nil), body...))
	if err != nil {
		return nil, err
	}
	const usable = unix.NUD_REACHABLE | unix.NUD_STALE | unix.NUD_DELAY | unix.NUD_PROBE | unix.NUD_PERMANENT
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWNEIGH || len(m.Data) < unix.SizeofNdMsg {
			continue
		}
		n := (*unix.NdMsg)(unsafe.Pointer(&m.Data[0]))
		if int(n.Ifindex) != oif || n.State&usable == 0 {
			continue
		}
		var dst netip.Addr
		var mac net.HardwareAddr
		for _, a := range parseAttrs(m.Data[unix.SizeofNdMsg:]) {
			switch a.typ {
			case unix.NDA_DST:
				dst, _ = netip.AddrFromSlice(a.value)
			case unix.NDA_LLADDR:
				mac = net.HardwareAddr(a.value)
			}
		}
		if dst == addr && len(mac) == 6 {
			return mac, nil
		}
	}
	return nil, errNoRoute
}

type nlAttr struct {
	typ   uint16
	value []byte
}

// parseAttrs reads rtattr-framed attributes.
func parseAttrs(b []byte) []nlAttr {
	var out []nlAttr
	for len(b) >= unix.SizeofRtAttr {
		l := int(binary.NativeEndian.Uint16(b))
		if l < unix.SizeofRtAttr || l > len(b) {
			break
		}
		out = append(out, nlAttr{typ: binary.NativeEndian.Uint16(b[2:]), value: b[unix.SizeofRtAttr:l]})
		l = (l + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1)
		if l > len(b) {
			break
		}
		b = b[l:]
	}
	return out
}

func appendAttr(b []byte, typ uint16, v []byte) []byte {
	l := unix.SizeofRtAttr + len(v)
	b = binary.NativeEndian.AppendUint16(b, uint16(l))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, v...)
	for len(b)%unix.RTA_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

// interfaceByIndexIn is the interface of that index in the namespace of
// socket fd.
func interfaceByIndexIn(fd, index int) (*net.Interface, error) {
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return nil, err
	}
	ifr.SetUint32(uint32(index))
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFNAME, ifr); err != nil {
		return nil, err
	}
	name := ifr.Name()
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFMTU, ifr); err != nil {
		return nil, err
	}
	return &net.Interface{Index: index, Name: name, MTU: int(ifr.Uint32())}, nil
}
