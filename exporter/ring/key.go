package ring

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/internal/flow"
)

// A flow key is the first 8 bytes of the Community ID hash of a packet's
// (innermost) 5-tuple, the same for both directions; 0 stands for a frame
// that has no flow (not IP, or not decodable). Each record keeps its key,
// and a block's index the key's first 4 bytes.

// PacketKey is the flow key of a decoded packet. TCP, UDP and SCTP
// packets, and those without ports, are hashed here directly (no flow
// record to fill: this runs for every frame kept); ICMP and IPv4-mapped
// IPv6 addresses take the flow record's way.
func PacketKey(p *decode.Packet) uint64 {
	n := 4
	if p.IPv6 {
		n = 16
		if [12]byte(p.SrcAddr[:12]) == v4InV6Prefix || [12]byte(p.DstAddr[:12]) == v4InV6Prefix {
			return recordKey(p)
		}
	}
	src, dst := p.SrcAddr[:n], p.DstAddr[:n]
	sp, dp := p.SrcPort, p.DstPort
	ports := false
	switch p.Proto {
	case 1, 58:
		return recordKey(p)
	case 6, 17, 132:
		ports = true
	}
	if c := bytes.Compare(src, dst); c > 0 || (c == 0 && sp > dp) {
		src, dst, sp, dp = dst, src, dp, sp
	}
	var buf [2 + 16 + 16 + 2 + 4]byte
	i := 2 // seed 0
	i += copy(buf[i:], src)
	i += copy(buf[i:], dst)
	buf[i] = p.Proto
	i += 2
	if ports {
		binary.BigEndian.PutUint16(buf[i:], sp)
		binary.BigEndian.PutUint16(buf[i+2:], dp)
		i += 4
	}
	sum := sha1.Sum(buf[:i])
	return nonZero(binary.BigEndian.Uint64(sum[:8]))
}

var v4InV6Prefix = [12]byte{10: 0xff, 11: 0xff}

// recordKey is the flow key of a decoded packet through a flow record.
func recordKey(p *decode.Packet) uint64 {
	var r flow.Record
	if p.IPv6 {
		r.SrcAddr, r.DstAddr = netip.AddrFrom16(p.SrcAddr), netip.AddrFrom16(p.DstAddr)
	} else {
		r.SrcAddr, r.DstAddr = netip.AddrFrom4([4]byte(p.SrcAddr[:4])), netip.AddrFrom4([4]byte(p.DstAddr[:4]))
	}
	r.Proto, r.SrcPort, r.DstPort, r.ICMPType, r.ICMPCode = p.Proto, p.SrcPort, p.DstPort, p.ICMPType, p.ICMPCode
	return RecordKey(&r)
}

// RecordKey is the flow key of a flow record.
func RecordKey(r *flow.Record) uint64 {
	sum := flow.CommunityIDHash(r)
	return nonZero(binary.BigEndian.Uint64(sum[:8]))
}

func nonZero(k uint64) uint64 {
	if k == 0 {
		return 1
	}
	return k
}

// CommunityIDKey is the flow key of a Community ID v1 string ("1:base64").
func CommunityIDKey(id string) (uint64, error) {
	// A '+' of the base64 typed into a URL's query unescaped arrives as a
	// space; base64 has no spaces, so it can only have been a '+'.
	b64, ok := strings.CutPrefix(strings.ReplaceAll(id, " ", "+"), "1:")
	if !ok {
		return 0, fmt.Errorf("community id %q: want a version 1 id, 1:BASE64", id)
	}
	sum, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(sum) != 20 {
		return 0, fmt.Errorf("community id %q: not the base64 of a 20-byte SHA-1", id)
	}
	return nonZero(binary.BigEndian.Uint64(sum[:8])), nil
}

// ParseFlow reads a flow as a Community ID ("1:...") or as a 5-tuple
// "PROTO SRC:PORT DST:PORT" (PROTO tcp, udp, sctp or a number; IPv6
// addresses in brackets, [2001:db8::1]:443), and returns its key and its
// Community ID.
func ParseFlow(s string) (key uint64, communityID string, err error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "1:") {
		k, err := CommunityIDKey(s)
		return k, strings.ReplaceAll(s, " ", "+"), err
	}
	f := strings.Fields(s)
	if len(f) != 3 {
		return 0, "", fmt.Errorf("flow %q: want a community id (1:...) or 'PROTO SRC:PORT DST:PORT'", s)
	}
	var r flow.Record
	switch strings.ToLower(f[0]) {
	case "tcp":
		r.Proto = 6
	case "udp":
		r.Proto = 17
	case "sctp":
		r.Proto = 132
	default:
		p, err := strconv.ParseUint(f[0], 10, 8)
		if err != nil {
			return 0, "", fmt.Errorf("flow %q: protocol %q: want tcp, udp, sctp or a number", s, f[0])
		}
		r.Proto = uint8(p)
	}
	src, err := netip.ParseAddrPort(f[1])
	if err != nil {
		return 0, "", fmt.Errorf("flow %q: source: %w", s, err)
	}
	dst, err := netip.ParseAddrPort(f[2])
	if err != nil {
		return 0, "", fmt.Errorf("flow %q: destination: %w", s, err)
	}
	r.SrcAddr, r.SrcPort, r.DstAddr, r.DstPort = src.Addr().Unmap(), src.Port(), dst.Addr().Unmap(), dst.Port()
	return RecordKey(&r), string(flow.AppendCommunityID(nil, &r)), nil
}
