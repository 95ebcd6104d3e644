package sflow

import (
	"encoding/binary"
	"net/netip"

	"github.com/spanflow/spanflow/internal/flow"
)

// sFlow header_protocol values (SFLOW-STRUCTS5.txt) that spanflow decodes.
const (
	headerEthernet = 1
	headerPPP      = 7
	headerIPv4     = 11
	headerIPv6     = 12
	headerMPLS     = 13
	headerPOS      = 14
)

func supportedHeader(proto uint32) bool {
	switch proto {
	case headerEthernet, headerPPP, headerIPv4, headerIPv6, headerMPLS, headerPOS:
		return true
	}
	return false
}

// decodeHeader fills r from a sampled packet header of the given
// header_protocol. Sampled headers are cut at the agent's header size (128
// bytes by default), often inside the transport header: what was read is
// kept, and r says which ports and flags were not (NoPorts, NoTCPFlags).
// It reports false when not even the first header could be read.
func decodeHeader(r *flow.Record, proto uint32, b []byte) bool {
	switch proto {
	case headerEthernet:
		return decodeEthernet(r, b, 0)
	case headerIPv4:
		return decodeIPv4(r, b)
	case headerIPv6:
		return decodeIPv6(r, b)
	case headerMPLS:
		return decodeMPLS(r, b, 0)
	case headerPPP, headerPOS:
		return decodeHDLC(r, b)
	}
	return false
}

// Ethernet types of the encapsulations a sampled frame may carry between
// its MAC header and its IP header.
const (
	etherIPv4   = 0x0800
	etherIPv6   = 0x86dd
	etherVLAN   = 0x8100
	etherQinQ   = 0x88a8
	etherQinQ2  = 0x9100 // pre-standard QinQ
	etherMPLS   = 0x8847
	etherMPLSMc = 0x8848
	etherPPPoE  = 0x8864 // PPPoE session stage
	etherETag   = 0x893f // 802.1BR E-Tag: 6 bytes after the type
	etherVNTag  = 0x8926 // Cisco VN-Tag (FEX): 4 bytes after the type

	pppIPv4 = 0x0021
	pppIPv6 = 0x0057
	pppMPLS = 0x0281
)

// maxNesting bounds the encapsulations read in one header (a crafted
// sample could nest MPLS in Ethernet in MPLS... within its 128 bytes).
const maxNesting = 8

func decodeEthernet(r *flow.Record, b []byte, depth int) bool {
	if len(b) < 14 {
		return false
	}
	if depth == 0 {
		r.DstMAC, r.SrcMAC = flow.MAC(b[0:6]), flow.MAC(b[6:12])
	}
	decodeEtherType(r, binary.BigEndian.Uint16(b[12:]), b[14:], depth)
	return true
}

// decodeEtherType reads what follows an Ethernet type: VLAN tags (the
// first two kept as the VLAN and the inner VLAN), port extender tags,
// PPPoE, MPLS, then IPv4 or IPv6. What the sample cut short is left out.
func decodeEtherType(r *flow.Record, typ uint16, b []byte, depth int) {
	vlans := 0
	for ; depth < maxNesting; depth++ {
		switch typ {
		case etherVLAN, etherQinQ, etherQinQ2:
			if len(b) < 4 {
				return
			}
			id := binary.BigEndian.Uint16(b) & 0xfff
			switch vlans {
			case 0:
				r.VLAN = id
			case 1:
				r.InnerVLAN = id
			}
			vlans++
			typ, b = binary.BigEndian.Uint16(b[2:]), b[4:]
		case etherETag, etherVNTag:
			n := 6
			if typ == etherVNTag {
				n = 4
			}
			if len(b) < n+2 {
				return
			}
			typ, b = binary.BigEndian.Uint16(b[n:]), b[n+2:]
		case etherPPPoE:
			// version/type, code, session id, length, then PPP's protocol.
			if len(b) < 8 || b[0] != 0x11 || b[1] != 0 {
				return
			}
			decodePPP(r, binary.BigEndian.Uint16(b[6:]), b[8:], depth+1)
			return
		case etherMPLS, etherMPLSMc:
			decodeMPLS(r, b, depth+1)
			return
		case etherIPv4:
			decodeIPv4(r, b)
			return
		case etherIPv6:
			decodeIPv6(r, b)
			return
		default:
			return
		}
	}
}

// decodeMPLS pops labels down to the bottom of the stack and reads the
// payload as IPv4 or IPv6 by its version nibble (MPLS does not say what
// it carries); a pseudowire's Ethernet payload (after a control word whose
// first nibble is 0) is read as a frame. It reports false when not even
// the first label could be read.
func decodeMPLS(r *flow.Record, b []byte, depth int) bool {
	if len(b) < 4 {
		return false
	}
	for len(b) >= 4 {
		bottom := b[2]&1 == 1
		b = b[4:]
		if bottom {
			break
		}
		if len(b) < 4 {
			return true // the stack goes on past what was sampled
		}
	}
	if len(b) == 0 || depth >= maxNesting {
		return true
	}
	switch b[0] >> 4 {
	case 4:
		decodeIPv4(r, b)
	case 6:
		decodeIPv6(r, b)
	case 0:
		// A pseudowire control word (RFC 4385), then an Ethernet frame.
		if len(b) >= 4+14 {
			decodeEthernet(r, b[4:], depth+1)
		}
	}
	return true
}

// decodePPP reads the payload of a PPP frame of the given protocol.
func decodePPP(r *flow.Record, proto uint16, b []byte, depth int) {
	switch proto {
	case pppIPv4:
		decodeIPv4(r, b)
	case pppIPv6:
		decodeIPv6(r, b)
	case pppMPLS:
		decodeMPLS(r, b, depth)
	}
}

// decodeHDLC reads a PPP header (header protocols PPP and POS), with or
// without the HDLC-like address and control bytes (RFC 1662) and with a
// compressed one-byte protocol field, or a Cisco HDLC header (POS links of
// Cisco routers: address 0x0f or 0x8f, control 0, then an Ethernet type).
func decodeHDLC(r *flow.Record, b []byte) bool {
	if len(b) < 4 {
		return false
	}
	if (b[0] == 0x0f || b[0] == 0x8f) && b[1] == 0 {
		decodeEtherType(r, binary.BigEndian.Uint16(b[2:]), b[4:], 0)
		return true
	}
	if b[0] == 0xff && b[1] == 0x03 {
		b = b[2:]
	}
	if b[0]&1 == 1 { // protocol field compressed to one byte
		decodePPP(r, uint16(b[0]), b[1:], 0)
		return true
	}
	if len(b) < 2 {
		return false
	}
	decodePPP(r, binary.BigEndian.Uint16(b), b[2:], 0)
	return true
}

func decodeIPv4(r *flow.Record, b []byte) bool {
	if len(b) < 20 || b[0]>>4 != 4 {
		return false
	}
	ihl := int(b[0]&0xf) * 4
	if ihl < 20 || ihl > len(b) {
		return false
	}
	r.TOS = b[1]
	r.Bytes = uint64(binary.BigEndian.Uint16(b[2:]))
	r.Proto = b[9]
	r.SrcAddr, r.DstAddr = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
	later := binary.BigEndian.Uint16(b[6:])&0x1fff != 0 // not the first fragment: no transport header
	decodeTransport(r, b[ihl:], later)
	return true
}

func decodeIPv6(r *flow.Record, b []byte) bool {
	if len(b) < 40 || b[0]>>4 != 6 {
		return false
	}
	r.TOS = uint8(binary.BigEndian.Uint16(b) >> 4)
	r.Bytes = uint64(binary.BigEndian.Uint16(b[4:])) + 40
	r.SrcAddr, r.DstAddr = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
	next := b[6]
	b = b[40:]
	later := false
	// Skip the extension headers that can precede the transport header.
	for hops := 0; hops < 8; hops++ {
		var n int
		switch next {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(b) < 2 {
				r.Proto = next
				return true
			}
			n = (int(b[1]) + 1) * 8
		case 44: // fragment
			if len(b) < 8 {
				r.Proto = next
				return true
			}
			later = later || binary.BigEndian.Uint16(b[2:])>>3 != 0
			n = 8
		case 51: // authentication header
			if len(b) < 2 {
				r.Proto = next
				return true
			}
			n = (int(b[1]) + 2) * 4
		default:
			r.Proto = next
			decodeTransport(r, b, later)
			return true
		}
		next = b[0]
		if n > len(b) {
			r.Proto = next
			decodeTransport(r, nil, later)
			return true
		}
		b = b[n:]
	}
	r.Proto = next
	return true
}

// decodeTransport reads ports (the first 4 bytes of TCP, UDP, SCTP, DCCP
// and UDP-Lite), TCP flags (bytes 12-13) and ICMP type and code from what
// the sample kept of the transport header.
func decodeTransport(r *flow.Record, b []byte, laterFragment bool) {
	switch r.Proto {
	case 6, 17, 33, 132, 136:
		if laterFragment || len(b) < 4 {
			r.NoPorts = true
			r.NoTCPFlags = r.Proto == 6
			return
		}
		r.SrcPort, r.DstPort = binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])
		if r.Proto == 6 {
			if len(b) < 14 {
				r.NoTCPFlags = true
				return
			}
			r.TCPFlags = uint16(b[13]) | uint16(b[12]&1)<<8 // FIN..CWR, then NS
		}
	case 1, 58:
		if laterFragment || len(b) < 2 {
			r.NoPorts = true
			return
		}
		r.ICMPType, r.ICMPCode = b[0], b[1]
	}
}
