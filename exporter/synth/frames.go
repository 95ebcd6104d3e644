// Package synth writes deterministic captures for the exporter's tests and
// benchmarks: sessions of known size in every encapsulation the decoder
// undoes, together with the flows a correct meter must export for them
// (the ground truth, derived from how the sessions are built, not from
// spanflow's output).
package synth

import (
	"encoding/binary"
	"net/netip"
)

// Header builders. They write what the wire carries, including the IPv4
// header checksum; transport checksums are left at zero (no decoder here
// checks them, and zero is valid for UDP over IPv4).

// MAC builds an address from its last byte.
func MAC(b byte) [6]byte { return [6]byte{0x02, 0, 0, 0, 0, b} }

// Tag is an 802.1Q or 802.1ad tag.
type Tag struct {
	TPID uint16
	VID  uint16
}

// Ethernet returns an Ethernet II frame with tags.
func Ethernet(src, dst [6]byte, tags []Tag, etherType uint16, payload []byte) []byte {
	b := make([]byte, 0, 14+4*len(tags)+len(payload))
	b = append(b, dst[:]...)
	b = append(b, src[:]...)
	for _, t := range tags {
		b = binary.BigEndian.AppendUint16(b, t.TPID)
		b = binary.BigEndian.AppendUint16(b, t.VID)
	}
	b = binary.BigEndian.AppendUint16(b, etherType)
	return append(b, payload...)
}

// IPv4 returns an IPv4 packet; fragOffset is in 8-byte units.
func IPv4(src, dst netip.Addr, proto, tos uint8, id uint16, fragOffset uint16, more bool, payload []byte) []byte {
	b := make([]byte, 20, 20+len(payload))
	b[0] = 0x45
	b[1] = tos
	binary.BigEndian.PutUint16(b[2:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(b[4:], id)
	frag := fragOffset
	if more {
		frag |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], frag)
	b[8] = 64
	b[9] = proto
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
	return append(b, payload...)
}

// IPv6 returns an IPv6 packet.
func IPv6(src, dst netip.Addr, next, tclass uint8, payload []byte) []byte {
	b := make([]byte, 40, 40+len(payload))
	binary.BigEndian.PutUint32(b, 6<<28|uint32(tclass)<<20)
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6] = next
	b[7] = 64
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	return append(b, payload...)
}

// TCP returns a TCP segment with payloadLen zero bytes of data.
func TCP(sport, dport uint16, seq, ack uint32, flags uint8, window uint16, payloadLen int) []byte {
	b := make([]byte, 20+payloadLen)
	binary.BigEndian.PutUint16(b, sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], seq)
	binary.BigEndian.PutUint32(b[8:], ack)
	b[12] = 5 << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], window)
	return b
}

// UDP returns a datagram carrying payload.
func UDP(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b, sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	return append(b, payload...)
}

// ICMP returns an ICMP or ICMPv6 message with n bytes of data.
func ICMP(typ, code uint8, n int) []byte {
	b := make([]byte, 8+n)
	b[0], b[1] = typ, code
	return b
}

// VXLAN returns a VXLAN header (I flag set) and the inner frame.
func VXLAN(vni uint32, inner []byte) []byte {
	b := make([]byte, 8, 8+len(inner))
	b[0] = 0x08
	binary.BigEndian.PutUint32(b[4:], vni<<8)
	return append(b, inner...)
}

// Geneve returns a Geneve header with one 8-byte option.
func Geneve(vni uint32, inner []byte) []byte {
	b := make([]byte, 16, 16+len(inner))
	b[0] = 2 // option length in 4-byte words
	binary.BigEndian.PutUint16(b[2:], 0x6558)
	binary.BigEndian.PutUint32(b[4:], vni<<8)
	binary.BigEndian.PutUint16(b[8:], 0x0102) // option class
	b[10], b[11] = 0x80, 1                    // type, length 1 word
	return append(b, inner...)
}

// GRE returns a GRE header (with key when key is non-nil, sequence number
// when seq is non-nil) and the payload.
func GRE(proto uint16, key, seq *uint32, payload []byte) []byte {
	var flags uint16
	b := make([]byte, 4, 12+len(payload))
	if key != nil {
		flags |= 0x2000
		b = binary.BigEndian.AppendUint32(b, *key)
	}
	if seq != nil {
		flags |= 0x1000
		b = binary.BigEndian.AppendUint32(b, *seq)
	}
	binary.BigEndian.PutUint16(b, flags)
	binary.BigEndian.PutUint16(b[2:], proto)
	return append(b, payload...)
}

// ERSPAN2 returns an ERSPAN type II header and the mirrored frame.
func ERSPAN2(session uint16, vlan uint16, index uint32, frame []byte) []byte {
	b := make([]byte, 8, 8+len(frame))
	binary.BigEndian.PutUint16(b, 1<<12|vlan&0x0fff)
	binary.BigEndian.PutUint16(b[2:], session&0x3ff)
	binary.BigEndian.PutUint32(b[4:], index&0xfffff)
	return append(b, frame...)
}

// ERSPAN3 returns an ERSPAN type III header (frame type Ethernet, with the
// 8-byte platform subheader as a vSphere distributed switch sends it) and
// the mirrored frame.
func ERSPAN3(session uint16, vlan uint16, timestamp uint32, frame []byte) []byte {
	b := make([]byte, 20, 20+len(frame))
	binary.BigEndian.PutUint16(b, 2<<12|vlan&0x0fff)
	binary.BigEndian.PutUint16(b[2:], session&0x3ff)
	binary.BigEndian.PutUint32(b[4:], timestamp)
	binary.BigEndian.PutUint16(b[10:], 1) // O flag; frame type 0 (Ethernet)
	b[12] = 3 << 2                        // platform id 3
	return append(b, frame...)
}
