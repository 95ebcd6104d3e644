package meter

import (
	"net/netip"
	"time"

	"github.com/spanflow/spanflow/internal/flow"
)

// Record building: an ended flow's entry becomes a flow.Record in the
// batch passed to the sink.

// Sink takes the flows the table ends, in batches; now is the flow time at
// which they are passed on (the IPFIX encoder's export time). A sink may
// keep the slice only until Write returns.
type Sink interface {
	Write(now time.Time, records []flow.Record) error
}

// emit adds the record of e to the batch.
func (t *Table) emit(e *entry, reason uint8) {
	if e.packets == 0 {
		return
	}
	t.stats.FlowsExported[reason]++
	t.batch = t.batch[:len(t.batch)+1]
	r := &t.batch[len(t.batch)-1]
	fill(r, e, reason)
	if d := initiator(e); d != 0 {
		x := &t.initiators[len(t.batch)-1]
		*x = flow.Extra{Name: flow.ExtraBiflowDirection, Num: d}
		r.Extra = t.initiators[len(t.batch)-1 : len(t.batch) : len(t.batch)]
	}
	if len(t.batch) == cap(t.batch) {
		t.Sync()
	}
}

// Sync passes the batch of ended flows to the sink now, with the table's
// flow time.
func (t *Table) Sync() {
	if len(t.batch) == 0 {
		return
	}
	if err := t.sink.Write(time.Unix(0, t.clock), t.batch); err != nil {
		t.stats.SinkErrors++
		t.log.Warn("sink", "cannot pass flows on", "flows", len(t.batch), "err", err)
	}
	t.batch = t.batch[:0]
}

// Values of IPFIX biflowDirection (RFC 5103) the table gives a TCP record.
const (
	biflowInitiator        = 1 // the record's source opened the connection
	biflowReverseInitiator = 2 // its destination did
)

// initiator is which end of e's connection opened it, as biflowDirection
// numbers it: known when this direction sent the SYN (the client) or the
// SYN-ACK (the server), which the table keeps across active timeouts; 0
// (arbitrary) when it sent neither (the handshake came before the capture
// or the mirror missed it) or both (a simultaneous open).
func initiator(e *entry) uint64 {
	if e.key.proto != 6 {
		return 0
	}
	switch e.state & (stSYN | stSYNACK) {
	case stSYN:
		return biflowInitiator
	case stSYNACK:
		return biflowReverseInitiator
	}
	return 0
}

func fill(r *flow.Record, e *entry, reason uint8) {
	k := &e.key
	*r = flow.Record{
		Kind:             flow.KindIPFIX,
		ObservationPoint: uint64(k.session),
		Start:            time.Unix(0, e.first).UTC(),
		End:              time.Unix(0, e.last).UTC(),
		SrcPort:          k.sport,
		DstPort:          k.dport,
		Proto:            k.proto,
		SrcMAC:           e.srcMAC,
		DstMAC:           e.dstMAC,
		VLAN:             k.vlan,
		InnerVLAN:        k.ivlan,
		SegmentID:        uint64(k.segment),
		TOS:              e.tos,
		TCPFlags:         e.tcpFlags,
		Bytes:            e.bytes,
		Packets:          uint64(e.packets),
		InIf:             e.inIf,
		EndReason:        reason,
		TCP: flow.TCPPerf{
			RTTClient:       time.Duration(e.rttClient) * time.Microsecond,
			RTTServer:       time.Duration(e.rttServer) * time.Microsecond,
			Retransmissions: e.retrans,
			ZeroWindows:     e.zeroWin,
		},
	}
	if k.v6 {
		r.SrcAddr, r.DstAddr = netip.AddrFrom16(k.src), netip.AddrFrom16(k.dst)
	} else {
		r.SrcAddr = netip.AddrFrom4([4]byte(k.src[:4]))
		r.DstAddr = netip.AddrFrom4([4]byte(k.dst[:4]))
	}
	if isICMP(k) {
		r.ICMPType, r.ICMPCode = uint8(k.dport>>8), uint8(k.dport)
		r.SrcPort, r.DstPort = 0, 0
	}
}
