// Package decode is the exporter's second stage: it turns one captured frame
// into the fields the meter keys and counts flows on. Tunnels are undone
// (802.1Q/QinQ, port extender tags, MPLS, PPPoE, GRE, WCCP, ERSPAN I/II/III,
// VXLAN, VXLAN-GPE, Geneve, NSH, IP in IP)
// so that a Packet describes the innermost IP packet, while the outer context
// that tells mirrored traffic apart is kept: VXLAN/Geneve VNI or GRE key, the
// ERSPAN session and port index, VLAN tags.
//
// The parsers are hand-written in the spirit of gopacket's DecodingLayerParser
// with preallocated layers: one Decoder and one Packet are reused for every
// frame, and decoding allocates nothing.
package decode

import "encoding/binary"

// Link types of the captures the decoder reads (pcap LINKTYPE_* values).
const (
	LinkNull     uint32 = 0   // BSD loopback: 4-byte host-order address family
	LinkEthernet uint32 = 1   // Ethernet II
	LinkPPP      uint32 = 9   // PPP (RFC 1661), with or without address and control
	LinkCHDLC    uint32 = 104 // Cisco HDLC: address, control, then an EtherType
	LinkRaw      uint32 = 101 // raw IPv4 or IPv6
	LinkLoop     uint32 = 108 // OpenBSD loopback: 4-byte network-order family
	LinkSLL      uint32 = 113 // Linux cooked capture v1
	LinkIPv4     uint32 = 228 // raw IPv4
	LinkIPv6     uint32 = 229 // raw IPv6
	LinkNFLog    uint32 = 239 // Linux netfilter NFLOG
	LinkSLL2     uint32 = 276 // Linux cooked capture v2
	linkRawAlt1  uint32 = 12  // raw IP on some systems
	linkRawAlt2  uint32 = 14
)

// Tunnel flags record which encapsulations were undone for a packet.
const (
	TunnelGRE uint16 = 1 << iota
	TunnelERSPAN
	TunnelVXLAN
	TunnelGeneve
	TunnelIPinIP
	TunnelMPLS
)

// Packet is what the decoder extracts from one frame. Addresses are 16 bytes;
// an IPv4 address occupies the first 4 (IPv6 false).
type Packet struct {
	SrcAddr, DstAddr [16]byte
	IPv6             bool
	Proto            uint8
	TOS              uint8 // IPv4 TOS byte or IPv6 traffic class
	SrcPort, DstPort uint16
	ICMPType         uint8
	ICMPCode         uint8
	TCPFlags         uint16 // the 9 flag bits NS..FIN (RFC 7125 tcpControlBits)
	TCPSeq           uint32
	TCPWindow        uint16
	// TCPPartial: the capture's snap length cut the TCP header before its
	// sequence number or window; the ports (and the flags, when captured)
	// are known, the TCP analysis skips the packet.
	TCPPartial bool
	// Payload is the length of the transport payload, from the IP length (so
	// it is right in snap-length captures); TCP sequence tracking uses it.
	Payload uint32
	// IPLength is the length of the innermost IP packet from its header: what
	// octetDeltaCount counts.
	IPLength uint32

	// Fragment is set for every fragment; NonFirstFragment for those without
	// transport header, whose ports the decoder takes from the first fragment
	// when it saw it.
	Fragment, NonFirstFragment bool
	// TunnelInFragment: the packet is a tunnel's inner packet, decoded from
	// the first fragment of the outer packet (it runs on into the next
	// fragments; distribution does not strip the tunnel of such a frame).
	TunnelInFragment bool

	// HeaderLen is how many bytes of the frame run up to the end of the
	// innermost transport header (TCP with options, UDP, SCTP's common
	// header, ICMP's 8 bytes), or of the innermost IP header for fragments
	// and other protocols: what a headers-only packet ring keeps.
	HeaderLen uint32

	SrcMAC, DstMAC [6]byte // innermost Ethernet header; zero on raw IP links
	VLAN           uint16  // outer (or only) 802.1Q VLAN id of the innermost Ethernet frame
	InnerVLAN      uint16  // customer VLAN id (QinQ C-tag)
	SegmentID      uint32  // VXLAN/Geneve VNI or GRE key of the innermost tunnel having one
	ERSPANSession  uint16  // ERSPAN session id (observationPointId)
	InIf           uint32  // ERSPAN II source port index, or SLL2 interface index; 0 = unknown
	Tunnels        uint16  // Tunnel* flags

	// EthOffset and IPOffset are where the innermost Ethernet header and
	// the innermost IP header begin in the frame (EthOffset is 0 on links
	// without Ethernet): distribution strips a mirror's tunnel headers and
	// deduplicates on the inner packet with them.
	EthOffset, IPOffset int32
}

// Reason says why a frame yielded no packet; ReasonOK when it did.
type Reason uint8

// Reasons a frame is not metered. Each is counted by the pipeline.
const (
	ReasonOK          Reason = iota
	ReasonTruncated          // a header runs past the captured bytes
	ReasonMalformed          // a header field is impossible (bad version, length)
	ReasonNotIP              // a valid frame that carries no IP packet (ARP, LLDP...)
	ReasonUnsupported        // a link type or encapsulation the decoder does not know
	ReasonTooDeep            // more nested encapsulations than maxDepth
	// ReasonTunnelFragment: a later fragment of a tunnel packet whose
	// inner packet was metered, whole, from its first fragment. The
	// Packet holds the inner packet's addresses, protocol and ports (the
	// packet ring keeps the fragment under that flow).
	ReasonTunnelFragment
	reasonCount
)

// Reasons lists every non-OK reason, for metrics.
var Reasons = []Reason{ReasonTruncated, ReasonMalformed, ReasonNotIP, ReasonUnsupported, ReasonTooDeep, ReasonTunnelFragment}

func (r Reason) String() string {
	switch r {
	case ReasonOK:
		return "ok"
	case ReasonTruncated:
		return "truncated"
	case ReasonMalformed:
		return "malformed"
	case ReasonNotIP:
		return "not_ip"
	case ReasonUnsupported:
		return "unsupported"
	case ReasonTooDeep:
		return "too_deep"
	case ReasonTunnelFragment:
		return "tunnel_fragment"
	}
	return "unknown"
}

// maxDepth bounds nested encapsulations (a crafted frame could nest GRE in
// GRE until the end of its bytes).
const maxDepth = 8

// UDP ports whose payload is a tunnel.
const (
	portVXLAN      = 4789
	portVXLANLinux = 8472 // Linux kernel's historical VXLAN port
	portVXLANGPE   = 4790
	portGeneve     = 6081
	portGREinUDP   = 4754
	portMPLSinUDP  = 6635
	portTeredo     = 3544
)

// Decoder decodes frames; it keeps the fragment cache, so use one per
// goroutine. The zero value is not ready: use New.
type Decoder struct {
	frags fragCache
}

// New returns a decoder.
func New() *Decoder { return &Decoder{} }

// WireUnknown, as Decode's wireLen, says that the frame's length on the wire
// is not known: a packet section exported without its frame size. The IP
// header's length then counts as it stands.
const WireUnknown = -1

// Decode fills p from one frame of the given link type. wireLen is the frame's
// length on the wire (which may exceed len(data) in snap-length captures), or
// WireUnknown. It gives the length of an IP header without one (TSO/GSO and
// jumbograms), lets a snapped TCP or UDP header be metered, and bounds an IP
// length larger than the frame (corrupt, or crafted to swell a flow) to the
// bytes that were on the wire. p is reset first.
func (d *Decoder) Decode(link uint32, data []byte, wireLen int, p *Packet) Reason {
	*p = Packet{}
	st := state{d: d, p: p, extra: wireLen - len(data), frameCap: cap(data), bounded: wireLen >= 0}
	if st.extra < 0 {
		st.extra = 0
	}
	switch link {
	case LinkEthernet:
		return st.ethernet(data, 0)
	case LinkRaw, LinkIPv4, LinkIPv6, linkRawAlt1, linkRawAlt2:
		return st.rawIP(data, 0)
	case LinkSLL:
		if len(data) < 16 {
			return ReasonTruncated
		}
		if binary.BigEndian.Uint16(data[2:]) == 6 && binary.BigEndian.Uint16(data[4:]) >= 6 { // ARPHRD_ETHER
			copy(p.SrcMAC[:], data[6:12])
		}
		return st.etherType(binary.BigEndian.Uint16(data[14:]), data[16:], 0)
	case LinkSLL2:
		if len(data) < 20 {
			return ReasonTruncated
		}
		if binary.BigEndian.Uint16(data[8:]) == 1 && data[11] >= 6 { // ARPHRD_ETHER
			copy(p.SrcMAC[:], data[12:18])
		}
		p.InIf = binary.BigEndian.Uint32(data[4:]) // the capturing interface's index
		return st.etherType(binary.BigEndian.Uint16(data[0:]), data[20:], 0)
	case LinkNull, LinkLoop:
		if len(data) < 4 {
			return ReasonTruncated
		}
		return st.rawIP(data[4:], 0)
	case LinkNFLog:
		return st.nflog(data)
	case LinkCHDLC:
		if len(data) < 4 {
			return ReasonTruncated
		}
		return st.etherType(binary.BigEndian.Uint16(data[2:]), data[4:], 0)
	case LinkPPP:
		return st.pppFrame(data, 0)
	}
	return ReasonUnsupported
}

// state is one decoding in progress.
type state struct {
	d *Decoder
	p *Packet
	// extra is how many bytes of the frame were not captured; an IP header
	// without a length (TSO, jumbogram) spans what was captured plus extra.
	extra int
	// bounded: the frame's length on the wire is known, and no IP length
	// may run beyond it.
	bounded bool
	// frameCap is the capacity of the frame's slice: every slice the
	// parsers take of it shares its end, so cap tells a slice's offset.
	frameCap int
}

// offset is where b starts in the frame.
func (s *state) offset(b []byte) uint32 { return uint32(s.frameCap - cap(b)) }

func (s *state) rawIP(data []byte, depth int) Reason {
	if len(data) < 1 {
		return ReasonTruncated
	}
	switch data[0] >> 4 {
	case 4:
		return s.ipv4(data, depth)
	case 6:
		return s.ipv6(data, depth)
	}
	return ReasonMalformed
}

// nflog walks the NFLOG TLVs to the payload attribute (raw IP).
func (s *state) nflog(data []byte) Reason {
	if len(data) < 4 {
		return ReasonTruncated
	}
	data = data[4:]
	for len(data) >= 4 {
		l := int(binary.LittleEndian.Uint16(data))
		typ := binary.LittleEndian.Uint16(data[2:])
		if l < 4 {
			return ReasonMalformed
		}
		if l > len(data) {
			return ReasonTruncated
		}
		if typ == 9 { // NFULA_PAYLOAD
			return s.rawIP(data[4:l], 0)
		}
		l = (l + 3) &^ 3
		if l > len(data) {
			break
		}
		data = data[l:]
	}
	return ReasonNotIP
}
