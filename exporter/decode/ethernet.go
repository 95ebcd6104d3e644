package decode

import "encoding/binary"

// EtherTypes the decoder follows.
const (
	etherIPv4     = 0x0800
	etherIPv6     = 0x86dd
	etherVLAN     = 0x8100
	etherQinQ     = 0x88a8
	etherQinQOld  = 0x9100
	etherMPLS     = 0x8847
	etherMPLSMc   = 0x8848
	etherPPPoE    = 0x8864
	etherTEB      = 0x6558 // transparent Ethernet bridging (GRE, Geneve)
	etherERSPAN2  = 0x88be // ERSPAN type I and II (GRE protocol type)
	etherERSPAN3  = 0x22eb
	etherPBB      = 0x88e7 // 802.1ah provider backbone bridging (MAC-in-MAC)
	etherCFP      = 0x8903 // Cisco FabricPath: a 2-byte tag, then the inner frame
	etherCMD      = 0x8909 // Cisco MetaData (security group tag)
	etherPPP      = 0x880b // PPTP's enhanced GRE carries PPP
	etherNSH      = 0x894f // network service header (RFC 8300) over Ethernet
	etherETag     = 0x893f // 802.1BR E-Tag: 6 bytes after the TPID
	etherVNTag    = 0x8926 // Cisco VN-Tag: 4 bytes after the TPID
	etherWCCP     = 0x883e // WCCP redirection in GRE
	pppIPv4       = 0x0021
	pppIPv6       = 0x0057
	pppMPLS       = 0x0281
	ethHeaderSize = 14
)

// ethernet decodes an Ethernet II header and its 802.1Q/802.1ad tags. The
// VLAN ids describe the innermost Ethernet frame: each Ethernet header resets
// them, so a mirrored frame's own tags win over the transport's.
func (s *state) ethernet(data []byte, depth int) Reason {
	if depth > maxDepth {
		return ReasonTooDeep
	}
	if len(data) < ethHeaderSize {
		return ReasonTruncated
	}
	p := s.p
	p.EthOffset = int32(s.offset(data))
	copy(p.DstMAC[:], data[0:6])
	copy(p.SrcMAC[:], data[6:12])
	p.VLAN, p.InnerVLAN = 0, 0
	et := binary.BigEndian.Uint16(data[12:])
	data = data[ethHeaderSize:]
	if isTag(et) {
		var r Reason
		if et, data, r = s.tags(et, data); r != ReasonOK {
			return r
		}
	}
	if et < 0x0600 { // 802.3 length field: LLC frames (STP, CDP...) carry no IP here
		return ReasonNotIP
	}
	if et == etherCFP {
		if len(data) < 2 {
			return ReasonTruncated
		}
		return s.ethernet(data[2:], depth+1)
	}
	if et == etherPBB {
		// I-TAG: flags and the 24-bit service id, then the customer frame.
		if len(data) < 4 {
			return ReasonTruncated
		}
		p.SegmentID = binary.BigEndian.Uint32(data) & 0x00ffffff
		return s.ethernet(data[4:], depth+1)
	}
	return s.etherType(et, data, depth)
}

// isTag reports whether an EtherType is the TPID of a tag: 802.1Q,
// 802.1ad (and its older 0x9100), 802.1BR E-Tag, Cisco VN-Tag.
func isTag(et uint16) bool {
	return et == etherVLAN || et == etherQinQ || et == etherQinQOld || et == etherETag || et == etherVNTag
}

// tags reads the tags that start with TPID et: the first two VLAN ids
// become the packet's VLAN and InnerVLAN; port extender tags (802.1BR
// E-Tag, Cisco VN-Tag) name the port of a fabric extender, not a VLAN, and
// are skipped wherever they sit among them. It returns the EtherType after
// the tags and what follows it.
func (s *state) tags(et uint16, data []byte) (uint16, []byte, Reason) {
	p := s.p
	tags := 0
	for {
		if et == etherETag || et == etherVNTag {
			l := 6
			if et == etherVNTag {
				l = 4
			}
			if len(data) < l+2 {
				return 0, nil, ReasonTruncated
			}
			et = binary.BigEndian.Uint16(data[l:])
			data = data[l+2:]
			continue
		}
		if et != etherVLAN && et != etherQinQ && et != etherQinQOld {
			return et, data, ReasonOK
		}
		if len(data) < 4 {
			return 0, nil, ReasonTruncated
		}
		vid := binary.BigEndian.Uint16(data) & 0x0fff
		switch tags {
		case 0:
			p.VLAN = vid
		case 1:
			p.InnerVLAN = vid
		}
		tags++
		et = binary.BigEndian.Uint16(data[2:])
		data = data[4:]
	}
}

// etherType dispatches on an EtherType (also used as GRE protocol type, and
// the protocol of Linux cooked and Cisco HDLC captures, where the tags of a
// VLAN-tagged frame come after it as they do in Ethernet).
func (s *state) etherType(et uint16, data []byte, depth int) Reason {
	switch et {
	case etherVLAN, etherQinQ, etherQinQOld, etherETag, etherVNTag:
		et, data, r := s.tags(et, data)
		if r != ReasonOK {
			return r
		}
		return s.etherType(et, data, depth)
	case etherIPv4:
		return s.ipv4(data, depth+1)
	case etherIPv6:
		return s.ipv6(data, depth+1)
	case etherMPLS, etherMPLSMc:
		return s.mpls(data, depth+1)
	case etherPPPoE:
		// Version/type, code, session id and length, then the PPP
		// protocol field (RFC 2516): no address and control bytes.
		if len(data) < 6 {
			return ReasonTruncated
		}
		return s.pppProtocol(data[6:], depth+1)
	case etherNSH:
		return s.nextProtocol(nshNext, data, depth+1)
	}
	return ReasonNotIP
}

// pppFrame decodes a PPP frame whose address and control bytes (0xff 0x03)
// may have been omitted (RFC 1661 address-and-control-field compression).
func (s *state) pppFrame(data []byte, depth int) Reason {
	if len(data) >= 2 && data[0] == 0xff && data[1] == 0x03 {
		data = data[2:]
	}
	return s.pppProtocol(data, depth)
}

// pppProtocol decodes a PPP protocol field and what it carries. The field
// is one byte when its first byte is odd (RFC 1661 protocol-field
// compression: 0x21 for IPv4), two otherwise.
func (s *state) pppProtocol(data []byte, depth int) Reason {
	if len(data) < 1 {
		return ReasonTruncated
	}
	var proto uint16
	if data[0]&1 == 1 {
		proto, data = uint16(data[0]), data[1:]
	} else {
		if len(data) < 2 {
			return ReasonTruncated
		}
		proto, data = binary.BigEndian.Uint16(data), data[2:]
	}
	switch proto {
	case pppIPv4:
		return s.ipv4(data, depth)
	case pppIPv6:
		return s.ipv6(data, depth)
	case pppMPLS:
		return s.mpls(data, depth)
	}
	return ReasonNotIP
}

// mpls pops labels to the bottom of the stack, then guesses the payload from
// its first nibble as routers do: 4 IPv4, 6 IPv6, 0 a pseudowire control
// word followed by Ethernet.
func (s *state) mpls(data []byte, depth int) Reason {
	if depth > maxDepth {
		return ReasonTooDeep
	}
	s.p.Tunnels |= TunnelMPLS
	for {
		if len(data) < 4 {
			return ReasonTruncated
		}
		bottom := data[2]&1 == 1
		data = data[4:]
		if bottom {
			break
		}
	}
	if len(data) < 1 {
		return ReasonTruncated
	}
	switch data[0] >> 4 {
	case 4:
		return s.ipv4(data, depth+1)
	case 6:
		return s.ipv6(data, depth+1)
	case 0:
		if len(data) < 4 {
			return ReasonTruncated
		}
		return s.ethernet(data[4:], depth+1)
	}
	return ReasonUnsupported
}
