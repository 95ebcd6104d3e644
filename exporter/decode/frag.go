package decode

// fragCache remembers the ports of recent first fragments so that the
// following fragments, which carry no transport header, count into the same
// flow. It is direct-mapped and fixed in size: no allocation, and an entry is
// simply overwritten by a newer packet hashing to the same slot. A fragment
// arriving before its first fragment (or after it was overwritten) is
// metered without ports.
type fragCache struct {
	slots [fragSlots]fragEntry
}

const fragSlots = 4096

type fragEntry struct {
	src, dst [16]byte
	id       uint32
	proto    uint8
	used     bool
	sport    uint16
	dport    uint16
	icmpType uint8
	icmpCode uint8
	tunnel   bool // the first fragment's tunnel was followed: its inner packet is metered
	// The inner packet's identity, when tunnel: the later fragments carry
	// it (not metered, but kept in the packet ring under its flow).
	inner innerID
}

// innerID is what names a tunnelled packet's flow.
type innerID struct {
	src, dst           [16]byte
	ipv6               bool
	proto              uint8
	sport, dport       uint16
	icmpType, icmpCode uint8
}

func fragSlot(p *Packet, id uint32) int {
	h := uint32(2166136261)
	for _, b := range p.SrcAddr {
		h = (h ^ uint32(b)) * 16777619
	}
	for _, b := range p.DstAddr {
		h = (h ^ uint32(b)) * 16777619
	}
	h = (h ^ id) * 16777619
	h = (h ^ uint32(p.Proto)) * 16777619
	return int(h % fragSlots)
}

// store remembers a first fragment (p holds its outer IP header's fields).
func (c *fragCache) store(p *Packet, id uint32) {
	e := &c.slots[fragSlot(p, id)]
	*e = fragEntry{src: p.SrcAddr, dst: p.DstAddr, id: id, proto: p.Proto, used: true,
		sport: p.SrcPort, dport: p.DstPort, icmpType: p.ICMPType, icmpCode: p.ICMPCode}
}

// storeTunnel remembers a first fragment (outer) whose tunnel was followed
// and its inner packet (inner) metered.
func (c *fragCache) storeTunnel(outer, inner *Packet, id uint32) {
	e := &c.slots[fragSlot(outer, id)]
	*e = fragEntry{src: outer.SrcAddr, dst: outer.DstAddr, id: id, proto: outer.Proto, used: true, tunnel: true,
		inner: innerID{src: inner.SrcAddr, dst: inner.DstAddr, ipv6: inner.IPv6, proto: inner.Proto,
			sport: inner.SrcPort, dport: inner.DstPort, icmpType: inner.ICMPType, icmpCode: inner.ICMPCode}}
}

// lookup gives a later fragment its first fragment's ports, and reports
// whether that first fragment's inner packet was metered: the fragment is
// then not metered, and p is given the inner packet's identity (addresses,
// protocol, ports), under which the packet ring keeps it.
func (c *fragCache) lookup(p *Packet, id uint32) (tunnel bool) {
	e := &c.slots[fragSlot(p, id)]
	if !e.used || e.id != id || e.proto != p.Proto || e.src != p.SrcAddr || e.dst != p.DstAddr {
		return false
	}
	if e.tunnel {
		in := &e.inner
		p.SrcAddr, p.DstAddr, p.IPv6, p.Proto = in.src, in.dst, in.ipv6, in.proto
		p.SrcPort, p.DstPort, p.ICMPType, p.ICMPCode = in.sport, in.dport, in.icmpType, in.icmpCode
		return true
	}
	p.SrcPort, p.DstPort, p.ICMPType, p.ICMPCode = e.sport, e.dport, e.icmpType, e.icmpCode
	return false
}
