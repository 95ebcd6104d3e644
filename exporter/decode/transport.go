package decode

import "encoding/binary"

// transport decodes the header after IP. payloadLen is the IP payload length
// from the IP header (data may be shorter in snap-length captures). When
// tunnels is false (fragments) encapsulations are not followed.
func (s *state) transport(data []byte, payloadLen int, depth int, tunnels bool) Reason {
	p := s.p
	p.SrcPort, p.DstPort, p.ICMPType, p.ICMPCode, p.TCPFlags = 0, 0, 0, 0, 0
	switch p.Proto {
	case protoTCP:
		if len(data) < 20 {
			return s.snappedTransport(data, payloadLen, 20)
		}
		off := int(data[12]>>4) * 4
		if off < 20 || off > payloadLen {
			return ReasonMalformed
		}
		p.SrcPort = binary.BigEndian.Uint16(data)
		p.DstPort = binary.BigEndian.Uint16(data[2:])
		p.TCPSeq = binary.BigEndian.Uint32(data[4:])
		p.TCPFlags = uint16(data[12]&1)<<8 | uint16(data[13])
		p.TCPWindow = binary.BigEndian.Uint16(data[14:])
		p.Payload = uint32(payloadLen - off)
		p.HeaderLen = s.offset(data) + uint32(off)
		return ReasonOK
	case protoUDP, protoUDPLite:
		if len(data) < 8 {
			return s.snappedTransport(data, payloadLen, 8)
		}
		p.SrcPort = binary.BigEndian.Uint16(data)
		p.DstPort = binary.BigEndian.Uint16(data[2:])
		if payloadLen < 8 {
			return ReasonMalformed
		}
		p.Payload = uint32(payloadLen - 8)
		p.HeaderLen = s.offset(data) + 8
		if tunnels && p.Proto == protoUDP {
			return s.udpTunnel(data[8:], depth)
		}
		return ReasonOK
	case protoSCTP, protoDCCP:
		if len(data) < 4 {
			return ReasonTruncated
		}
		p.SrcPort = binary.BigEndian.Uint16(data)
		p.DstPort = binary.BigEndian.Uint16(data[2:])
		if p.Proto == protoSCTP {
			p.HeaderLen = s.offset(data) + 12
		}
		return ReasonOK
	case protoICMP:
		if p.IPv6 {
			return ReasonOK // ICMP for IPv4 inside IPv6: no ports, no type
		}
		if len(data) < 2 {
			return ReasonTruncated
		}
		p.ICMPType, p.ICMPCode = data[0], data[1]
		p.HeaderLen = s.offset(data) + 8
		return ReasonOK
	case protoICMPv6:
		if len(data) < 2 {
			return ReasonTruncated
		}
		p.ICMPType, p.ICMPCode = data[0], data[1]
		p.HeaderLen = s.offset(data) + 8
		return ReasonOK
	case protoGRE:
		if tunnels {
			return s.gre(data, depth)
		}
	case protoIPv4:
		if tunnels {
			p.Tunnels |= TunnelIPinIP
			return s.ipv4(data, depth+1)
		}
	case protoIPv6:
		if tunnels {
			p.Tunnels |= TunnelIPinIP
			return s.ipv6(data, depth+1)
		}
	case protoEthernet:
		if tunnels {
			p.Tunnels |= TunnelIPinIP
			return s.ethernet(data, depth+1)
		}
	}
	return ReasonOK
}

// snappedTransport meters a TCP or UDP packet whose header the capture's
// snap length cut (IPv6 TCP at 68 bytes, a tunnel mirror cut at 96): the
// ports are there, the IP header gave the length. Sequence numbers and
// windows are not read: the TCP analysis skips the packet (TCPPartial), its
// flags count when captured. Without a snap length a short header is
// truncated, as before. hdr is the header's least length.
func (s *state) snappedTransport(data []byte, payloadLen, hdr int) Reason {
	if s.extra == 0 || len(data) < 4 {
		return ReasonTruncated
	}
	if payloadLen < hdr {
		return ReasonMalformed
	}
	p := s.p
	p.SrcPort = binary.BigEndian.Uint16(data)
	p.DstPort = binary.BigEndian.Uint16(data[2:])
	if p.Proto == protoTCP {
		p.TCPPartial = true
		if len(data) >= 14 {
			p.TCPFlags = uint16(data[12]&1)<<8 | uint16(data[13])
		}
	}
	p.Payload = uint32(payloadLen - hdr)
	p.HeaderLen = s.offset(data) + uint32(len(data))
	return ReasonOK
}

// udpTunnel follows VXLAN, VXLAN-GPE, Geneve and GRE-in-UDP by destination
// port. A payload that does not look like the tunnel header stays a plain UDP
// flow.
func (s *state) udpTunnel(data []byte, depth int) Reason {
	p := s.p
	switch p.DstPort {
	case portVXLAN, portVXLANLinux:
		// Only the I flag (VNI valid) counts: RFC 7348 has the reserved
		// bits ignored on receipt (VXLAN-GBP, for one, uses them).
		if len(data) < 8 || data[0]&0x08 == 0 {
			return ReasonOK
		}
		p.Tunnels |= TunnelVXLAN
		p.SegmentID = binary.BigEndian.Uint32(data[4:]) >> 8
		return s.ethernet(data[8:], depth+1)
	case portVXLANGPE:
		if len(data) < 8 || data[0]&0x08 == 0 {
			return ReasonOK
		}
		p.Tunnels |= TunnelVXLAN
		p.SegmentID = binary.BigEndian.Uint32(data[4:]) >> 8
		return s.nextProtocol(data[3], data[8:], depth+1)
	case portGeneve:
		if len(data) < 8 || data[0]>>6 != 0 {
			return ReasonOK
		}
		l := 8 + int(data[0]&0x3f)*4
		if len(data) < l {
			return ReasonTruncated
		}
		proto := binary.BigEndian.Uint16(data[2:])
		if proto != etherTEB && proto != etherIPv4 && proto != etherIPv6 {
			return ReasonOK // not a payload we undo: a plain UDP flow
		}
		p.Tunnels |= TunnelGeneve
		p.SegmentID = binary.BigEndian.Uint32(data[4:]) >> 8
		if proto == etherTEB {
			return s.ethernet(data[l:], depth+1)
		}
		return s.etherType(proto, data[l:], depth)
	case portGREinUDP:
		return s.gre(data, depth)
	case portMPLSinUDP:
		return s.mpls(data, depth+1)
	}
	if p.SrcPort == portTeredo || p.DstPort == portTeredo {
		return s.teredo(data, depth)
	}
	return ReasonOK
}

// nshNext is the next-protocol value of NSH itself.
const nshNext = 4

// nextProtocol follows the next-protocol field of VXLAN-GPE and NSH.
func (s *state) nextProtocol(next uint8, data []byte, depth int) Reason {
	if depth > maxDepth {
		return ReasonTooDeep
	}
	switch next {
	case 1:
		return s.ipv4(data, depth)
	case 2:
		return s.ipv6(data, depth)
	case 3:
		return s.ethernet(data, depth)
	case nshNext: // NSH (RFC 8300): base, service path and context headers, their length in 4-byte words
		if len(data) < 8 {
			return ReasonTruncated
		}
		l := int(data[1]&0x3f) * 4
		if l < 8 {
			return ReasonMalformed
		}
		if len(data) < l {
			return ReasonTruncated
		}
		return s.nextProtocol(data[3], data[l:], depth+1)
	case 5:
		return s.mpls(data, depth)
	}
	return ReasonUnsupported
}

// teredo follows IPv6 in UDP (RFC 4380), after the optional authentication
// and origin indication headers. Anything else stays a plain UDP flow.
func (s *state) teredo(data []byte, depth int) Reason {
	if len(data) >= 2 && data[0] == 0 && data[1] == 1 { // authentication
		if len(data) < 4 {
			return ReasonOK
		}
		l := 4 + int(data[2]) + int(data[3]) + 9
		if len(data) < l {
			return ReasonOK
		}
		data = data[l:]
	}
	if len(data) >= 8 && data[0] == 0 && data[1] == 0 { // origin indication
		data = data[8:]
	}
	if len(data) < 40 || data[0]>>4 != 6 {
		return ReasonOK
	}
	s.p.Tunnels |= TunnelIPinIP
	return s.ipv6(data, depth+1)
}

// gre undoes GRE (RFC 2784/2890), PPTP's enhanced GRE (RFC 2637) and the
// ERSPAN types it carries. A GRE payload of unknown type stays a GRE flow of
// the outer addresses.
func (s *state) gre(data []byte, depth int) Reason {
	if depth > maxDepth {
		return ReasonTooDeep
	}
	if len(data) < 4 {
		return ReasonTruncated
	}
	p := s.p
	flags := binary.BigEndian.Uint16(data)
	proto := binary.BigEndian.Uint16(data[2:])
	version := flags & 7
	hdr := 4
	var key uint32
	hasKey := flags&0x2000 != 0
	hasSeq := flags&0x1000 != 0
	switch version {
	case 0:
		if flags&0x8000 != 0 { // checksum present
			hdr += 4
		}
		if hasKey {
			if len(data) < hdr+4 {
				return ReasonTruncated
			}
			key = binary.BigEndian.Uint32(data[hdr:])
			hdr += 4
		}
		if hasSeq {
			hdr += 4
		}
	case 1: // PPTP: key (payload length + call id) always, seq and ack optional
		if proto != etherPPP {
			return ReasonOK
		}
		hdr += 4
		if hasSeq {
			hdr += 4
		}
		if flags&0x0080 != 0 {
			hdr += 4
		}
	default:
		return ReasonOK
	}
	if len(data) < hdr {
		return ReasonTruncated
	}
	payload := data[hdr:]
	switch proto {
	case etherIPv4, etherIPv6, etherMPLS, etherTEB:
	case etherERSPAN2, etherERSPAN3:
	case etherPPP:
	case etherWCCP:
		// WCCP version 2 puts a 4-byte redirect header (service id, buckets)
		// before the redirected IPv4 packet; version 1 does not. As tshark
		// does, a payload that does not start like IPv4 has the header.
		if len(payload) < 1 {
			return ReasonTruncated
		}
		if payload[0]>>4 != 4 {
			if len(payload) < 4 {
				return ReasonTruncated
			}
			payload = payload[4:]
		}
		proto = etherIPv4
	case etherCMD:
		// Cisco MetaData in GRE: the payload's EtherType, version, length,
		// option and SGT (8 bytes), then the payload.
		if len(payload) < 8 {
			return ReasonTruncated
		}
		proto, payload = binary.BigEndian.Uint16(payload), payload[8:]
		if proto != etherIPv4 && proto != etherIPv6 && proto != etherMPLS && proto != etherTEB {
			return ReasonOK
		}
	default:
		return ReasonOK // unknown payload: meter the GRE flow itself
	}
	p.Tunnels |= TunnelGRE
	if hasKey && version == 0 {
		p.SegmentID = key
	}
	switch proto {
	case etherIPv4:
		return s.ipv4(payload, depth+1)
	case etherIPv6:
		return s.ipv6(payload, depth+1)
	case etherMPLS:
		return s.mpls(payload, depth+1)
	case etherTEB:
		return s.ethernet(payload, depth+1)
	case etherPPP:
		return s.pppFrame(payload, depth+1)
	case etherERSPAN2:
		p.Tunnels |= TunnelERSPAN
		if !hasSeq {
			// Type I: no ERSPAN header, the mirrored frame follows GRE.
			return s.ethernet(payload, depth+1)
		}
		if len(payload) < 8 {
			return ReasonTruncated
		}
		if payload[0]>>4 != 1 {
			return ReasonMalformed
		}
		vlan := binary.BigEndian.Uint16(payload) & 0x0fff
		p.ERSPANSession = binary.BigEndian.Uint16(payload[2:]) & 0x03ff
		p.InIf = binary.BigEndian.Uint32(payload[4:]) & 0x000fffff
		r := s.ethernet(payload[8:], depth+1)
		if p.VLAN == 0 {
			p.VLAN = vlan
		}
		return r
	default: // etherERSPAN3
		p.Tunnels |= TunnelERSPAN
		if len(payload) < 12 {
			return ReasonTruncated
		}
		if payload[0]>>4 != 2 {
			return ReasonMalformed
		}
		vlan := binary.BigEndian.Uint16(payload) & 0x0fff
		p.ERSPANSession = binary.BigEndian.Uint16(payload[2:]) & 0x03ff
		last := binary.BigEndian.Uint16(payload[10:])
		frameType := (last >> 10) & 0x1f
		l := 12
		if last&1 != 0 { // O flag: 8-byte platform specific subheader
			l += 8
		}
		if len(payload) < l {
			return ReasonTruncated
		}
		var r Reason
		switch frameType {
		case 0: // Ethernet
			r = s.ethernet(payload[l:], depth+1)
		case 2: // IP packet
			r = s.rawIP(payload[l:], depth+1)
		default:
			return ReasonUnsupported
		}
		if p.VLAN == 0 {
			p.VLAN = vlan
		}
		return r
	}
}
