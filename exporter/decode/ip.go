package decode

import "encoding/binary"

// IP protocol numbers the decoder follows.
const (
	protoHopByHop = 0
	protoICMP     = 1
	protoIPv4     = 4
	protoTCP      = 6
	protoUDP      = 17
	protoIPv6     = 41
	protoRouting  = 43
	protoFragment = 44
	protoGRE      = 47
	protoAH       = 51
	protoICMPv6   = 58
	protoNoNext   = 59
	protoDstOpts  = 60
	protoMobility = 135
	protoSCTP     = 132
	protoUDPLite  = 136
	protoDCCP     = 33
	protoEthernet = 143 // Ethernet in IP (RFC 8986 SRv6 End.DX2)
)

func (s *state) ipv4(data []byte, depth int) Reason {
	if depth > maxDepth {
		return ReasonTooDeep
	}
	if len(data) < 20 {
		return ReasonTruncated
	}
	if data[0]>>4 != 4 {
		return ReasonMalformed
	}
	ihl := int(data[0]&0x0f) * 4
	if ihl < 20 {
		return ReasonMalformed
	}
	if len(data) < ihl {
		return ReasonTruncated
	}
	total := int(binary.BigEndian.Uint16(data[2:]))
	if total == 0 {
		// TSO/GSO captures leave the length at zero: the packet is what the
		// frame holds.
		total = len(data) + s.extra
	}
	if total < ihl {
		return ReasonMalformed
	}
	if avail := len(data) + s.extra; s.bounded && total > avail {
		// A length beyond the frame on the wire (corrupt, or crafted to
		// swell a flow's octets): only the bytes that were there count.
		total = avail
	}
	p := s.p
	p.IPOffset = int32(s.offset(data))
	p.IPv6 = false
	p.SrcAddr, p.DstAddr = [16]byte{}, [16]byte{}
	copy(p.SrcAddr[:4], data[12:16])
	copy(p.DstAddr[:4], data[16:20])
	p.Proto = data[9]
	p.TOS = data[1]
	p.IPLength = uint32(total)
	p.Fragment, p.NonFirstFragment = false, false
	frag := binary.BigEndian.Uint16(data[6:])
	offset := frag & 0x1fff
	more := frag&0x2000 != 0
	payloadLen := total - ihl
	payload := data[ihl:]
	if len(payload) > payloadLen {
		payload = payload[:payloadLen] // Ethernet padding
	}
	p.HeaderLen = s.offset(payload)
	if offset != 0 || more {
		p.Fragment = true
		id := uint32(binary.BigEndian.Uint16(data[4:]))
		if offset != 0 {
			p.NonFirstFragment = true
			p.SrcPort, p.DstPort, p.ICMPType, p.ICMPCode = 0, 0, 0, 0
			if s.d.frags.lookup(p, id) {
				return ReasonTunnelFragment
			}
			return ReasonOK
		}
		return s.firstFragment(payload, payloadLen, depth, id)
	}
	return s.transport(payload, payloadLen, depth, true)
}

func (s *state) ipv6(data []byte, depth int) Reason {
	if depth > maxDepth {
		return ReasonTooDeep
	}
	if len(data) < 40 {
		return ReasonTruncated
	}
	if data[0]>>4 != 6 {
		return ReasonMalformed
	}
	p := s.p
	payloadLen := int(binary.BigEndian.Uint16(data[4:]))
	if payloadLen == 0 {
		// Jumbogram or TSO capture: the packet is what the frame holds.
		payloadLen = len(data) - 40 + s.extra
	} else if avail := len(data) - 40 + s.extra; s.bounded && payloadLen > avail {
		payloadLen = avail // as for IPv4: only the bytes on the wire count
	}
	p.IPv6 = true
	p.IPOffset = int32(s.offset(data))
	copy(p.SrcAddr[:], data[8:24])
	copy(p.DstAddr[:], data[24:40])
	p.TOS = uint8(binary.BigEndian.Uint16(data) >> 4)
	p.IPLength = uint32(40 + payloadLen)
	p.Fragment, p.NonFirstFragment = false, false
	next := data[6]
	payload := data[40:]
	if len(payload) > payloadLen {
		payload = payload[:payloadLen]
	}
	remaining := payloadLen
	var fragID uint32
	first := true
	for {
		switch next {
		case protoHopByHop, protoRouting, protoDstOpts, protoMobility:
			if len(payload) < 8 {
				return ReasonTruncated
			}
			l := (int(payload[1]) + 1) * 8
			if len(payload) < l {
				return ReasonTruncated
			}
			next = payload[0]
			payload, remaining = payload[l:], remaining-l
			continue
		case protoAH:
			if len(payload) < 8 {
				return ReasonTruncated
			}
			l := (int(payload[1]) + 2) * 4
			if len(payload) < l {
				return ReasonTruncated
			}
			next = payload[0]
			payload, remaining = payload[l:], remaining-l
			continue
		case protoFragment:
			if len(payload) < 8 {
				return ReasonTruncated
			}
			next = payload[0]
			off := binary.BigEndian.Uint16(payload[2:]) >> 3
			more := payload[3]&1 != 0
			if off != 0 || more {
				p.Fragment = true
				fragID = binary.BigEndian.Uint32(payload[4:])
				first = off == 0
			}
			payload, remaining = payload[8:], remaining-8
			continue
		}
		break
	}
	if remaining < 0 {
		return ReasonMalformed
	}
	p.Proto = next
	p.HeaderLen = s.offset(payload)
	if p.Fragment {
		if !first {
			p.NonFirstFragment = true
			p.SrcPort, p.DstPort, p.ICMPType, p.ICMPCode = 0, 0, 0, 0
			if s.d.frags.lookup(p, fragID) {
				return ReasonTunnelFragment
			}
			return ReasonOK
		}
		return s.firstFragment(payload, remaining, depth, fragID)
	}
	if next == protoNoNext {
		p.SrcPort, p.DstPort = 0, 0
		return ReasonOK
	}
	return s.transport(payload, remaining, depth, true)
}

// firstFragment meters the first fragment of an IP packet. When it carries
// a tunnel whose inner headers it holds (an ERSPAN or VXLAN mirror whose
// outer packets the transport network fragmented: a 1,500-byte mirrored
// frame on a 1,500-byte path), the inner packet is metered, its IP length
// counting all of it, and the fragments after it are not metered again
// (ReasonTunnelFragment). Otherwise the fragment is metered as it is, in the
// outer flow, and the following fragments join that flow.
func (s *state) firstFragment(payload []byte, payloadLen, depth int, id uint32) Reason {
	p := s.p
	switch p.Proto {
	case protoGRE, protoUDP, protoIPv4, protoIPv6, protoEthernet:
		outer := *p
		// The inner packet runs on into the next fragments: its headers
		// may end in them, as in a snapped frame.
		extra := s.extra
		s.extra += 1 << 16
		r := s.transport(payload, payloadLen, depth, true)
		s.extra = extra
		if r == ReasonOK && p.IPOffset != outer.IPOffset {
			s.d.frags.storeTunnel(&outer, p, id)
			p.TunnelInFragment = true
			return r
		}
		*p = outer // no tunnel, or not all of its headers here
	}
	r := s.transport(payload, payloadLen, depth, false)
	if r == ReasonOK {
		s.d.frags.store(p, id)
	}
	return r
}
