package synth

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/spanflow/spanflow/internal/flow"
)

// Packet is one frame of a capture.
type Packet struct {
	Time    int64 // ns since the epoch
	Data    []byte
	SnapLen int // when non-zero, the capture keeps only this many bytes
}

// Flow is what a test compares: the fields of a flow record that the
// exporter measures, with times in milliseconds as IPFIX carries them.
type Flow struct {
	Src, Dst             netip.Addr
	SrcPort, DstPort     uint16
	Proto                uint8
	VLAN, InnerVLAN      uint16
	Segment, Session     uint64
	InIf                 uint32
	SrcMAC, DstMAC       flow.MAC
	TOS                  uint8
	TCPFlags             uint16
	ICMPType, ICMPCode   uint8
	Packets, Bytes       uint64
	StartMs, EndMs       int64
	EndReason            uint8
	RTTClientUs          int64
	RTTServerUs          int64
	Retrans, ZeroWindows uint32
	// Initiator is the record's biflowDirection (RFC 5103): 1 when this
	// direction opened the TCP connection (sent the SYN), 2 when the other
	// did (this one sent the SYN-ACK), 0 when the meter cannot tell.
	Initiator uint8
}

// FromRecord projects a record on the compared fields.
func FromRecord(r *flow.Record) Flow {
	return Flow{
		Src: r.SrcAddr, Dst: r.DstAddr, SrcPort: r.SrcPort, DstPort: r.DstPort, Proto: r.Proto,
		VLAN: r.VLAN, InnerVLAN: r.InnerVLAN, Segment: r.SegmentID, Session: r.ObservationPoint,
		InIf: r.InIf, SrcMAC: r.SrcMAC, DstMAC: r.DstMAC, TOS: r.TOS, TCPFlags: r.TCPFlags,
		ICMPType: r.ICMPType, ICMPCode: r.ICMPCode, Packets: r.Packets, Bytes: r.Bytes,
		StartMs: r.Start.UnixMilli(), EndMs: r.End.UnixMilli(), EndReason: r.EndReason,
		RTTClientUs: r.TCP.RTTClient.Microseconds(), RTTServerUs: r.TCP.RTTServer.Microseconds(),
		Retrans: r.TCP.Retransmissions, ZeroWindows: r.TCP.ZeroWindows,
		Initiator: initiatorOf(r),
	}
}

func initiatorOf(r *flow.Record) uint8 {
	for _, x := range r.Extra {
		if x.Name == flow.ExtraBiflowDirection {
			return uint8(x.Num)
		}
	}
	return 0
}

// Sort orders flows for comparison.
func Sort(fs []Flow) {
	sort.Slice(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if a.StartMs != b.StartMs {
			return a.StartMs < b.StartMs
		}
		if c := a.Src.Compare(b.Src); c != 0 {
			return c < 0
		}
		if c := a.Dst.Compare(b.Dst); c != 0 {
			return c < 0
		}
		if a.SrcPort != b.SrcPort {
			return a.SrcPort < b.SrcPort
		}
		if a.DstPort != b.DstPort {
			return a.DstPort < b.DstPort
		}
		if a.Proto != b.Proto {
			return a.Proto < b.Proto
		}
		if a.ICMPType != b.ICMPType {
			return a.ICMPType < b.ICMPType
		}
		if a.Segment != b.Segment {
			return a.Segment < b.Segment
		}
		// Whatever else differs decides, so that the order is total.
		return fmt.Sprintf("%+v", a) < fmt.Sprintf("%+v", b)
	})
}

// Capture is a generated capture and the flows it must yield.
type Capture struct {
	Packets []Packet
	Flows   []Flow
	NotIP   int // frames without IP (ARP)
}

// Encap wraps an IP packet into the frame the capture holds, and says what
// the flow must then carry.
type Encap struct {
	Name string
	// Wrap builds the frame of ip (an IPv4 or IPv6 packet) going from the
	// session's A side (fromA) or its B side.
	Wrap            func(ip []byte, fromA bool) []byte
	VLAN, InnerVLAN uint16
	Segment         uint64
	Session         uint64
	InIf            uint32
	// MACs seen on frames from A (swapped from B).
	MACA, MACB [6]byte
}

var (
	tunnelA = netip.MustParseAddr("192.0.2.1")
	tunnelB = netip.MustParseAddr("192.0.2.2")
	macA    = MAC(0x0a)
	macB    = MAC(0x0b)
	macTA   = MAC(0xa1)
	macTB   = MAC(0xa2)
)

func etherTypeOf(ip []byte) uint16 {
	if ip[0]>>4 == 6 {
		return 0x86dd
	}
	return 0x0800
}

func macs(fromA bool) (src, dst [6]byte) {
	if fromA {
		return macA, macB
	}
	return macB, macA
}

// Encapsulations used by Mixed.
var (
	Plain = Encap{Name: "ethernet", MACA: macA, MACB: macB, Wrap: func(ip []byte, fromA bool) []byte {
		s, d := macs(fromA)
		return Ethernet(s, d, nil, etherTypeOf(ip), ip)
	}}
	VLAN100 = Encap{Name: "802.1Q", VLAN: 100, MACA: macA, MACB: macB, Wrap: func(ip []byte, fromA bool) []byte {
		s, d := macs(fromA)
		return Ethernet(s, d, []Tag{{0x8100, 100}}, etherTypeOf(ip), ip)
	}}
	QinQ = Encap{Name: "QinQ", VLAN: 200, InnerVLAN: 300, MACA: macA, MACB: macB, Wrap: func(ip []byte, fromA bool) []byte {
		s, d := macs(fromA)
		return Ethernet(s, d, []Tag{{0x88a8, 200}, {0x8100, 300}}, etherTypeOf(ip), ip)
	}}
	VXLAN5001 = Encap{Name: "VXLAN", Segment: 5001, MACA: macA, MACB: macB, Wrap: func(ip []byte, fromA bool) []byte {
		s, d := macs(fromA)
		inner := Ethernet(s, d, nil, etherTypeOf(ip), ip)
		udp := UDP(49152, 4789, VXLAN(5001, inner))
		return Ethernet(macTA, macTB, nil, 0x0800, IPv4(tunnelA, tunnelB, 17, 0, 1, 0, false, udp))
	}}
	Geneve7000 = Encap{Name: "Geneve", Segment: 7000, MACA: macA, MACB: macB, Wrap: func(ip []byte, fromA bool) []byte {
		s, d := macs(fromA)
		inner := Ethernet(s, d, nil, etherTypeOf(ip), ip)
		udp := UDP(49153, 6081, Geneve(7000, inner))
		return Ethernet(macTA, macTB, nil, 0x0800, IPv4(tunnelA, tunnelB, 17, 0, 1, 0, false, udp))
	}}
	// ERSPAN type I: GRE without sequence number, no ERSPAN header.
	ERSPAN1 = Encap{Name: "ERSPAN I", MACA: macA, MACB: macB, Wrap: func(ip []byte, fromA bool) []byte {
		s, d := macs(fromA)
		inner := Ethernet(s, d, nil, etherTypeOf(ip), ip)
		return Ethernet(macTA, macTB, nil, 0x0800, IPv4(tunnelA, tunnelB, 47, 0, 1, 0, false, GRE(0x88be, nil, nil, inner)))
	}}
	// ERSPAN type II, session 7, source port index 42, mirrored frame in VLAN 10.
	ERSPAN2s7 = Encap{Name: "ERSPAN II", VLAN: 10, Session: 7, InIf: 42, MACA: macA, MACB: macB, Wrap: func(ip []byte, fromA bool) []byte {
		s, d := macs(fromA)
		inner := Ethernet(s, d, []Tag{{0x8100, 10}}, etherTypeOf(ip), ip)
		seq := uint32(1)
		return Ethernet(macTA, macTB, nil, 0x0800, IPv4(tunnelA, tunnelB, 47, 0, 1, 0, false, GRE(0x88be, nil, &seq, ERSPAN2(7, 10, 42, inner))))
	}}
	// ERSPAN type III (what a vSphere distributed switch sends), session 9;
	// the mirrored frame is untagged and the ERSPAN header says VLAN 20.
	ERSPAN3s9 = Encap{Name: "ERSPAN III", VLAN: 20, Session: 9, MACA: macA, MACB: macB, Wrap: func(ip []byte, fromA bool) []byte {
		s, d := macs(fromA)
		inner := Ethernet(s, d, nil, etherTypeOf(ip), ip)
		seq := uint32(1)
		return Ethernet(macTA, macTB, nil, 0x0800, IPv4(tunnelA, tunnelB, 47, 0, 1, 0, false, GRE(0x22eb, nil, &seq, ERSPAN3(9, 20, 12345, inner))))
	}}
	// GRE transparent Ethernet bridging (NVGRE-like), key 300.
	GRETEB300 = Encap{Name: "GRE TEB", Segment: 300, MACA: macA, MACB: macB, Wrap: func(ip []byte, fromA bool) []byte {
		s, d := macs(fromA)
		key := uint32(300)
		inner := Ethernet(s, d, nil, etherTypeOf(ip), ip)
		return Ethernet(macTA, macTB, nil, 0x0800, IPv4(tunnelA, tunnelB, 47, 0, 1, 0, false, GRE(0x6558, &key, nil, inner)))
	}}
	// GRE with key 77 carrying IP directly: the flow keeps the outer MACs.
	GREKey77 = Encap{Name: "GRE", Segment: 77, MACA: macTA, MACB: macTB, Wrap: func(ip []byte, fromA bool) []byte {
		key := uint32(77)
		if fromA {
			return Ethernet(macTA, macTB, nil, 0x0800, IPv4(tunnelA, tunnelB, 47, 0, 1, 0, false, GRE(etherTypeOf(ip), &key, nil, ip)))
		}
		return Ethernet(macTB, macTA, nil, 0x0800, IPv4(tunnelB, tunnelA, 47, 0, 1, 0, false, GRE(etherTypeOf(ip), &key, nil, ip)))
	}}
)

// builder accumulates packets and the expected flows.
type builder struct {
	c     Capture
	flows map[*expect]bool
}

// expect is one direction of a session: the records it must yield.
type expect struct {
	cur  Flow
	open bool
	done []Flow
}

func (b *builder) send(e *expect, enc Encap, fromA bool, at int64, ip []byte, snap int, tcpFlags uint16) {
	b.c.Packets = append(b.c.Packets, Packet{Time: at, Data: enc.Wrap(ip, fromA), SnapLen: snap})
	ms := time.Duration(at).Milliseconds()
	if !e.open {
		e.open = true
		e.cur.StartMs = ms
		e.cur.Packets, e.cur.Bytes, e.cur.TCPFlags = 0, 0, 0
	}
	e.cur.EndMs = ms
	e.cur.Packets++
	e.cur.Bytes += uint64(len(ip))
	e.cur.TCPFlags |= tcpFlags
}

// end closes the current record of e with reason.
func (e *expect) end(reason uint8) {
	if !e.open {
		return
	}
	e.cur.EndReason = reason
	e.done = append(e.done, e.cur)
	e.open = false
}

func (b *builder) dir(enc Encap, src, dst netip.Addr, sport, dport uint16, proto uint8, fromA bool) *expect {
	e := &expect{cur: Flow{Src: src, Dst: dst, SrcPort: sport, DstPort: dport, Proto: proto,
		VLAN: enc.VLAN, InnerVLAN: enc.InnerVLAN, Segment: enc.Segment, Session: enc.Session, InIf: enc.InIf}}
	if fromA {
		e.cur.SrcMAC, e.cur.DstMAC = enc.MACA, enc.MACB
	} else {
		e.cur.SrcMAC, e.cur.DstMAC = enc.MACB, enc.MACA
	}
	if b.flows == nil {
		b.flows = map[*expect]bool{}
	}
	b.flows[e] = true
	return e
}

func ipPacket(src, dst netip.Addr, proto uint8, payload []byte) []byte {
	if src.Is4() {
		return IPv4(src, dst, proto, 0, 1, 0, false, payload)
	}
	return IPv6(src, dst, proto, 0, payload)
}

const ms = int64(time.Millisecond)

// tcpSession: handshake (SYN, SYN-ACK 2 ms later, ACK 1 ms later), n data
// segments of size bytes from A each acknowledged by B, then FIN from A, FIN
// from B and the last ACK. With faults, B's second ACK advertises a zero
// window and A retransmits its first segment.
func (b *builder) tcpSession(enc Encap, t0 int64, a, bb netip.Addr, sport, dport uint16, n, size int, faults bool, snap int) {
	ab := b.dir(enc, a, bb, sport, dport, 6, true)
	ba := b.dir(enc, bb, a, dport, sport, 6, false)
	seqA, seqB := uint32(1000), uint32(5000)
	tcp := func(fromA bool, at int64, seq uint32, flags uint8, win uint16, l int) {
		e, s, d, sp, dp := ab, a, bb, sport, dport
		if !fromA {
			e, s, d, sp, dp = ba, bb, a, dport, sport
		}
		b.send(e, enc, fromA, at, ipPacket(s, d, 6, TCP(sp, dp, seq, 0, flags, win, l)), snap, uint16(flags))
	}
	tcp(true, t0, seqA, 0x02, 65535, 0)
	tcp(false, t0+2*ms, seqB, 0x12, 65535, 0)
	tcp(true, t0+3*ms, seqA+1, 0x10, 65535, 0)
	at := t0 + 4*ms
	for i := 0; i < n; i++ {
		tcp(true, at, seqA+1+uint32(i*size), 0x18, 65535, size)
		win := uint16(65535)
		if faults && i == 1 {
			win = 0
		}
		tcp(false, at+ms, seqB+1, 0x10, win, 0)
		at += 2 * ms
	}
	if faults {
		tcp(true, at, seqA+1, 0x18, 65535, size)
		at += ms
	}
	fin := seqA + 1 + uint32(n*size)
	tcp(true, at, fin, 0x11, 65535, 0)
	tcp(false, at+ms, seqB+1, 0x11, 65535, 0)
	tcp(true, at+2*ms, fin+1, 0x10, 65535, 0)
	for _, e := range []*expect{ab, ba} {
		e.cur.RTTServerUs, e.cur.RTTClientUs = 2000, 1000
	}
	ab.cur.Initiator, ba.cur.Initiator = 1, 2 // A sent the SYN, B the SYN-ACK
	if faults {
		ab.cur.Retrans = 1
		ba.cur.ZeroWindows = 1
	}
	ab.end(3)
	ba.end(3)
}

// rstSession: a SYN answered by RST-ACK; both directions end (reason 3).
func (b *builder) rstSession(enc Encap, t0 int64, a, bb netip.Addr, sport, dport uint16) {
	ab := b.dir(enc, a, bb, sport, dport, 6, true)
	ba := b.dir(enc, bb, a, dport, sport, 6, false)
	// A sent the SYN; B's direction, a RST without SYN-ACK, shows nothing.
	ab.cur.Initiator = 1
	b.send(ab, enc, true, t0, ipPacket(a, bb, 6, TCP(sport, dport, 77, 0, 0x02, 1024, 0)), 0, 0x02)
	b.send(ba, enc, false, t0+ms, ipPacket(bb, a, 6, TCP(dport, sport, 0, 78, 0x14, 0, 0)), 0, 0x14)
	ab.end(3)
	ba.end(3)
}

// udpSession: n requests from A and n answers from B.
func (b *builder) udpSession(enc Encap, t0 int64, a, bb netip.Addr, sport, dport uint16, n int) {
	ab := b.dir(enc, a, bb, sport, dport, 17, true)
	ba := b.dir(enc, bb, a, dport, sport, 17, false)
	for i := 0; i < n; i++ {
		at := t0 + int64(i)*10*ms
		b.send(ab, enc, true, at, ipPacket(a, bb, 17, UDP(sport, dport, make([]byte, 40+i))), 0, 0)
		b.send(ba, enc, false, at+ms, ipPacket(bb, a, 17, UDP(dport, sport, make([]byte, 200+3*i))), 0, 0)
	}
}

// icmpEcho: n echo requests from A and replies from B.
func (b *builder) icmpEcho(enc Encap, t0 int64, a, bb netip.Addr, n int) {
	proto, req, rep := uint8(1), uint8(8), uint8(0)
	if a.Is6() {
		proto, req, rep = 58, 128, 129
	}
	ab := b.dir(enc, a, bb, 0, 0, proto, true)
	ba := b.dir(enc, bb, a, 0, 0, proto, false)
	ab.cur.ICMPType, ba.cur.ICMPType = req, rep
	for i := 0; i < n; i++ {
		at := t0 + int64(i)*20*ms
		b.send(ab, enc, true, at, ipPacket(a, bb, proto, ICMP(req, 0, 56)), 0, 0)
		b.send(ba, enc, false, at+ms, ipPacket(bb, a, proto, ICMP(rep, 0, 56)), 0, 0)
	}
}

// fragmentedUDP: one 3000-byte datagram from A in three IPv4 fragments.
func (b *builder) fragmentedUDP(enc Encap, t0 int64, a, bb netip.Addr, sport, dport uint16) {
	e := b.dir(enc, a, bb, sport, dport, 17, true)
	dgram := UDP(sport, dport, make([]byte, 3000))
	for i, off := 0, 0; off < len(dgram); i++ {
		end := off + 1480
		if end > len(dgram) {
			end = len(dgram)
		}
		ip := IPv4(a, bb, 17, 0, 4242, uint16(off/8), end < len(dgram), dgram[off:end])
		b.send(e, enc, true, t0+int64(i)*ms, ip, 0, 0)
		off = end
	}
}

// hopByHopUDP: n IPv6 datagrams from A with a hop-by-hop options header
// (router alert) and a destination options header before UDP.
func (b *builder) hopByHopUDP(enc Encap, t0 int64, a, bb netip.Addr, sport, dport uint16, n int) {
	e := b.dir(enc, a, bb, sport, dport, 17, true)
	for i := 0; i < n; i++ {
		udp := UDP(sport, dport, make([]byte, 30+i))
		dst := append([]byte{17, 0, 1, 4, 0, 0, 0, 0}, udp...) // destination options: PadN
		hbh := append([]byte{60, 0, 5, 2, 0, 0, 1, 0}, dst...) // hop-by-hop: router alert, PadN
		b.send(e, enc, true, t0+int64(i)*ms, IPv6(a, bb, 0, 0, hbh), 0, 0)
	}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// Timeouts the ground truth of Mixed assumes.
const (
	MixedActive = 60 * time.Second
	MixedIdle   = 15 * time.Second
)

// Mixed returns a capture with one session per kind of traffic and
// encapsulation the exporter handles, and the flows it must export with
// active timeout 60 s and idle timeout 15 s. Sessions take turns in the first
// seconds; a long UDP flow (one datagram every 5 s for 145 s) crosses the
// active timeout twice; a last packet at 300 s lets every other flow reach
// its idle timeout and is itself flushed at the end of the capture.
func Mixed(base time.Time) *Capture {
	b := &builder{}
	t := base.UnixNano()
	slot := func(i int) int64 { return t + int64(i)*200*ms }
	c4, s4 := addr("10.1.0.1"), addr("10.2.0.1")
	c6, s6 := addr("2001:db8:1::1"), addr("2001:db8:2::1")
	b.tcpSession(Plain, slot(0), c4, s4, 40001, 80, 10, 1200, true, 96)
	b.udpSession(VLAN100, slot(1), addr("10.1.0.2"), addr("10.2.0.2"), 40002, 53, 3)
	b.udpSession(QinQ, slot(2), addr("10.1.0.3"), addr("10.2.0.3"), 40003, 123, 2)
	b.tcpSession(Plain, slot(3), c6, s6, 40004, 443, 5, 1000, false, 0)
	b.icmpEcho(Plain, slot(4), c6, s6, 3)
	b.icmpEcho(Plain, slot(5), c4, s4, 4)
	b.tcpSession(VXLAN5001, slot(6), addr("10.1.0.6"), addr("10.2.0.6"), 40006, 8080, 4, 800, false, 0)
	b.udpSession(ERSPAN2s7, slot(7), addr("10.1.0.7"), addr("10.2.0.7"), 40007, 514, 2)
	b.tcpSession(ERSPAN3s9, slot(8), addr("2001:db8:1::8"), addr("2001:db8:2::8"), 40008, 22, 3, 500, false, 0)
	b.icmpEcho(GREKey77, slot(9), addr("10.1.0.9"), addr("10.2.0.9"), 2)
	b.udpSession(ERSPAN1, slot(10), addr("10.1.0.10"), addr("10.2.0.10"), 40010, 161, 2)
	b.udpSession(Geneve7000, slot(11), addr("10.1.0.11"), addr("10.2.0.11"), 40011, 4739, 2)
	b.fragmentedUDP(Plain, slot(12), addr("10.1.0.12"), addr("10.2.0.12"), 40012, 9000)
	b.rstSession(Plain, slot(13), addr("10.1.0.13"), addr("10.2.0.13"), 40013, 25)
	b.udpSession(GRETEB300, slot(15), addr("10.1.0.15"), addr("10.2.0.15"), 40015, 69, 2)
	b.hopByHopUDP(Plain, slot(16), addr("2001:db8:1::16"), addr("2001:db8:2::16"), 40016, 547, 3)
	// An ARP request: not IP, counted apart.
	arp := make([]byte, 28)
	b.c.Packets = append(b.c.Packets, Packet{Time: slot(14), Data: Ethernet(macA, [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, nil, 0x0806, arp)})
	b.c.NotIP++

	// The long flow: a record every 60 s (active timeout), the last one idle.
	long := b.dir(Plain, addr("10.1.0.20"), addr("10.2.0.20"), 40020, 5000, 17, true)
	for i := 0; i < 30; i++ {
		at := t + int64(i)*5*int64(time.Second)
		if long.open && at-long.cur.StartMs*ms >= int64(MixedActive) {
			long.end(2)
		}
		b.send(long, Plain, true, at, ipPacket(addr("10.1.0.20"), addr("10.2.0.20"), 17, UDP(40020, 5000, make([]byte, 100))), 0, 0)
	}
	// The last packet, at 300 s.
	last := b.dir(Plain, addr("10.1.0.30"), addr("10.2.0.30"), 40030, 7, 17, true)
	b.send(last, Plain, true, t+300*int64(time.Second), ipPacket(addr("10.1.0.30"), addr("10.2.0.30"), 17, UDP(40030, 7, nil)), 0, 0)
	last.end(4)
	for e := range b.flows {
		e.end(1) // whatever is still open reached its idle timeout
		b.c.Flows = append(b.c.Flows, e.done...)
	}
	sort.SliceStable(b.c.Packets, func(i, j int) bool { return b.c.Packets[i].Time < b.c.Packets[j].Time })
	Sort(b.c.Flows)
	return &b.c
}
