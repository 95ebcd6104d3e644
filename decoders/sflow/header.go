package sflow

import (
	"encoding/binary"
	"net/netip"

	"github.com/spanflow/spanflow/internal/flow"
)

// sFlow header_protocol values (SFLOW-STRUCTS5.txt) that spanflow decodes.
const (
	headerEthernet = 1
	headerIPv4     = 11
	headerIPv6     = 12
)

func supportedHeader(proto uint32) bool {
	return proto == headerEthernet || proto == headerIPv4 || proto == headerIPv6
}

// decodeHeader fills r from a sampled packet header of the given
// header_protocol. Sampled headers are cut at the agent's header size (128
// bytes by default), often inside the transport header: what was read is
// kept, and r says which ports and flags were not (NoPorts, NoTCPFlags).
// It reports false when not even the first header could be read.
func decodeHeader(r *flow.Record, proto uint32, b []byte) bool {
	switch proto {
	case headerEthernet:
		return decodeEthernet(r, b)
	case headerIPv4:
		return decodeIPv4(r, b)
	case headerIPv6:
		return decodeIPv6(r, b)
	}
	return false
}

func decodeEthernet(r *flow.Record, b []byte) bool {
	if len(b) < 14 {
		return false
	}
	r.DstMAC, r.SrcMAC = flow.MAC(b[0:6]), flow.MAC(b[6:12])
	typ := binary.BigEndian.Uint16(b[12:])
	b = b[14:]
	for vlans := 0; typ == 0x8100 || typ == 0x88a8 || typ == 0x9100; vlans++ {
		if len(b) < 4 {
			return true
		}
		id := binary.BigEndian.Uint16(b) & 0xfff
		switch vlans {
		case 0:
			r.VLAN = id
		case 1:
			r.InnerVLAN = id
		}
		typ = binary.BigEndian.Uint16(b[2:])
		b = b[4:]
	}
	switch typ {
	case 0x0800:
		decodeIPv4(r, b)
	case 0x86dd:
		decodeIPv6(r, b)
	}
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
