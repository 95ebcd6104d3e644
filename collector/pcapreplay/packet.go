package pcapreplay

import (
	"encoding/binary"
	"net/netip"
)

// The frame parser: from the link layer to the UDP payload, without
// allocating. It reads what flow datagrams come in: Ethernet (802.1Q and
// QinQ tags), Linux cooked captures, BSD loopback and raw IP, then IPv4
// (options, fragments) or IPv6 (hop-by-hop, routing and destination
// options headers), then UDP. Tunnels are not entered: a datagram is the
// UDP payload of the outermost IP packet. It is spanflow's own so that the binary does
// not initialise gopacket's layer tables at every start (about 5 ms of CPU);
// its test compares it with gopacket on every capture of the test data.

// LINKTYPE_* values the parser reads.
const (
	linkNull     = 0
	linkEthernet = 1
	linkRaw      = 101
	linkRawBSD   = 12 // DLT_RAW on some systems
	linkRawOpen  = 14 // DLT_RAW on OpenBSD
	linkLoop     = 108
	linkSLL      = 113
	linkIPv4     = 228
	linkIPv6     = 229
)

// ipPacket is the IP packet of a frame: its addresses, fragment fields
// and payload (trimmed to the IP length).
type ipPacket struct {
	src, dst   netip.Addr
	proto      uint8
	id         uint16 // IPv4 identification
	fragOffset uint16 // IPv4, in 8-byte units
	moreFrags  bool   // IPv4
	dontFrag   bool   // IPv4
	payload    []byte
}

// fragment says whether the packet is one IPv4 fragment of a datagram.
func (p *ipPacket) fragment() bool { return p.moreFrags || p.fragOffset != 0 }

// parseFrame finds the IP packet of a frame of link type link; ok is false
// when there is none that decodes.
func parseFrame(link uint32, data []byte, p *ipPacket) (ok bool) {
	var etherType uint16
	switch link {
	case linkEthernet:
		if len(data) < 14 {
			return false
		}
		etherType, data = binary.BigEndian.Uint16(data[12:]), data[14:]
	case linkSLL:
		if len(data) < 16 {
			return false
		}
		etherType, data = binary.BigEndian.Uint16(data[14:]), data[16:]
	case linkNull, linkLoop:
		if len(data) < 4 {
			return false
		}
		// The family is in the byte order of the capturing host.
		family := binary.BigEndian.Uint32(data)
		if family > 0xff {
			family = binary.LittleEndian.Uint32(data)
		}
		data = data[4:]
		switch family {
		case 2:
			return parseIPv4(data, p)
		case 10, 24, 28, 30: // AF_INET6 of Linux, the BSDs, FreeBSD, Darwin
			return parseIPv6(data, p)
		}
		return false
	case linkRaw, linkRawBSD, linkRawOpen:
		if len(data) == 0 {
			return false
		}
		switch data[0] >> 4 {
		case 4:
			return parseIPv4(data, p)
		case 6:
			return parseIPv6(data, p)
		}
		return false
	case linkIPv4:
		return parseIPv4(data, p)
	case linkIPv6:
		return parseIPv6(data, p)
	default:
		return false
	}
	for etherType == 0x8100 || etherType == 0x88a8 { // 802.1Q, QinQ
		if len(data) < 4 {
			return false
		}
		etherType, data = binary.BigEndian.Uint16(data[2:]), data[4:]
	}
	switch etherType {
	case 0x0800:
		return parseIPv4(data, p)
	case 0x86dd:
		return parseIPv6(data, p)
	}
	return false
}

// parseIPv4 reads an IPv4 header; a header that does not add up is no
// packet. Padding after the IP length is cut off; a packet cut short by
// the snap length keeps what was captured.
func parseIPv4(data []byte, p *ipPacket) bool {
	if len(data) < 20 {
		return false
	}
	ihl := int(data[0]&0x0f) * 4
	length := int(binary.BigEndian.Uint16(data[2:]))
	if length == 0 { // TCP segmentation offload: the length is the frame's
		length = len(data)
	}
	if length < 20 || ihl < 20 || ihl > length || ihl > len(data) {
		return false
	}
	data = data[:min(length, len(data))]
	flags := binary.BigEndian.Uint16(data[6:])
	*p = ipPacket{
		src:        netip.AddrFrom4([4]byte(data[12:16])),
		dst:        netip.AddrFrom4([4]byte(data[16:20])),
		proto:      data[9],
		id:         binary.BigEndian.Uint16(data[4:]),
		fragOffset: flags & 0x1fff,
		moreFrags:  flags&0x2000 != 0,
		dontFrag:   flags&0x4000 != 0,
		payload:    data[ihl:],
	}
	return true
}

// parseIPv6 reads an IPv6 header and the extension headers before the
// transport; a fragment header ends the walk (fragments of IPv6 are not
// reassembled: proto is then 44).
func parseIPv6(data []byte, p *ipPacket) bool {
	if len(data) < 40 {
		return false
	}
	end := 40 + int(binary.BigEndian.Uint16(data[4:]))
	*p = ipPacket{
		src:   netip.AddrFrom16([16]byte(data[8:24])),
		dst:   netip.AddrFrom16([16]byte(data[24:40])),
		proto: data[6],
	}
	data = data[:min(end, len(data))][40:]
	for {
		switch p.proto {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(data) < 8 {
				return false
			}
			n := 8 + int(data[1])*8
			if n > len(data) {
				return false
			}
			p.proto, data = data[0], data[n:]
			continue
		}
		break
	}
	p.payload = data
	return true
}

// udpDatagram returns the ports and payload of a UDP datagram (IP payload
// data); ok is false when it is shorter than a UDP header or its length
// field is less than one. A datagram cut short keeps what was captured.
func udpDatagram(data []byte) (src, dst uint16, payload []byte, ok bool) {
	if len(data) < 8 {
		return 0, 0, nil, false
	}
	src, dst = binary.BigEndian.Uint16(data), binary.BigEndian.Uint16(data[2:])
	switch n := int(binary.BigEndian.Uint16(data[4:])); {
	case n >= 8:
		payload = data[8:min(n, len(data))]
	case n == 0: // a jumbogram: the rest of the packet
		payload = data[8:]
	default:
		return 0, 0, nil, false
	}
	return src, dst, payload, true
}
