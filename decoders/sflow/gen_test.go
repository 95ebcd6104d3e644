package sflow_test

// The captures in testdata/ are written by this file (go test -run
// TestWriteCaptures -write ./decoders/sflow): sFlow v5 datagrams built
// field by field from sflow.org's SFLOW-DATAGRAM5.txt, SFLOW-STRUCTS5.txt,
// sflow_drops.txt and sflow_host.txt, wrapped in Ethernet/IPv4/UDP to port
// 6343. Their expected decode is tshark's, read in the tests.

import (
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/spanflow/spanflow/internal/testutil"
)

var write = flag.Bool("write", false, "rewrite the generated captures in testdata/")

// The agent named in the datagrams differs from their UDP source, as behind
// a proxy or on a multi-homed switch.
var (
	agentAddr  = netip.MustParseAddr("10.0.0.1")
	sourceAddr = netip.MustParseAddr("192.0.2.10")
)

// xdr builds XDR data.
type xdr []byte

func (b xdr) u32(v ...uint32) xdr {
	for _, x := range v {
		b = binary.BigEndian.AppendUint32(b, x)
	}
	return b
}
func (b xdr) u64(v ...uint64) xdr {
	for _, x := range v {
		b = binary.BigEndian.AppendUint64(b, x)
	}
	return b
}
func (b xdr) f32(v ...float32) xdr {
	for _, x := range v {
		b = binary.BigEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// opaque appends fixed-length opaque data padded to 4 bytes.
func (b xdr) opaque(p []byte) xdr {
	b = append(b, p...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// varOpaque appends variable-length opaque data (or a string).
func (b xdr) varOpaque(p []byte) xdr { return b.u32(uint32(len(p))).opaque(p) }

// record is a flow or counter record: format, length, body.
func record(format uint32, body xdr) xdr { return xdr{}.u32(format, uint32(len(body))).opaque(body) }

func flowSample(seq, srcID, rate, in, out uint32, recs ...xdr) xdr {
	b := xdr{}.u32(seq, srcID, rate, 1000*seq, 0, in, out, uint32(len(recs)))
	for _, r := range recs {
		b = append(b, r...)
	}
	return record(1, b)
}

func expandedFlowSample(seq, rate, inFmt, in, outFmt, out uint32, recs ...xdr) xdr {
	b := xdr{}.u32(seq, 0, 7, rate, 1000*seq, 0, inFmt, in, outFmt, out, uint32(len(recs)))
	for _, r := range recs {
		b = append(b, r...)
	}
	return record(3, b)
}

func dropSample(seq, drops, in, out, why uint32, recs ...xdr) xdr {
	b := xdr{}.u32(seq, 0, 7, drops, in, out, why, uint32(len(recs)))
	for _, r := range recs {
		b = append(b, r...)
	}
	return record(5, b)
}

func counterSample(seq, srcID uint32, recs ...xdr) xdr {
	b := xdr{}.u32(seq, srcID, uint32(len(recs)))
	for _, r := range recs {
		b = append(b, r...)
	}
	return record(2, b)
}

// sampledHeader is flow record 1; frameLen is the length on the wire.
func sampledHeader(proto, frameLen uint32, hdr []byte) xdr {
	return record(1, xdr{}.u32(proto, frameLen, 4, uint32(len(hdr))).opaque(hdr))
}

func datagram(seq uint32, samples ...xdr) []byte {
	b := xdr{}.u32(5, 1).opaque(agentAddr.AsSlice()).u32(3, seq, 123456, uint32(len(samples)))
	for _, s := range samples {
		b = append(b, s...)
	}
	return b
}

// packet serializes layers into bytes (lengths and checksums fixed).
func packet(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	for _, l := range ls {
		switch l := l.(type) {
		case *layers.TCP:
			for _, n := range ls {
				if nl, ok := n.(gopacket.NetworkLayer); ok {
					l.SetNetworkLayerForChecksum(nl)
				}
			}
		case *layers.UDP:
			for _, n := range ls {
				if nl, ok := n.(gopacket.NetworkLayer); ok {
					l.SetNetworkLayerForChecksum(nl)
				}
			}
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var (
	macA = []byte{0x02, 0x00, 0x00, 0xaa, 0xbb, 0x01}
	macB = []byte{0x02, 0x00, 0x00, 0xcc, 0xdd, 0x02}
)

func ip4(src, dst string, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, TOS: 0x10,
		SrcIP: netip.MustParseAddr(src).AsSlice(), DstIP: netip.MustParseAddr(dst).AsSlice()}
}

func ip6(src, dst string, proto layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto,
		SrcIP: netip.MustParseAddr(src).AsSlice(), DstIP: netip.MustParseAddr(dst).AsSlice()}
}

func payload(n int) gopacket.Payload { return make(gopacket.Payload, n) }

// captures are the generated files and their datagrams.
func captures(t testing.TB) map[string][][]byte {
	eth := func(typ layers.EthernetType) *layers.Ethernet {
		return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: typ}
	}
	// 1. Raw IPv4 (11) and IPv6 (12) sampled headers, and an Ethernet one.
	rawV4 := packet(t, ip4("198.51.100.1", "203.0.113.7", layers.IPProtocolTCP),
		&layers.TCP{SrcPort: 40000, DstPort: 443, SYN: true, ACK: true, Window: 1000}, payload(1000))
	rawV6 := packet(t, ip6("2001:db8::1", "2001:db8::2", layers.IPProtocolUDP),
		&layers.UDP{SrcPort: 5353, DstPort: 53}, payload(300))
	ethV4 := packet(t, eth(layers.EthernetTypeIPv4), ip4("198.51.100.9", "203.0.113.9", layers.IPProtocolUDP),
		&layers.UDP{SrcPort: 1000, DstPort: 2000}, payload(100))
	raw := [][]byte{datagram(1,
		flowSample(1, 3, 512, 3, 4, sampledHeader(11, uint32(len(rawV4)), rawV4[:64])),
		flowSample(2, 3, 512, 3, 4, sampledHeader(12, uint32(len(rawV6)), rawV6[:64])),
		flowSample(3, 3, 512, 3, 4, sampledHeader(1, uint32(len(ethV4))+4, ethV4[:64])),
	)}

	// 2. Ethernet frame data (flow format 2) with IPv4 data (format 3), no header.
	ethData := record(2, xdr{}.u32(1518).opaque(macA).opaque(macB).u32(0x0800))
	ipv4Data := record(3, xdr{}.u32(1500, 6).opaque([]byte{198, 51, 100, 20}).opaque([]byte{203, 0, 113, 20}).u32(12345, 80, 0x18, 0))
	ethFrame := [][]byte{datagram(2, expandedFlowSample(1, 100, 0, 5, 0, 6, ethData, ipv4Data))}

	// 3. Sampled headers cut inside the transport header.
	full := packet(t, eth(layers.EthernetTypeIPv4), ip4("198.51.100.30", "203.0.113.30", layers.IPProtocolTCP),
		&layers.TCP{SrcPort: 51000, DstPort: 22, PSH: true, ACK: true, Window: 500}, payload(40))
	fullUDP := packet(t, eth(layers.EthernetTypeIPv4), ip4("198.51.100.31", "203.0.113.31", layers.IPProtocolUDP),
		&layers.UDP{SrcPort: 52000, DstPort: 514}, payload(40))
	full6 := packet(t, eth(layers.EthernetTypeIPv6), ip6("2001:db8::30", "2001:db8::31", layers.IPProtocolTCP),
		&layers.TCP{SrcPort: 53000, DstPort: 8080, SYN: true, Window: 500}, payload(10))
	const l2l3 = 14 + 20
	truncated := [][]byte{datagram(3,
		flowSample(1, 3, 1, 3, 4, sampledHeader(1, uint32(len(full)), full[:l2l3+4])),       // ports only
		flowSample(2, 3, 1, 3, 4, sampledHeader(1, uint32(len(full)), full[:l2l3+14])),      // ports and flags
		flowSample(3, 3, 1, 3, 4, sampledHeader(1, uint32(len(fullUDP)), fullUDP[:l2l3+6])), // UDP ports
		flowSample(4, 3, 1, 3, 4, sampledHeader(1, uint32(len(full)), full[:l2l3+2])),       // no ports
		flowSample(5, 3, 1, 3, 4, sampledHeader(1, uint32(len(full6)), full6[:14+40+14])),   // IPv6 TCP, ports and flags
	)}

	// 4. Special interface values, input and output alike.
	ifaces := [][]byte{datagram(4,
		flowSample(1, 3, 10, 0x3fffffff, 7, sampledHeader(1, uint32(len(ethV4))+4, ethV4)),
		flowSample(2, 3, 10, 7, 0x3fffffff, sampledHeader(1, uint32(len(ethV4))+4, ethV4)),
		flowSample(3, 3, 10, 7, 1<<30|258, sampledHeader(1, uint32(len(ethV4))+4, ethV4)),
		flowSample(4, 3, 10, 2<<30|3, 2<<30|0, sampledHeader(1, uint32(len(ethV4))+4, ethV4)),
		expandedFlowSample(5, 10, 0, 0x3fffffff, 2, 5, sampledHeader(1, uint32(len(ethV4))+4, ethV4)),
		expandedFlowSample(6, 10, 0, 0x40000007, 1, 262, sampledHeader(1, uint32(len(ethV4))+4, ethV4)),
	)}

	// 5. Drop notifications (sample type 5).
	dropped := packet(t, eth(layers.EthernetTypeIPv4), ip4("198.51.100.50", "203.0.113.50", layers.IPProtocolTCP),
		&layers.TCP{SrcPort: 33000, DstPort: 3389, SYN: true, Window: 500}, payload(0))
	drops := [][]byte{datagram(5,
		dropSample(1, 0, 9, 0, 258, sampledHeader(1, uint32(len(dropped))+4, dropped)),
		dropSample(2, 17, 9, 12, 269, sampledHeader(11, uint32(len(rawV4)), rawV4[:64])),
	)}

	// 6. Counter records other than generic interface counters.
	ifc := record(1, xdr{}.u32(3, 6).u64(10000000000).u32(1, 3).u64(1000).u32(10, 11, 12, 13, 14, 15).u64(2000).u32(20, 21, 22, 23, 24, 2))
	ethc := record(2, xdr{}.u32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13))
	lag := record(7, xdr{}.opaque(macA).opaque(macB).u32(42).opaque([]byte{0x3d, 0x3d, 0x3d, 0x3d}).u32(101, 102, 103, 104, 105, 106, 107, 108))
	proc := record(1001, xdr{}.u32(1234, 2345, 3456).u64(8<<30, 2<<30))
	hostDescr := record(2000, xdr{}.varOpaque([]byte("hv-17.example")).opaque([]byte{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00}).u32(3, 2).varOpaque([]byte("6.1.0")))
	hostCPU := record(2003, xdr{}.f32(0.5, 0.25, 0.125).u32(2, 300, 8, 2400, 86400, 1000, 10, 500, 9000, 20, 5, 6, 777, 888, 1, 2, 3))
	hostMem := record(2004, xdr{}.u64(16<<30, 4<<30, 1<<20, 2<<20, 3<<30, 8<<30, 7<<30).u32(11, 12, 13, 14))
	hostDisk := record(2005, xdr{}.u64(500<<30, 100<<30).u32(8123, 1000).u64(5<<20).u32(300, 2000).u64(9<<20).u32(400))
	hostNet := record(2006, xdr{}.u64(123456789).u32(1000, 1, 2).u64(987654321).u32(2000, 3, 4))
	virtNode := record(2100, xdr{}.u32(2400, 32).u64(256<<30, 128<<30).u32(12))
	virtCPU := record(2101, xdr{}.u32(1, 123456, 4))
	virtMem := record(2102, xdr{}.u64(4<<30, 8<<30))
	virtDisk := record(2103, xdr{}.u64(100<<30, 50<<30, 40<<30).u32(1000).u64(1<<20).u32(2000).u64(2<<20).u32(5))
	virtNet := record(2104, xdr{}.u64(5555).u32(55, 1, 2).u64(6666).u32(66, 3, 4))
	// tshark decodes the standard structures; it stops at the host ones
	// (sflow_host.txt), which get a capture of their own.
	counters := [][]byte{datagram(6,
		counterSample(1, 3, ifc, ethc, lag),
		counterSample(2, 2<<24|1, proc),
	)}
	hostCounters := [][]byte{datagram(7,
		counterSample(1, 2<<24|1, hostDescr, hostCPU, hostMem, hostDisk, hostNet),
		counterSample(2, 3<<24|5, virtNode, virtCPU, virtMem, virtDisk, virtNet),
	)}

	// 8. Encapsulations between the sampled frame's MAC header and its IP
	// header, and the header protocols MPLS (13), PPP (7) and POS (14):
	// one flow each, addresses 198.51.100.8N -> 203.0.113.8N.
	inner4 := func(n int, proto layers.IPProtocol) []byte {
		src, dst := fmt.Sprintf("198.51.100.%d", 80+n), fmt.Sprintf("203.0.113.%d", 80+n)
		if proto == layers.IPProtocolTCP {
			return packet(t, ip4(src, dst, proto), &layers.TCP{SrcPort: layers.TCPPort(41000 + n), DstPort: 443, ACK: true, PSH: true, Window: 900}, payload(20))
		}
		return packet(t, ip4(src, dst, proto), &layers.UDP{SrcPort: layers.UDPPort(42000 + n), DstPort: 33333}, payload(20))
	}
	inner6 := packet(t, ip6("2001:db8::81", "2001:db8::82", layers.IPProtocolUDP), &layers.UDP{SrcPort: 42100, DstPort: 33334}, payload(20))
	macs := append(append([]byte{}, macB...), macA...)
	frame := func(parts ...[]byte) []byte {
		b := append([]byte{}, macs...)
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	label := func(l uint32, bottom bool) []byte {
		v := l<<12 | 64 // TTL 64
		if bottom {
			v |= 1 << 8
		}
		return binary.BigEndian.AppendUint32(nil, v)
	}
	u16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	pppoe := func(body []byte) []byte {
		return append([]byte{0x11, 0x00, 0x00, 0x2a, byte((len(body) + 2) >> 8), byte(len(body) + 2), 0x00, 0x21}, body...)
	}
	mplsTwo := frame(u16(0x8847), label(100, false), label(200, true), inner4(1, layers.IPProtocolTCP))
	vlanMPLS6 := frame(u16(0x8100), u16(30), u16(0x8847), label(300, true), inner6)
	pppoeV4 := frame(u16(0x8864), pppoe(inner4(2, layers.IPProtocolUDP)))
	eTag := frame(u16(0x893f), []byte{0, 0x12, 0, 0x34, 0, 0}, u16(0x8100), u16(40), u16(0x0800), inner4(3, layers.IPProtocolTCP))
	vnTag := frame(u16(0x8926), []byte{0x80, 0x05, 0x00, 0x09}, u16(0x0800), inner4(4, layers.IPProtocolUDP))
	pwEth := frame(u16(0x8847), label(400, true), []byte{0, 0, 0, 0}, frame(u16(0x0800), inner4(5, layers.IPProtocolTCP)))
	mplsRaw := append(label(500, true), inner4(6, layers.IPProtocolTCP)...)
	pppHDLC := append([]byte{0xff, 0x03, 0x00, 0x21}, inner4(7, layers.IPProtocolUDP)...)
	ciscoHDLC := append([]byte{0x0f, 0x00, 0x08, 0x00}, inner4(8, layers.IPProtocolTCP)...)
	encaps := [][]byte{datagram(8,
		flowSample(1, 3, 256, 3, 4, sampledHeader(1, uint32(len(mplsTwo))+4, mplsTwo)),
		flowSample(2, 3, 256, 3, 4, sampledHeader(1, uint32(len(vlanMPLS6))+4, vlanMPLS6)),
		flowSample(3, 3, 256, 3, 4, sampledHeader(1, uint32(len(pppoeV4))+4, pppoeV4)),
		flowSample(4, 3, 256, 3, 4, sampledHeader(1, uint32(len(eTag))+4, eTag)),
		flowSample(5, 3, 256, 3, 4, sampledHeader(1, uint32(len(vnTag))+4, vnTag)),
		flowSample(6, 3, 256, 3, 4, sampledHeader(1, uint32(len(pwEth))+4, pwEth)),
		flowSample(7, 3, 256, 3, 4, sampledHeader(13, uint32(len(mplsRaw)), mplsRaw)),
		flowSample(8, 3, 256, 3, 4, sampledHeader(7, uint32(len(pppHDLC)), pppHDLC)),
		flowSample(9, 3, 256, 3, 4, sampledHeader(14, uint32(len(ciscoHDLC)), ciscoHDLC)),
	)}

	// 9. Extended gateway records (flow format 1003), one datagram each:
	// a one-segment path with communities, an empty path, a path of an
	// AS_SEQUENCE and an AS_SET behind an IPv6 next hop.
	gwHeader := sampledHeader(1, uint32(len(ethV4))+4, ethV4)
	gateways := [][]byte{
		datagram(9, flowSample(1, 3, 100, 3, 4, gwHeader,
			record(1003, xdr{}.u32(1).opaque([]byte{192, 0, 2, 254}).u32(65000, 64512, 64513, 1, 2, 3, 64600, 64700, 64800, 2, 65000<<16|1, 65000<<16|2, 100)))),
		datagram(10, flowSample(2, 3, 100, 3, 4, gwHeader,
			record(1003, xdr{}.u32(1).opaque([]byte{192, 0, 2, 254}).u32(65000, 64512, 0, 0, 0, 100)))),
		datagram(11, flowSample(3, 3, 100, 3, 4, gwHeader,
			record(1003, xdr{}.u32(2).opaque(netip.MustParseAddr("2001:db8::fe").AsSlice()).u32(65000, 0, 64513, 2, 2, 2, 64600, 64700, 1, 2, 64801, 64802, 0, 100)))),
	}

	return map[string][][]byte{
		"extended-gateway.pcap":    gateways,
		"encapsulations.pcap":      encaps,
		"raw-ip-headers.pcap":      raw,
		"ethernet-frame-data.pcap": ethFrame,
		"truncated-transport.pcap": truncated,
		"special-interfaces.pcap":  ifaces,
		"drop-notifications.pcap":  drops,
		"counters.pcap":            counters,
		"host-counters.pcap":       hostCounters,
	}
}

// wrap puts an sFlow datagram in Ethernet/IPv4/UDP from sourceAddr to 6343.
func wrap(t testing.TB, p []byte) []byte {
	return packet(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4},
		ip4(sourceAddr.String(), "192.0.2.200", layers.IPProtocolUDP),
		&layers.UDP{SrcPort: 50000, DstPort: 6343}, gopacket.Payload(p))
}

func TestWriteCaptures(t *testing.T) {
	if !*write {
		t.Skip("run with -write to rewrite testdata/")
	}
	for name, dgs := range captures(t) {
		frames := make([][]byte, len(dgs))
		for i, dg := range dgs {
			frames[i] = wrap(t, dg)
		}
		testutil.WritePcap(t, filepath.Join("testdata", name), 1, time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC), frames)
	}
}
