// Package netflowv5 decodes NetFlow v5 datagrams into flow records with
// goflow2's decoder. NetFlow v5 has no templates: every datagram stands alone.
package netflowv5

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/netsampler/goflow2/v2/decoders/netflowlegacy"

	"github.com/spanflow/spanflow/decoders/reason"
	"github.com/spanflow/spanflow/internal/flow"
)

const (
	headerLen = 24
	recordLen = 48
)

// Info says what one datagram held.
type Info struct {
	Sequence uint32 // flow sequence: flows sent before this datagram
	Count    int
	EngineID uint16 // engine type << 8 | engine id: the sequence space
}

// Decode appends the records of one NetFlow v5 datagram to out.
func Decode(payload []byte, exporter netip.Addr, received time.Time, out []flow.Record) ([]flow.Record, Info, error) {
	var info Info
	if len(payload) < headerLen {
		return out, info, reason.Errorf(reason.Short, "netflow v5 header from %s: %d bytes, want %d", exporter, len(payload), headerLen)
	}
	count := int(binary.BigEndian.Uint16(payload[2:]))
	if count == 0 || count > 30 && headerLen+count*recordLen != len(payload) {
		// v5 allows at most 30 records; tolerate more only when the length agrees.
		return out, info, reason.Errorf(reason.Header, "netflow v5 from %s: header says %d records", exporter, count)
	}
	if headerLen+count*recordLen > len(payload) {
		return out, info, reason.Errorf(reason.Short, "netflow v5 from %s: %d records need %d bytes, datagram has %d",
			exporter, count, headerLen+count*recordLen, len(payload))
	}
	var p netflowlegacy.PacketNetFlowV5
	if err := netflowlegacy.DecodeMessageVersion(bytes.NewBuffer(payload), &p); err != nil {
		return out, info, reason.Errorf(reason.Record, "netflow v5 from %s: %w", exporter, err)
	}
	info.Sequence, info.Count = p.FlowSequence, len(p.Records)
	info.EngineID = uint16(p.EngineType)<<8 | uint16(p.EngineId)
	// Top 2 bits: sampling mode; low 14: interval.
	rate := uint64(p.SamplingInterval & 0x3fff)
	exportMs := int64(p.UnixSecs)*1000 + int64(p.UnixNSecs)/1e6
	for i := range p.Records {
		v := &p.Records[i]
		r := flow.Record{
			Kind: flow.KindNetFlowV5, ObserverIP: exporter, Received: received,
			Start:   time.UnixMilli(exportMs - uptimeBefore(p.SysUptime, v.First)),
			End:     time.UnixMilli(exportMs - uptimeBefore(p.SysUptime, v.Last)),
			SrcAddr: addr(uint32(v.SrcAddr)), DstAddr: addr(uint32(v.DstAddr)),
			SrcPort: v.SrcPort, DstPort: v.DstPort, Proto: v.Proto, TOS: v.Tos, TCPFlags: uint16(v.TCPFlags),
			Bytes: uint64(v.DOctets), Packets: uint64(v.DPkts),
			InIf: uint32(v.Input), OutIf: uint32(v.Output),
		}
		if p.UnixSecs == 0 || (v.First == 0 && v.Last == 0) {
			r.Start, r.End = time.Time{}, time.Time{} // unknown: the receive time below
		}
		r.Start, r.End = flow.ResolveTimes(r.Start, r.End, received)
		if r.Proto == 1 {
			r.ICMPType, r.ICMPCode = icmpOf(v.SrcPort, v.DstPort)
			r.SrcPort, r.DstPort = 0, 0
		}
		if rate > 1 {
			r.SamplingRate = uint32(rate)
			r.Bytes *= rate
			r.Packets *= rate
		}
		r.Extra = append(make([]flow.Extra, 0, 8),
			flow.Extra{Name: "ip_next_hop_ipv4_address", Str: addr(uint32(v.NextHop)).String(), IsStr: true},
			flow.Extra{Name: "bgp_source_as_number", Num: uint64(v.SrcAS)},
			flow.Extra{Name: "bgp_destination_as_number", Num: uint64(v.DstAS)},
			flow.Extra{Name: "source_ipv4_prefix_length", Num: uint64(v.SrcMask)},
			flow.Extra{Name: "destination_ipv4_prefix_length", Num: uint64(v.DstMask)},
			flow.Extra{Name: "engine_type", Num: uint64(p.EngineType)},
			flow.Extra{Name: "engine_id", Num: uint64(p.EngineId)},
		)
		out = append(out, r)
	}
	return out, info, nil
}

// icmpOf is the ICMP type and code of a record's ports. Routers (and
// softflowd, pmacct) put type × 256 + code in the destination port and 0
// in the source port; fprobe puts the type in the source port and the
// code in the destination port. A source port from 1 to 255 with a
// destination port below 256 can only be fprobe's (its type 0 reads the
// same either way).
func icmpOf(srcPort, dstPort uint16) (typ, code uint8) {
	if srcPort != 0 && srcPort < 256 && dstPort < 256 {
		return uint8(srcPort), uint8(dstPort)
	}
	return uint8(dstPort >> 8), uint8(dstPort)
}

// uptimeBefore is how many milliseconds before the uptime now an uptime
// up was: the 32-bit difference read as signed, so that a wrap of the
// uptime (every 49.7 days) between them, and an up a little after now (a
// flow that ended while the datagram was built), are both a few
// milliseconds away rather than 49.7 days.
func uptimeBefore(now, up uint32) int64 { return int64(int32(now - up)) }

func addr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}
