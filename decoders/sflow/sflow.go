// Package sflow decodes sFlow v5 datagrams with goflow2's decoder: flow
// samples become flow records (the sampled packet header decoded with
// gopacket into addresses, ports, VLAN and TCP flags; counts scaled by the
// sampling rate) and generic interface counter samples become interface
// counter records.
package sflow

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	gsflow "github.com/netsampler/goflow2/v2/decoders/sflow"

	"github.com/spanflow/spanflow/decoders/reason"
	"github.com/spanflow/spanflow/internal/flow"
)

// Info says what one datagram held.
type Info struct {
	Agent          netip.Addr
	SubAgent       uint32
	Sequence       uint32
	FlowRecords    int // flow records produced
	CounterRecords int // interface counter records produced
	Samples        int
	BadHeaders     int // sampled headers that did not decode (the record keeps what the sample says)
}

// maxRecords bounds the records of one sample: goflow2 allocates what the
// count says for expanded flow samples before reading them.
const maxRecords = 1000

// check walks the datagram's sample headers before goflow2 does, so a
// count that would make it allocate gigabytes is a counted error instead.
func check(p []byte, exporter netip.Addr) error {
	if len(p) < 28 {
		return reason.Errorf(reason.Short, "sflow header from %s: %d bytes", exporter, len(p))
	}
	off := 8
	switch binary.BigEndian.Uint32(p[4:]) {
	case 1:
		off += 4
	case 2:
		off += 16
	default:
		return reason.Errorf(reason.Header, "sflow from %s: agent address type %d", exporter, binary.BigEndian.Uint32(p[4:]))
	}
	if len(p) < off+16 {
		return reason.Errorf(reason.Short, "sflow header from %s: %d bytes", exporter, len(p))
	}
	n := binary.BigEndian.Uint32(p[off+12:])
	off += 16
	if n > maxRecords {
		return reason.Errorf(reason.Header, "sflow from %s: %d samples", exporter, n)
	}
	for i := uint32(0); i < n && off+8 <= len(p); i++ {
		format, length := binary.BigEndian.Uint32(p[off:]), int(binary.BigEndian.Uint32(p[off+4:]))
		body := p[off+8:]
		if length > len(body) {
			return reason.Errorf(reason.Short, "sflow from %s: sample %d of %d bytes, %d left", exporter, i, length, len(body))
		}
		body = body[:length]
		if format == gsflow.SAMPLE_FORMAT_EXPANDED_FLOW && len(body) >= 44 {
			if c := binary.BigEndian.Uint32(body[40:]); c > maxRecords {
				return reason.Errorf(reason.Set, "sflow from %s: expanded flow sample with %d records", exporter, c)
			}
		}
		off += 8 + length
	}
	return nil
}

// Decode appends the records of one sFlow v5 datagram to out.
func Decode(payload []byte, exporter netip.Addr, received time.Time, out []flow.Record) ([]flow.Record, Info, error) {
	var info Info
	if err := check(payload, exporter); err != nil {
		return out, info, err
	}
	var p gsflow.Packet
	derr := gsflow.DecodeMessageVersion(bytes.NewBuffer(payload), &p)
	if derr != nil && len(p.Samples) == 0 {
		return out, info, reason.Errorf(reason.Set, "sflow from %s: %w", exporter, derr)
	}
	agent, ok := netip.AddrFromSlice(p.AgentIP)
	if !ok {
		agent = exporter
	}
	info.Agent, info.SubAgent, info.Sequence = agent, p.SubAgentId, p.SequenceNumber
	d := decoderPool.Get().(*headerDecoder)
	defer decoderPool.Put(d)
	for _, s := range p.Samples {
		base := flow.Record{Kind: flow.KindSFlow, ObserverIP: agent, ObservationDomain: p.SubAgentId,
			Received: received, End: received}
		switch s := s.(type) {
		case gsflow.FlowSample:
			info.Samples++
			out = appendFlow(out, base, d, &info, s.SamplingRate, s.Input, s.Output, s.Records)
		case gsflow.ExpandedFlowSample:
			info.Samples++
			out = appendFlow(out, base, d, &info, s.SamplingRate, s.InputIfValue, s.OutputIfValue, s.Records)
		case gsflow.CounterSample:
			info.Samples++
			for _, rec := range s.Records {
				c, ok := rec.Data.(gsflow.IfCounters)
				if !ok {
					continue
				}
				r := base
				r.Counters = &flow.IfCounters{
					Index: c.IfIndex, Type: c.IfType, Speed: c.IfSpeed, Direction: c.IfDirection, Status: c.IfStatus,
					InOctets: c.IfInOctets, InUcastPkts: uint64(c.IfInUcastPkts), InMulticastPkts: uint64(c.IfInMulticastPkts),
					InBroadcastPkts: uint64(c.IfInBroadcastPkts), InDiscards: uint64(c.IfInDiscards), InErrors: uint64(c.IfInErrors),
					InUnknownProtos: uint64(c.IfInUnknownProtos), OutOctets: c.IfOutOctets, OutUcastPkts: uint64(c.IfOutUcastPkts),
					OutMulticastPkts: uint64(c.IfOutMulticastPkts), OutBroadcastPkts: uint64(c.IfOutBroadcastPkts),
					OutDiscards: uint64(c.IfOutDiscards), OutErrors: uint64(c.IfOutErrors), Promiscuous: c.IfPromiscuousMode,
				}
				out = append(out, r)
				info.CounterRecords++
			}
		}
	}
	if derr != nil {
		return out, info, reason.Errorf(reason.Set, "sflow from %s (after %d samples): %w", exporter, len(p.Samples), derr)
	}
	return out, info, nil
}

// sFlow interface values with a meaning other than an ifIndex.
const ifFormatMask = 0x3fffffff

func appendFlow(out []flow.Record, r flow.Record, d *headerDecoder, info *Info, rate, in, outIf uint32, records []gsflow.FlowRecord) []flow.Record {
	r.Packets = 1
	// Compact format: the top 2 bits say "discarded" / "multiple interfaces";
	// only format 0 carries an ifIndex.
	if in>>30 == 0 {
		r.InIf = in & ifFormatMask
	}
	if outIf>>30 == 0 && outIf != ifFormatMask {
		r.OutIf = outIf & ifFormatMask
	}
	var haveHeader bool
	for _, rec := range records {
		switch v := rec.Data.(type) {
		case gsflow.SampledHeader:
			if v.Protocol == 1 { // Ethernet
				if !d.decode(&r, v.HeaderData) {
					info.BadHeaders++
				}
				haveHeader = true
			}
			if r.Bytes == 0 {
				r.Bytes = uint64(v.FrameLength)
			}
		case gsflow.SampledIPv4:
			if !haveHeader {
				sampledIP(&r, v.SampledIPBase)
				r.TOS = uint8(v.Tos)
			}
		case gsflow.SampledIPv6:
			if !haveHeader {
				sampledIP(&r, v.SampledIPBase)
			}
		case gsflow.SampledEthernet:
			if r.SrcMAC.IsZero() && len(v.SrcMac) == 6 {
				r.SrcMAC, r.DstMAC = flow.MAC(v.SrcMac), flow.MAC(v.DstMac)
			}
		case gsflow.ExtendedSwitch:
			if r.VLAN == 0 {
				r.VLAN = uint16(v.SrcVlan) & 0xfff
			}
		case gsflow.ExtendedRouter:
			if a, ok := netip.AddrFromSlice(v.NextHop); ok {
				r.Extra = append(r.Extra, flow.Extra{Name: "ip_next_hop_address", Str: a.String(), IsStr: true})
			}
		case gsflow.ExtendedGateway:
			r.Extra = append(r.Extra, flow.Extra{Name: "bgp_source_as_number", Num: uint64(v.SrcAS)},
				flow.Extra{Name: "bgp_destination_as_number", Num: uint64(v.AS)})
		}
	}
	if rate > 1 {
		r.SamplingRate = rate
		r.Bytes *= uint64(rate)
		r.Packets *= uint64(rate)
	}
	info.FlowRecords++
	return append(out, r)
}

func sampledIP(r *flow.Record, v gsflow.SampledIPBase) {
	r.SrcAddr, _ = netip.AddrFromSlice(v.SrcIP)
	r.DstAddr, _ = netip.AddrFromSlice(v.DstIP)
	r.Proto = uint8(v.Protocol)
	r.SrcPort, r.DstPort = uint16(v.SrcPort), uint16(v.DstPort)
	r.TCPFlags = uint16(v.TcpFlags)
	r.Bytes = uint64(v.Length)
}

// headerDecoder decodes sampled headers without allocating per packet.
type headerDecoder struct {
	parser  *gopacket.DecodingLayerParser
	eth     layers.Ethernet
	dot1q   layers.Dot1Q
	ip4     layers.IPv4
	ip6     layers.IPv6
	tcp     layers.TCP
	udp     layers.UDP
	icmp4   layers.ICMPv4
	icmp6   layers.ICMPv6
	decoded []gopacket.LayerType
}

var decoderPool = sync.Pool{New: func() any {
	d := &headerDecoder{}
	d.parser = gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &d.eth, &d.dot1q, &d.ip4, &d.ip6, &d.tcp, &d.udp, &d.icmp4, &d.icmp6)
	d.parser.IgnoreUnsupported = true
	d.parser.IgnorePanic = true
	return d
}}

// decode fills r from a sampled Ethernet frame; it reports false when the
// frame did not decode as far as its network layer.
func (d *headerDecoder) decode(r *flow.Record, frame []byte) bool {
	d.decoded = d.decoded[:0]
	_ = d.parser.DecodeLayers(frame, &d.decoded) // truncated headers are normal: keep what decoded
	sawIP := false
	vlans := 0
	for _, t := range d.decoded {
		switch t {
		case layers.LayerTypeEthernet:
			r.SrcMAC, r.DstMAC = flow.MAC(d.eth.SrcMAC), flow.MAC(d.eth.DstMAC)
		case layers.LayerTypeDot1Q:
			if vlans == 0 {
				r.VLAN = d.dot1q.VLANIdentifier
			} else if vlans == 1 {
				r.InnerVLAN = d.dot1q.VLANIdentifier
			}
			vlans++
		case layers.LayerTypeIPv4:
			if sawIP {
				continue
			}
			sawIP = true
			r.SrcAddr, r.DstAddr = netip.AddrFrom4([4]byte(d.ip4.SrcIP.To4())), netip.AddrFrom4([4]byte(d.ip4.DstIP.To4()))
			r.Proto, r.TOS, r.Bytes = uint8(d.ip4.Protocol), d.ip4.TOS, uint64(d.ip4.Length)
		case layers.LayerTypeIPv6:
			if sawIP {
				continue
			}
			sawIP = true
			r.SrcAddr, r.DstAddr = netip.AddrFrom16([16]byte(d.ip6.SrcIP.To16())), netip.AddrFrom16([16]byte(d.ip6.DstIP.To16()))
			r.Proto, r.TOS, r.Bytes = uint8(d.ip6.NextHeader), d.ip6.TrafficClass, uint64(d.ip6.Length)+40
		case layers.LayerTypeTCP:
			r.SrcPort, r.DstPort = uint16(d.tcp.SrcPort), uint16(d.tcp.DstPort)
			r.TCPFlags = tcpFlags(&d.tcp)
		case layers.LayerTypeUDP:
			r.SrcPort, r.DstPort = uint16(d.udp.SrcPort), uint16(d.udp.DstPort)
		case layers.LayerTypeICMPv4:
			r.ICMPType, r.ICMPCode = d.icmp4.TypeCode.Type(), d.icmp4.TypeCode.Code()
		case layers.LayerTypeICMPv6:
			r.ICMPType, r.ICMPCode = d.icmp6.TypeCode.Type(), d.icmp6.TypeCode.Code()
		}
	}
	return sawIP || len(d.decoded) > 0
}

func tcpFlags(t *layers.TCP) uint16 {
	var f uint16
	for i, b := range []bool{t.FIN, t.SYN, t.RST, t.PSH, t.ACK, t.URG, t.ECE, t.CWR, t.NS} {
		if b {
			f |= 1 << i
		}
	}
	return f
}
