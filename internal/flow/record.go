// Package flow defines the one flow record that every stage of spanflow passes on:
// the exporter's meter produces it, the collector's decoders fill it, the enrichers
// annotate it and the outputs write it as an ECS document (see document.go).
package flow

import (
	"net/netip"
	"time"
)

// Kind says which protocol a record arrived in.
type Kind uint8

// Protocols a record can come from.
const (
	KindUnknown Kind = iota
	KindNetFlowV5
	KindNetFlowV9
	KindIPFIX
	KindSFlow
)

func (k Kind) String() string {
	switch k {
	case KindNetFlowV5:
		return "netflow_v5"
	case KindNetFlowV9:
		return "netflow_v9"
	case KindIPFIX:
		return "ipfix"
	case KindSFlow:
		return "sflow"
	}
	return "unknown"
}

// MAC is an Ethernet address; the zero value means "not known".
type MAC [6]byte

// IsZero reports whether the address is unknown.
func (m MAC) IsZero() bool { return m == MAC{} }

// String formats the address the way ECS wants it: upper case, dash separated.
func (m MAC) String() string {
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, 17)
	for i, x := range m {
		if i > 0 {
			b = append(b, '-')
		}
		b = append(b, hex[x>>4], hex[x&0xf])
	}
	return string(b)
}

// TCPPerf is what the exporter's meter measures about a TCP connection.
type TCPPerf struct {
	// RTTClient is the time from the server's SYN-ACK to the client's ACK (the
	// client side of the handshake); RTTServer from the client's SYN to the
	// server's SYN-ACK. Zero means not measured.
	RTTClient, RTTServer time.Duration
	Retransmissions      uint32 // packets whose sequence range was already seen
	ZeroWindows          uint32 // segments that advertised a zero receive window
}

// IsZero reports whether nothing was measured.
func (t TCPPerf) IsZero() bool { return t == TCPPerf{} }

// VSphere is what vCenter knows about one end of a flow.
type VSphere struct {
	VMName, VMUUID string
	HostName       string
	ClusterName    string
	DatacenterName string
	NetworkName    string // port group or distributed port group
	Project        string
}

// Endpoint holds the enrichment of one end of a flow.
type Endpoint struct {
	VSphere *VSphere
	Network *NetworkInfo // from the networks file, for what vCenter does not know
}

// NetworkInfo is what the networks file says about the network an address
// belongs to (physical servers, load balancers, the internet, partners).
type NetworkInfo struct {
	Name, Site, Role, Project string
}

// Extra is an information element without an ECS home; it is written as
// netflow.<Name>, Name being the IANA name in snake_case.
type Extra struct {
	Name string
	// Exactly one of the values is used: Raw when set, else Str when
	// IsStr, else Num.
	Num   uint64
	Str   string
	IsStr bool
	// Raw is a JSON value written as it is: signed and float numbers,
	// booleans. The decoder that makes it writes valid JSON.
	Raw []byte
}

// Record is one flow: the unit every stage passes on.
type Record struct {
	// Where the record came from.
	Kind              Kind
	ObserverIP        netip.Addr // the exporter (the datagram's source, or sFlow agent)
	ObservationDomain uint32
	ObservationPoint  uint64
	Received          time.Time // when the collector received it (zero in the exporter)

	Start, End time.Time

	SrcAddr, DstAddr netip.Addr
	SrcPort, DstPort uint16
	Proto            uint8
	SrcMAC, DstMAC   MAC
	VLAN             uint16 // outer 802.1Q VLAN id; 0 = untagged
	InnerVLAN        uint16 // 802.1ad customer VLAN id (QinQ); 0 = none
	SegmentID        uint64 // VXLAN/Geneve VNI or GRE key (layer2SegmentId); 0 = none
	TOS              uint8
	TCPFlags         uint16
	ICMPType         uint8 // valid when Proto is 1 or 58
	ICMPCode         uint8

	Bytes, Packets uint64 // after sampling is applied
	SamplingRate   uint32 // 0 or 1 = not sampled

	InIf, OutIf         uint32 // 0 = unknown
	InIfName, OutIfName string

	EndReason uint8 // IPFIX flowEndReason; 0 = unknown
	TCP       TCPPerf

	Src, Dst  Endpoint
	Locality  string // internal / external
	Direction string // east-west / north-south / unknown

	// Counters is set on the interface counter documents the collector makes
	// from sFlow counter samples; such a record is not a flow and has no
	// addresses, bytes or packets.
	Counters *IfCounters

	// Exporter is set on the exporter statistics documents the collector
	// writes every interval, one per exporter and observation domain; such a
	// record is not a flow either.
	Exporter *ExporterStats

	Extra []Extra
}

// ExporterStats is what the collector saw of one exporter and observation
// domain during one interval.
type ExporterStats struct {
	Interval       time.Duration
	Datagrams      uint64 // datagrams received
	Records        uint64 // records decoded (flows and interface counters)
	SequenceLosses uint64 // missing by sequence number: datagrams (NetFlow v9, sFlow) or records (NetFlow v5, IPFIX)
	Templates      uint64 // NetFlow v9/IPFIX templates known for the domain at the end of the interval
	DecodeErrors   uint64 // datagrams that did not decode cleanly (malformed, limits)
}

// IfCounters are the generic interface counters (RFC 3176 / sFlow v5
// counters_sample format 1, IF-MIB ifTable/ifXTable) of one interface.
type IfCounters struct {
	Index     uint32
	Type      uint32
	Speed     uint64 // bits per second
	Direction uint32 // 0 unknown, 1 full duplex, 2 half duplex, 3 in, 4 out
	Status    uint32 // bit 0 admin up, bit 1 oper up

	InOctets, InUcastPkts, InMulticastPkts, InBroadcastPkts uint64
	InDiscards, InErrors, InUnknownProtos                   uint64
	OutOctets, OutUcastPkts, OutMulticastPkts               uint64
	OutBroadcastPkts, OutDiscards, OutErrors                uint64
	Promiscuous                                             uint32
}

// Duration is End-Start, or 0 when either is unknown.
func (r *Record) Duration() time.Duration {
	if r.Start.IsZero() || r.End.IsZero() || r.End.Before(r.Start) {
		return 0
	}
	return r.End.Sub(r.Start)
}

// Sink receives records; the collector's outputs implement it. A sink may keep
// the slice only until Write returns. The collector calls Write from several
// goroutines at once (one per decoding worker), so a sink must be safe for
// concurrent use.
type Sink interface {
	Write(records []Record) error
}

// Enricher annotates records in place (vCenter inventory, networks file, ...).
type Enricher interface {
	Enrich(r *Record)
}
