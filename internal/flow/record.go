// Package flow defines the one flow record that every stage of spanflow passes on:
// the exporter's meter produces it, the collector's decoders fill it, the enrichers
// annotate it and the outputs write it as an ECS document (see document.go).
package flow

import (
	"math"
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

// ExtraBiflowDirection is the Extra name of IPFIX biflowDirection (IE
// 239, RFC 5103: 0 arbitrary, 1 the source opened the connection, 2 the
// destination did), as the collector decodes it and the exporter's meter
// sets it for the encoder.
const ExtraBiflowDirection = "biflow_direction"

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
	// InIfSpecial and OutIfSpecial say what an sFlow interface value other
	// than an ifIndex meant (InIf/OutIf are then 0); InIfCount/OutIfCount
	// are the interface count of IfMultiple (0 = unknown).
	InIfSpecial, OutIfSpecial IfSpecial
	InIfCount, OutIfCount     uint32

	// NoPorts says the transport ports were not read (an sFlow sampled
	// header cut before them): no ports and no Community ID are written.
	NoPorts bool
	// NoTCPFlags says a TCP flow has no TCP flags: an sFlow sampled header
	// was cut before them, or a NetFlow v9/IPFIX template has no
	// tcpControlBits. Documents then have no netflow.tcp_control_bits.
	NoTCPFlags bool

	// Discard is set when the exporter reports the packet dropped (an sFlow
	// drop notification, or a flow sample whose output is "discarded").
	Discard *Discard

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

	// SFlowCounters is set on the documents the collector makes from sFlow
	// counter records other than the generic interface counters (Ethernet,
	// LAG, processor, host and VM counters); not a flow either.
	SFlowCounters *CounterSet

	// ExporterAddr is the UDP source of the datagram the record came in;
	// it differs from ObserverIP when an sFlow agent names another address.
	ExporterAddr netip.Addr

	Extra []Extra
}

// IfSpecial is the meaning of an sFlow interface value that is not an
// ifIndex (sFlow v5 flow_sample interface formats).
type IfSpecial uint8

// sFlow interface values that are not an ifIndex.
const (
	IfIndex     IfSpecial = iota // an ifIndex (or 0: unknown)
	IfInternal                   // 0x3FFFFFFF: the agent itself (a local, internal interface)
	IfMultiple                   // format 2: several interfaces (flooding, multicast)
	IfDiscarded                  // format 1 (output): the packet was dropped
)

func (s IfSpecial) String() string {
	switch s {
	case IfInternal:
		return "internal"
	case IfMultiple:
		return "multiple"
	case IfDiscarded:
		return "discarded"
	}
	return ""
}

// Discard is why an exporter dropped a packet.
type Discard struct {
	Reason uint32 // sFlow drop reason (sflow_drops.txt): 0-255 ICMP unreachable codes, 256 and up others
	// Notification is true for an sFlow drop notification (sample type
	// 5); false for a flow sample whose output interface says "discarded".
	Notification bool
	Unreported   uint32 // drops not reported since the last notification (rate limiting)
}

// CounterSet is one sFlow counter record other than the generic interface
// counters: Structure names it (ethernet, lag, processor, host_cpu, ...).
type CounterSet struct {
	Structure   string
	SourceType  uint32 // sFlow data source type: 0 ifIndex, 1 VLAN, 2 physical entity, 3 logical entity (VM)
	SourceIndex uint32
	Values      []CounterValue
}

// CounterValue is one value of a counter record: a number, a float (load
// averages) or a string (host names).
type CounterValue struct {
	Name  string
	Num   uint64
	Float float64
	Str   string
	Kind  CounterKind
}

// CounterKind says which of a CounterValue's values is used.
type CounterKind uint8

// Kinds of counter values.
const (
	CounterNum CounterKind = iota
	CounterFloat
	CounterStr
)

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

// minTime is the earliest flow time taken as given: an earlier one comes
// from an exporter that left a time at zero or whose clock is unset.
var minTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// ResolveTimes gives a record's start and end as the decoders keep them:
// a time absent, zero or before 2000 is unknown; an unknown end is the
// receive time, an unknown start (or one after the end) the end. So no
// document says 1970, and every flow has both times.
func ResolveTimes(start, end, received time.Time) (time.Time, time.Time) {
	if start.Before(minTime) {
		start = time.Time{}
	}
	if end.Before(minTime) {
		end = time.Time{}
	}
	if end.IsZero() {
		end = received
	}
	if start.IsZero() || start.After(end) {
		start = end
	}
	return start, end
}

// Duration is End-Start, or 0 when either is unknown.
// BeyondLong reports whether a number the record's document holds is past
// math.MaxInt64, Elasticsearch's long: a counter near 2^64 from a buggy or
// hostile exporter (the mapping keeps such a value in _source only).
func (r *Record) BeyondLong() bool {
	const most = math.MaxInt64
	if r.Bytes > most || r.Packets > most {
		return true
	}
	if c := r.Counters; c != nil && max(c.Speed, c.InOctets, c.InUcastPkts, c.InMulticastPkts, c.InBroadcastPkts,
		c.InDiscards, c.InErrors, c.InUnknownProtos, c.OutOctets, c.OutUcastPkts, c.OutMulticastPkts,
		c.OutBroadcastPkts, c.OutDiscards, c.OutErrors) > most {
		return true
	}
	if e := r.Exporter; e != nil && max(e.Datagrams, e.Records, e.SequenceLosses, e.Templates, e.DecodeErrors) > most {
		return true
	}
	for i := range r.Extra {
		if x := &r.Extra[i]; x.Raw == nil && !x.IsStr && x.Num > most {
			return true
		}
	}
	return false
}

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
