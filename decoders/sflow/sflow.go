// Package sflow decodes sFlow v5 datagrams with goflow2's decoder: flow
// samples become flow records (the sampled packet header, Ethernet or raw
// IPv4/IPv6, decoded into addresses, ports, VLAN and TCP flags; counts
// scaled by the sampling rate), drop notifications become records of the
// dropped packet with its reason, generic interface counters become
// interface counter records and the other counter structures (Ethernet,
// LAG, processor, host and VM) counter set records.
package sflow

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"time"

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
	Discards       int // drop notifications (sample type 5) turned into records
	UnknownSamples int // samples of a format spanflow does not read, skipped by their length
}

// maxRecords bounds the records of one sample: goflow2 allocates what the
// count says for expanded flow samples before reading them.
const maxRecords = 1000

// check walks the datagram's sample headers before decoding them, so a
// sample running past the datagram, or a count that would make goflow2
// allocate gigabytes, is a counted error. It returns where the samples
// start and how many the header says there are.
func check(p []byte, exporter netip.Addr) (first int, n uint32, err error) {
	if len(p) < 28 {
		return 0, 0, reason.Errorf(reason.Short, "sflow header from %s: %d bytes", exporter, len(p))
	}
	off := 8
	switch binary.BigEndian.Uint32(p[4:]) {
	case 1:
		off += 4
	case 2:
		off += 16
	default:
		return 0, 0, reason.Errorf(reason.Header, "sflow from %s: agent address type %d", exporter, binary.BigEndian.Uint32(p[4:]))
	}
	if len(p) < off+16 {
		return 0, 0, reason.Errorf(reason.Short, "sflow header from %s: %d bytes", exporter, len(p))
	}
	n = binary.BigEndian.Uint32(p[off+12:])
	off += 16
	first = off
	if n > maxRecords {
		return 0, 0, reason.Errorf(reason.Header, "sflow from %s: %d samples", exporter, n)
	}
	for i := uint32(0); i < n && off+8 <= len(p); i++ {
		format, length := binary.BigEndian.Uint32(p[off:]), int(binary.BigEndian.Uint32(p[off+4:]))
		body := p[off+8:]
		if length > len(body) {
			return 0, 0, reason.Errorf(reason.Short, "sflow from %s: sample %d of %d bytes, %d left", exporter, i, length, len(body))
		}
		body = body[:length]
		if format == gsflow.SAMPLE_FORMAT_EXPANDED_FLOW && len(body) >= 44 {
			if c := binary.BigEndian.Uint32(body[40:]); c > maxRecords {
				return 0, 0, reason.Errorf(reason.Set, "sflow from %s: expanded flow sample with %d records", exporter, c)
			}
		}
		off += 8 + length
	}
	return first, n, nil
}

// knownSample says whether spanflow reads a sample format: enterprise 0's
// flow (1), counter (2), expanded flow (3), expanded counter (4) and drop
// notification (5). sFlow v5 has collectors skip other structures by
// their length.
func knownSample(format uint32) bool {
	return format >= gsflow.SAMPLE_FORMAT_FLOW && format <= gsflow.SAMPLE_FORMAT_DROP
}

// Decode appends the records of one sFlow v5 datagram to out.
//
// It walks the samples itself and hands goflow2 one known sample at a
// time: goflow2's DecodeMessage stops at the first sample of a format it
// does not know, losing the samples after it.
func Decode(payload []byte, exporter netip.Addr, received time.Time, out []flow.Record) ([]flow.Record, Info, error) {
	var info Info
	off, n, err := check(payload, exporter)
	if err != nil {
		return out, info, err
	}
	agent, ok := netip.AddrFromSlice(payload[8 : off-16])
	if !ok {
		agent = exporter
	}
	info.Agent, info.SubAgent, info.Sequence = agent, binary.BigEndian.Uint32(payload[off-16:]), binary.BigEndian.Uint32(payload[off-12:])
	// One reader and header for the datagram (they escape into goflow2),
	// pointed at each sample in turn.
	rd := new(bytes.Buffer)
	hdr := new(gsflow.SampleHeader)
	// A known sample that does not decode is said (the datagram counts as
	// bad) but does not take the samples after it along: its length,
	// checked in bounds, says where the next one starts.
	var bad error
	for i := uint32(0); i < n && off+8 <= len(payload); i++ {
		format, length := binary.BigEndian.Uint32(payload[off:]), binary.BigEndian.Uint32(payload[off+4:])
		body := payload[off+8 : off+8+int(length)] // check saw it in bounds
		off += 8 + int(length)
		if !knownSample(format) {
			info.UnknownSamples++
			continue
		}
		*hdr = gsflow.SampleHeader{Format: format, Length: length}
		*rd = *bytes.NewBuffer(body)
		s, err := gsflow.DecodeSample(hdr, rd)
		if err != nil {
			if bad == nil {
				bad = reason.Errorf(reason.Set, "sflow from %s: sample %d (format %d): %w", exporter, i, format, err)
			}
			continue
		}
		base := flow.Record{Kind: flow.KindSFlow, ObserverIP: agent, ObservationDomain: info.SubAgent,
			Received: received, Start: received, End: received, ExporterAddr: exporter}
		switch s := s.(type) {
		case gsflow.FlowSample:
			info.Samples++
			// Compact interface format: the top 2 bits are the format.
			out = appendFlow(out, base, &info, s.SamplingRate, s.Input>>30, s.Input&ifValueMask,
				s.Output>>30, s.Output&ifValueMask, s.Records, records(body, 32))
		case gsflow.ExpandedFlowSample:
			info.Samples++
			out = appendFlow(out, base, &info, s.SamplingRate, s.InputIfFormat, s.InputIfValue,
				s.OutputIfFormat, s.OutputIfValue, s.Records, records(body, 44))
		case gsflow.DropSample:
			info.Samples++
			// sflow_drops.txt: plain ifIndex values, 0 when unknown.
			base.Discard = &flow.Discard{Reason: s.Reason, Notification: true, Unreported: s.Drops}
			out = appendFlow(out, base, &info, 1, 0, s.Input, 0, s.Output, s.Records, records(body, 32))
			info.FlowRecords--
			info.Discards++
		case gsflow.CounterSample:
			info.Samples++
			for _, rec := range s.Records {
				var set *flow.CounterSet
				switch c := rec.Data.(type) {
				case gsflow.IfCounters:
					r := base
					r.Start = time.Time{}
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
					continue
				case gsflow.EthernetCounters:
					set = ethernetCounters(c)
				case gsflow.RawRecord:
					set = readCounters(rec.Header.DataFormat, c.Data)
				}
				if set == nil {
					continue // a structure spanflow does not read
				}
				set.SourceType, set.SourceIndex = s.Header.SourceIdType, s.Header.SourceIdValue
				r := base
				r.Start = time.Time{}
				r.SFlowCounters = set
				out = append(out, r)
				info.CounterRecords++
			}
		}
	}
	return out, info, bad
}

// The compact interface value of a flow sample: 2 bits of format, 30 of
// value; value 0x3FFFFFFF of format 0 is the agent's internal interface.
const (
	ifValueMask = 0x3fffffff
	ifInternal  = 0x3fffffff
)

// iface reads an interface (format, value): an ifIndex (0 = unknown), the
// internal interface, a packet discarded (value: the drop reason) or
// several interfaces (value: how many, 0 = unknown). Input and output
// are read alike.
func iface(format, value uint32) (index uint32, special flow.IfSpecial, count uint32, discard *flow.Discard) {
	switch format {
	case 0:
		if value == ifInternal {
			return 0, flow.IfInternal, 0, nil
		}
		return value, flow.IfIndex, 0, nil
	case 1:
		return 0, flow.IfDiscarded, 0, &flow.Discard{Reason: value}
	case 2:
		return 0, flow.IfMultiple, value, nil
	}
	return 0, flow.IfIndex, 0, nil
}

// records returns the flow records of a sample's body, which start after
// its fixed fields (32 bytes in flow and drop samples, 44 in expanded ones).
func records(body []byte, fixed int) []byte {
	if len(body) < fixed {
		return nil
	}
	return body[fixed:]
}

// appendFlow appends the flow record of a flow or drop sample: records as
// goflow2 decoded them, raw as they are in the sample.
func appendFlow(out []flow.Record, r flow.Record, info *Info, rate, inFormat, in, outFormat, outIf uint32, records []gsflow.FlowRecord, raw []byte) []flow.Record {
	r.Packets = 1
	var d1, d2 *flow.Discard
	r.InIf, r.InIfSpecial, r.InIfCount, d1 = iface(inFormat, in)
	r.OutIf, r.OutIfSpecial, r.OutIfCount, d2 = iface(outFormat, outIf)
	if r.Discard == nil {
		r.Discard = d2
		if d1 != nil {
			r.Discard = d1
		}
	}
	var haveHeader, haveGateway, haveRouter, havePostVLAN bool
	var router gsflow.ExtendedRouter
	var frameLen uint64
	for _, rec := range records {
		switch v := rec.Data.(type) {
		case gsflow.SampledHeader:
			if haveHeader {
				continue
			}
			haveHeader = true
			frameLen = uint64(v.FrameLength)
			if !decodeHeader(&r, v.Protocol, v.HeaderData) && supportedHeader(v.Protocol) {
				info.BadHeaders++
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
			if r.SrcMAC.IsZero() && len(v.SrcMac) == 6 && len(v.DstMac) == 6 {
				r.SrcMAC, r.DstMAC = ethernetFrameMACs(v)
			}
		case gsflow.ExtendedSwitch:
			if r.VLAN == 0 {
				r.VLAN = uint16(v.SrcVlan) & 0xfff
			}
			// The outgoing VLAN is IPFIX's postVlanId, as NetFlow/IPFIX
			// records write it; 0 (none) and values past 4094 (agents
			// send 0xFFFFFFFF for unknown) are not written.
			if out := v.DstVlan; out != 0 && out < 4095 && !havePostVLAN {
				havePostVLAN = true
				r.Extra = append(r.Extra, flow.Extra{Name: "post_vlan_id", Num: uint64(out)})
			}
		case gsflow.ExtendedRouter:
			if haveRouter {
				continue
			}
			haveRouter, router = true, v
		case gsflow.ExtendedGateway:
			if haveGateway {
				continue
			}
			haveGateway = true
			// 0.0.0.0: the agent knows no BGP next hop (not written).
			if a, ok := netip.AddrFromSlice(v.NextHop); ok && !a.IsUnspecified() {
				r.Extra = append(r.Extra, nextHop("bgp_next_hop", a))
			}
			// sFlow v5: as is the router's own AS; the destination's is the
			// last of dst_as_path, the router's when the path is empty (the
			// destination is local). src_peer_as is the AS the packet came
			// from, the path's first AS the one it goes to.
			dst := v.AS
			next, last, ok := gatewayPath(raw)
			if ok {
				dst = last
			}
			// Appended at once: one allocation per record, not one per value.
			as := [4]flow.Extra{{Name: "bgp_source_as_number", Num: uint64(v.SrcAS)},
				{Name: "bgp_destination_as_number", Num: uint64(dst)}}
			n := 2
			if v.SrcPeerAS != 0 {
				as[n] = flow.Extra{Name: "bgp_prev_adjacent_as_number", Num: uint64(v.SrcPeerAS)}
				n++
			}
			if ok {
				as[n] = flow.Extra{Name: "bgp_next_adjacent_as_number", Num: uint64(next)}
				n++
			}
			r.Extra = append(r.Extra, as[:n]...)
		}
	}
	if haveRouter {
		r.Extra = appendRouter(r.Extra, &r, router)
	}
	if r.Bytes == 0 {
		r.Bytes = frameLen
	}
	if rate > 1 {
		r.SamplingRate = rate
		r.Bytes *= uint64(rate)
		r.Packets *= uint64(rate)
	}
	info.FlowRecords++
	return append(out, r)
}

// nextHop is a next hop address under the names NetFlow/IPFIX give it
// (prefix ip_next_hop or bgp_next_hop, then _ipv4_address or
// _ipv6_address), so that sFlow's and theirs are the same fields.
func nextHop(prefix string, a netip.Addr) flow.Extra {
	a = a.Unmap()
	if a.Is4() {
		return flow.Extra{Name: prefix + "_ipv4_address", Str: a.String(), IsStr: true}
	}
	return flow.Extra{Name: prefix + "_ipv6_address", Str: a.String(), IsStr: true}
}

// appendRouter appends what an extended router record (flow format 1002)
// says: the next hop, and the prefix lengths of the sampled packet's source
// and destination routes, named as IPFIX's sourceIPv4PrefixLength etc. by
// the family of the sampled addresses (the next hop's when none was read).
func appendRouter(out []flow.Extra, r *flow.Record, v gsflow.ExtendedRouter) []flow.Extra {
	a, ok := netip.AddrFromSlice(v.NextHop)
	if ok {
		out = append(out, nextHop("ip_next_hop", a))
	}
	v4 := r.SrcAddr.Is4()
	if !r.SrcAddr.IsValid() {
		v4 = ok && a.Unmap().Is4()
	}
	family := "ipv6"
	if v4 {
		family = "ipv4"
	}
	if (r.SrcAddr.IsValid() || ok) && v.SrcMaskLen <= 128 && v.DstMaskLen <= 128 {
		out = append(out,
			flow.Extra{Name: "source_" + family + "_prefix_length", Num: uint64(v.SrcMaskLen)},
			flow.Extra{Name: "destination_" + family + "_prefix_length", Num: uint64(v.DstMaskLen)})
	}
	return out
}

// formatGateway is the extended gateway flow record (SFLOW-STRUCTS5.txt).
const formatGateway = 1003

// gatewayPath reads dst_as_path in the first extended gateway record of a
// sample's flow records: its first AS (the next adjacent AS) and its last,
// the last of the last segment holding one (the destination AS); ok is
// false when the path is empty or the record short. goflow2 v2.2.6 reads
// only the first segment (and the second as if it were the communities):
// the record is read here. Records are walked by their length, as goflow2
// does, so this is the record goflow2 decoded.
func gatewayPath(recs []byte) (first, last uint32, ok bool) {
	for len(recs) >= 8 {
		format, n := binary.BigEndian.Uint32(recs), binary.BigEndian.Uint32(recs[4:])
		if uint64(n) > uint64(len(recs)-8) {
			return 0, 0, false
		}
		b := recs[8 : 8+n]
		recs = recs[8+n:]
		if format != formatGateway {
			continue
		}
		if len(b) < 4 {
			return 0, 0, false
		}
		switch binary.BigEndian.Uint32(b) { // next hop address type
		case 1:
			b = b[4:]
			if len(b) < 4 {
				return 0, 0, false
			}
			b = b[4:]
		case 2:
			b = b[4:]
			if len(b) < 16 {
				return 0, 0, false
			}
			b = b[16:]
		default:
			return 0, 0, false
		}
		if len(b) < 16 { // as, src_as, src_peer_as, segments
			return 0, 0, false
		}
		segments := binary.BigEndian.Uint32(b[12:])
		b = b[16:]
		for i := uint32(0); i < segments; i++ {
			if len(b) < 8 {
				return 0, 0, false
			}
			count := binary.BigEndian.Uint32(b[4:])
			b = b[8:]
			if uint64(count) > uint64(len(b)/4) {
				return 0, 0, false
			}
			if count > 0 {
				if !ok {
					first, ok = binary.BigEndian.Uint32(b), true
				}
				last = binary.BigEndian.Uint32(b[4*(count-1):])
			}
			b = b[4*count:]
		}
		return first, last, ok
	}
	return 0, 0, false
}

// ethernetFrameMACs returns the addresses of an "Ethernet frame data"
// record (flow format 2). Each mac is XDR opaque[6], padded to 8 bytes:
// length(4) src(6) pad(2) dst(6) pad(2) type(4). goflow2 v2.2.6 reads the
// macs without padding, so its DstMac holds src's padding and dst's first
// 4 bytes, and the top 2 bytes of its EthType dst's last 2. The source is
// read right.
func ethernetFrameMACs(v gsflow.SampledEthernet) (src, dst flow.MAC) {
	src = flow.MAC(v.SrcMac)
	copy(dst[:4], v.DstMac[2:6])
	dst[4], dst[5] = byte(v.EthType>>24), byte(v.EthType>>16)
	return src, dst
}

func sampledIP(r *flow.Record, v gsflow.SampledIPBase) {
	r.SrcAddr, _ = netip.AddrFromSlice(v.SrcIP)
	r.DstAddr, _ = netip.AddrFromSlice(v.DstIP)
	r.Proto = uint8(v.Protocol)
	r.SrcPort, r.DstPort = uint16(v.SrcPort), uint16(v.DstPort)
	r.TCPFlags = uint16(v.TcpFlags)
	r.Bytes = uint64(v.Length)
}
