package netflow

import (
	"net/netip"
	"sync"

	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/internal/flow"
)

// Packet sections (RFC 5477, RFC 7133): routers that sample packets in
// hardware (Juniper inline monitoring, Cisco, Nokia) often export the first
// bytes of the sampled frame (dataLinkFrameSection 315) or of its IP packet
// (ipHeaderPacketSection 313) instead of a 5-tuple. The section is parsed
// with the exporter's own frame decoder, which undoes the same
// encapsulations (802.1Q/QinQ, MPLS with or without a pseudowire control
// word, SRv6, GRE, VXLAN...): the record then describes the innermost packet,
// as the exporter's flows do.

// section is what a record says about the packet section it carries.
type section struct {
	data      []byte // the section, from the start of the frame or IP header
	link      uint32 // decode.LinkEthernet or decode.LinkRaw
	frameSize uint64 // dataLinkFrameSize: the frame's length on the wire
	offset    uint64 // sectionOffset: a section not from the start cannot be parsed
	frameType uint64 // dataLinkFrameType: 1 Ethernet (default), 2 802.11
}

// decoders are the frame decoders of the sections; a decoder keeps a
// fragment cache of a few hundred kB, too much to keep per exporter.
var decoders = sync.Pool{New: func() any { return decode.New() }}

// applySection fills what the record lacks (addresses, ports, protocol,
// MACs, VLANs, flags, bytes and packets) from its packet section. A record
// that has its own addresses keeps them: the section is then only kept as
// written (hex).
func applySection(r *flow.Record, t *recordTimes) {
	sec := &t.section
	if sec.data == nil || sec.offset != 0 || r.SrcAddr.IsValid() || (sec.frameType > 1 && sec.link == decode.LinkEthernet) {
		return
	}
	// The frame's length on the wire, when the exporter sent it: without
	// it (an IP header section, or no dataLinkFrameSize) the section's IP
	// length counts as it stands.
	wire := decode.WireUnknown
	if sec.link == decode.LinkEthernet && sec.frameSize > 0 {
		wire = int(min(max(sec.frameSize, uint64(len(sec.data))), 1<<20))
	}
	d := decoders.Get().(*decode.Decoder)
	var p decode.Packet
	why := d.Decode(sec.link, sec.data, wire, &p)
	decoders.Put(d)
	if r.SrcMAC.IsZero() && r.DstMAC.IsZero() {
		r.SrcMAC, r.DstMAC = flow.MAC(p.SrcMAC), flow.MAC(p.DstMAC)
	}
	if r.VLAN == 0 && t.vlan243 == 0 {
		r.VLAN = p.VLAN
	}
	if r.InnerVLAN == 0 {
		r.InnerVLAN = p.InnerVLAN
	}
	if why == decode.ReasonOK {
		if p.IPv6 {
			r.SrcAddr, r.DstAddr = netip.AddrFrom16(p.SrcAddr), netip.AddrFrom16(p.DstAddr)
		} else {
			r.SrcAddr, r.DstAddr = netip.AddrFrom4([4]byte(p.SrcAddr[:4])), netip.AddrFrom4([4]byte(p.DstAddr[:4]))
		}
		r.Proto = p.Proto
		if r.SrcPort == 0 && r.DstPort == 0 {
			r.SrcPort, r.DstPort = p.SrcPort, p.DstPort
		}
		if r.TOS == 0 {
			r.TOS = p.TOS
		}
		if r.TCPFlags == 0 {
			r.TCPFlags = p.TCPFlags
		}
		t.hasTCPFlags = t.hasTCPFlags || p.Proto == 6 // the TCP header was read
		if !t.icmpSet && (p.Proto == 1 || p.Proto == 58) {
			r.ICMPType, r.ICMPCode, t.icmpSet = p.ICMPType, p.ICMPCode, true
		}
		if r.SegmentID == 0 {
			r.SegmentID = uint64(p.SegmentID)
		}
	}
	// One sampled packet: its size on the wire, or its IP length when the
	// exporter sent no frame size (sampling is applied afterwards).
	if !t.hasBytes && r.Bytes == 0 {
		switch {
		case sec.frameSize > 0:
			r.Bytes = sec.frameSize
		case why == decode.ReasonOK:
			r.Bytes = uint64(p.IPLength)
		}
	}
	if !t.hasPackets && r.Packets == 0 {
		r.Packets = 1
	}
}
