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

// store remembers a first fragment (p holds its outer IP header's fields;
// tunnel says its inner packet was metered instead).
func (c *fragCache) store(p *Packet, id uint32, tunnel bool) {
	e := &c.slots[fragSlot(p, id)]
	*e = fragEntry{src: p.SrcAddr, dst: p.DstAddr, id: id, proto: p.Proto, used: true,
		sport: p.SrcPort, dport: p.DstPort, icmpType: p.ICMPType, icmpCode: p.ICMPCode, tunnel: tunnel}
}

// lookup gives a later fragment its first fragment's ports, and reports
// whether that first fragment's inner packet was metered (the fragment is
// then not metered).
func (c *fragCache) lookup(p *Packet, id uint32) (tunnel bool) {
	e := &c.slots[fragSlot(p, id)]
	if e.used && e.id == id && e.proto == p.Proto && e.src == p.SrcAddr && e.dst == p.DstAddr {
		p.SrcPort, p.DstPort, p.ICMPType, p.ICMPCode = e.sport, e.dport, e.icmpType, e.icmpCode
		return e.tunnel
	}
	return false
}
