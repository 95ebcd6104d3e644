package flow

import (
	"crypto/sha1"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/spanflow/spanflow/internal/mdsum"
)

// Field is one field of the flow document. The table below is the single source
// of the document's shape: the NDJSON writer, the Elasticsearch mapping and
// docs/fields.md are all derived from it.
type Field struct {
	Name        string // dotted ECS (or netflow.*, flow.*, spanflow.*) name
	Type        string // Elasticsearch field type
	Description string
	// put appends the JSON value of the field to b; ok is false when the record
	// has no value for it.
	put func(b []byte, r *Record) (out []byte, ok bool)
}

// ExtrasField names the place of Record.Extra in the document (netflow.<name>).
const ExtrasField = "netflow.*"

// CountersField names the place of Record.SFlowCounters in the document
// (spanflow.counters.<structure>.<name>).
const CountersField = "spanflow.counters.*"

// Fields lists every field of the flow document, in document order.
func Fields() []Field { return slices.Clone(fields) }

// Timestamps are written with millisecond precision, in UTC, as Elasticsearch's
// date type (strict_date_optional_time) expects.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

func putTime(b []byte, t time.Time) ([]byte, bool) {
	if t.IsZero() {
		return b, false
	}
	b = append(b, '"')
	b = appendTime(b, t)
	return append(b, '"'), true
}

// appendTime formats t as timeLayout does, without its generic machinery:
// the civil date comes from the days since 1970 (Hinnant's days_from_civil
// inverse), with no time zone lookup, and the date of the last day formatted
// is kept (flows of a stream mostly share it).
func appendTime(b []byte, t time.Time) []byte {
	days, rem := splitDays(t)
	var y, mo, d int
	if c := lastDay.Load(); c != 0 && int64(c>>23) == days+(1<<20) {
		y, mo, d = int(c>>9&0x3fff), int(c>>5&0xf), int(c&0x1f)
	} else {
		y, mo, d = civil(days)
		if y < 0 || y > 9999 {
			return t.UTC().AppendFormat(b, timeLayout)
		}
		if days+(1<<20) >= 0 && days+(1<<20) < 1<<41 {
			lastDay.Store(uint64(days+(1<<20))<<23 | uint64(y)<<9 | uint64(mo)<<5 | uint64(d))
		}
	}
	return appendClock(b, y, mo, d, rem, t.Nanosecond()/1e6)
}

// splitDays is t's day number (days since 1970-01-01) and second of the day.
func splitDays(t time.Time) (days, rem int64) {
	sec := t.Unix()
	days, rem = sec/86400, sec%86400
	if rem < 0 {
		days, rem = days-1, rem+86400
	}
	return days, rem
}

// appendClock writes the date, the second of the day and the milliseconds
// as timeLayout does, for years 0 to 9999.
func appendClock(b []byte, y, mo, d int, rem int64, ms int) []byte {
	b = appendSecond(b, y, mo, d, rem)
	return appendMillis(b, ms)
}

// appendSecond writes the first 20 bytes of timeLayout, up to the dot.
func appendSecond(b []byte, y, mo, d int, rem int64) []byte {
	h, mi, s := int(rem/3600), int(rem/60%60), int(rem%60)
	return append(b,
		byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+mo/10), byte('0'+mo%10), '-', byte('0'+d/10), byte('0'+d%10), 'T',
		byte('0'+h/10), byte('0'+h%10), ':', byte('0'+mi/10), byte('0'+mi%10), ':', byte('0'+s/10), byte('0'+s%10), '.')
}

func appendMillis(b []byte, ms int) []byte {
	return append(b, byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

// dayDate is a day number and its date, cached by an Encoder.
type dayDate struct {
	day      int64
	y, mo, d int32
	ok       bool
}

// secondText is a Unix second and its text up to the milliseconds,
// cached by an Encoder.
type secondText struct {
	sec  int64
	text [20]byte
	ok   bool
}

// appendTime is the package's appendTime with the Encoder's own caches,
// which one goroutine's encoder reads with no atomic operation: the text of
// four seconds formatted lately, replaced in turn (a document's receive,
// start and end times are often three different seconds; the receive time
// is shared by a datagram's records, the end and start times by flows
// exported together), and the date of the two days last formatted (a
// flow's times and the receive time are often on two different days: an
// exporter's clock, a stream replayed).
func (e *Encoder) appendTime(b []byte, t time.Time) []byte {
	sec, ms := t.Unix(), t.Nanosecond()/1e6
	sc := &e.secs
	i := 0
	for i < len(sc) && !(sc[i].ok && sc[i].sec == sec) {
		i++
	}
	if i == len(sc) {
		days, rem := splitDays(t)
		c := &e.days
		switch {
		case c[0].ok && c[0].day == days:
		case c[1].ok && c[1].day == days:
			c[0], c[1] = c[1], c[0]
		default:
			y, mo, d := civil(days)
			if y < 0 || y > 9999 {
				return t.UTC().AppendFormat(b, timeLayout)
			}
			c[1] = c[0]
			c[0] = dayDate{day: days, y: int32(y), mo: int32(mo), d: int32(d), ok: true}
		}
		i = int(e.secsNext)
		e.secsNext = (e.secsNext + 1) % uint8(len(sc))
		sc[i].sec, sc[i].ok = sec, true
		appendSecond(sc[i].text[:0], int(c[0].y), int(c[0].mo), int(c[0].d), rem)
	}
	b = append(b, sc[i].text[:]...)
	return appendMillis(b, ms)
}

// lastDay caches the date of the last day appendTime formatted: the day
// number plus 2^20 (so that days before 1970 are positive), the year, the
// month and the day, packed; 0 when empty. Shared by all encoders, atomically.
var lastDay atomic.Uint64

// civil is the year, month and day of a day number (days since 1970-01-01).
func civil(days int64) (y, mo, d int) {
	z := days + 719468
	era := z / 146097
	if z < 0 {
		era = (z - 146096) / 146097
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = int(doy - (153*mp+2)/5 + 1)
	mo = int(mp + 3)
	if mo > 12 {
		mo -= 12
	}
	y = int(yoe + era*400)
	if mo <= 2 {
		y++
	}
	return y, mo, d
}

func putUint(b []byte, v uint64, ok bool) ([]byte, bool) {
	if !ok {
		return b, false
	}
	return strconv.AppendUint(b, v, 10), true
}

// putUintString writes a number as a JSON string, for ECS fields typed keyword.
func putUintString(b []byte, v uint64, ok bool) ([]byte, bool) {
	if !ok {
		return b, false
	}
	b = append(b, '"')
	b = strconv.AppendUint(b, v, 10)
	return append(b, '"'), true
}

func putString(b []byte, s string) ([]byte, bool) {
	if s == "" {
		return b, false
	}
	return AppendJSONString(b, s), true
}

func putAddr(b []byte, r *Record, src bool) ([]byte, bool) {
	a := r.DstAddr
	if src {
		a = r.SrcAddr
	}
	if !a.IsValid() {
		return b, false
	}
	b = append(b, '"')
	b = appendAddr(b, a.Unmap())
	return append(b, '"'), true
}

func putMAC(b []byte, m MAC) ([]byte, bool) {
	if m.IsZero() {
		return b, false
	}
	const hex = "0123456789ABCDEF"
	b = append(b, '"')
	for i, x := range m {
		if i > 0 {
			b = append(b, '-')
		}
		b = append(b, hex[x>>4], hex[x&0xf])
	}
	return append(b, '"'), true
}

// hasPorts reports whether the transport has ports worth writing.
func hasPorts(r *Record) bool {
	if r.NoPorts {
		return false
	}
	switch r.Proto {
	case 6, 17, 132, 33, 136: // TCP, UDP, SCTP, DCCP, UDP-Lite
		return true
	}
	return r.SrcPort != 0 || r.DstPort != 0
}

// isICMP reports whether the record's ICMP type and code are known.
func isICMP(r *Record) bool {
	return !r.NoPorts && (r.Proto == 1 && r.SrcAddr.Unmap().Is4()) || (r.Proto == 58 && r.SrcAddr.Is6() && !r.SrcAddr.Is4In6())
}

func vsphereField(name, desc string, src bool, get func(*VSphere) string) Field {
	side := "destination"
	if src {
		side = "source"
	}
	return Field{Name: side + ".vsphere." + name, Type: "keyword", Description: desc + " (" + side + " end)",
		put: func(b []byte, r *Record) ([]byte, bool) {
			v := r.Dst.VSphere
			if src {
				v = r.Src.VSphere
			}
			if v == nil {
				return b, false
			}
			return putString(b, get(v))
		}}
}

func vsphereFields(src bool) []Field {
	return []Field{
		vsphereField("vm.name", "VM name in vCenter", src, func(v *VSphere) string { return v.VMName }),
		vsphereField("vm.uuid", "VM instance UUID", src, func(v *VSphere) string { return v.VMUUID }),
		vsphereField("host.name", "ESXi host running the VM", src, func(v *VSphere) string { return v.HostName }),
		vsphereField("cluster.name", "vSphere cluster of the host", src, func(v *VSphere) string { return v.ClusterName }),
		vsphereField("datacenter.name", "vSphere datacenter", src, func(v *VSphere) string { return v.DatacenterName }),
		vsphereField("network.name", "port group or distributed port group of the VM's NIC", src, func(v *VSphere) string { return v.NetworkName }),
		vsphereField("project", "project (tenant) network the VM belongs to", src, func(v *VSphere) string { return v.Project }),
	}
}

func networkField(name, desc string, src bool, get func(*NetworkInfo) string) Field {
	side := "destination"
	if src {
		side = "source"
	}
	return Field{Name: side + ".network." + name, Type: "keyword", Description: desc + " (" + side + " end, from the networks file)",
		put: func(b []byte, r *Record) ([]byte, bool) {
			n := r.Dst.Network
			if src {
				n = r.Src.Network
			}
			if n == nil {
				return b, false
			}
			return putString(b, get(n))
		}}
}

func networkFields(src bool) []Field {
	return []Field{
		networkField("name", "name of the network the address belongs to", src, func(n *NetworkInfo) string { return n.Name }),
		networkField("site", "site of that network", src, func(n *NetworkInfo) string { return n.Site }),
		networkField("role", "role of that network (servers, load balancers, internet, ...)", src, func(n *NetworkInfo) string { return n.Role }),
		networkField("project", "project (tenant) that network belongs to", src, func(n *NetworkInfo) string { return n.Project }),
	}
}

func endpointFields(side string, src bool) []Field {
	fs := []Field{
		{Name: side + ".ip", Type: "ip", Description: side + " IPv4 or IPv6 address",
			put: func(b []byte, r *Record) ([]byte, bool) { return putAddr(b, r, src) }},
		{Name: side + ".mac", Type: "keyword", Description: side + " MAC address (ECS format, upper case, dash separated)",
			put: func(b []byte, r *Record) ([]byte, bool) {
				if src {
					return putMAC(b, r.SrcMAC)
				}
				return putMAC(b, r.DstMAC)
			}},
		{Name: side + ".port", Type: "long", Description: side + " transport port (TCP, UDP, SCTP)",
			put: func(b []byte, r *Record) ([]byte, bool) {
				p := r.DstPort
				if src {
					p = r.SrcPort
				}
				return putUint(b, uint64(p), hasPorts(r))
			}},
	}
	fs = append(fs, networkFields(src)...)
	return append(fs, vsphereFields(src)...)
}

var fields = buildFields()

func buildFields() []Field {
	fs := []Field{
		{Name: "@timestamp", Type: "date", Description: "end of the flow (when it was last seen); the receive time when the exporter gave none",
			put: func(b []byte, r *Record) ([]byte, bool) {
				if !r.End.IsZero() {
					return putTime(b, r.End)
				}
				return putTime(b, r.Received)
			}},
		{Name: "event.kind", Type: "keyword", Description: `"event" for a flow, "metric" for interface counters (sFlow counter samples) and exporter statistics`,
			put: func(b []byte, r *Record) ([]byte, bool) {
				if r.Counters != nil || r.Exporter != nil || r.SFlowCounters != nil {
					return append(b, `"metric"`...), true
				}
				return append(b, `"event"`...), true
			}},
		{Name: "event.category", Type: "keyword", Description: `always "network"`,
			put: func(b []byte, _ *Record) ([]byte, bool) { return append(b, `"network"`...), true }},
		{Name: "event.action", Type: "keyword", Description: `"network_flow" for a flow, "packet_discarded" for an sFlow drop notification, "interface_counters" for interface counters, "sflow_counters" for other sFlow counter records, "exporter_stats" for exporter statistics`,
			put: func(b []byte, r *Record) ([]byte, bool) {
				if r.Counters != nil {
					return append(b, `"interface_counters"`...), true
				}
				if r.SFlowCounters != nil {
					return append(b, `"sflow_counters"`...), true
				}
				if r.Discard != nil && r.Discard.Notification {
					return append(b, `"packet_discarded"`...), true
				}
				if r.Exporter != nil {
					return append(b, `"exporter_stats"`...), true
				}
				return append(b, `"network_flow"`...), true
			}},
		{Name: "event.created", Type: "date", Description: "when the collector received the record",
			put: func(b []byte, r *Record) ([]byte, bool) { return putTime(b, r.Received) }},
		{Name: "event.start", Type: "date", Description: "first packet of the flow",
			put: func(b []byte, r *Record) ([]byte, bool) { return putTime(b, r.Start) }},
		{Name: "event.end", Type: "date", Description: "last packet of the flow",
			put: func(b []byte, r *Record) ([]byte, bool) { return putTime(b, r.End) }},
		{Name: "event.duration", Type: "long", Description: "end minus start, in nanoseconds (ECS)",
			put: func(b []byte, r *Record) ([]byte, bool) {
				return putUint(b, uint64(r.Duration()), !r.Start.IsZero() && !r.End.IsZero())
			}},
		{Name: "flow.protocol", Type: "keyword", Description: "protocol the record arrived in: netflow_v5, netflow_v9, ipfix or sflow",
			put: func(b []byte, r *Record) ([]byte, bool) {
				if r.Kind == KindUnknown {
					return b, false
				}
				return putString(b, r.Kind.String())
			}},
		{Name: "flow.locality", Type: "keyword", Description: "internal or external: whether the flow stays inside the known networks; multicast (to 224.0.0.0/4 or ff00::/8) or link-local (from or to 169.254.0.0/16 or fe80::/10, or to 255.255.255.255) when it is neither, unless the networks file lists that range",
			put: func(b []byte, r *Record) ([]byte, bool) { return putString(b, r.Locality) }},
		{Name: "flow.direction", Type: "keyword", Description: "east-west (both ends internal), north-south (one end external), unknown, or multicast / link-local as flow.locality (traffic that stays on a link or goes to a group is neither east-west nor north-south; ECS network.direction has no value for it)",
			put: func(b []byte, r *Record) ([]byte, bool) { return putString(b, r.Direction) }},
		{Name: "netflow.observation_domain_id", Type: "long", Description: "IPFIX observation domain / NetFlow v9 source id / sFlow sub-agent id",
			put: func(b []byte, r *Record) ([]byte, bool) {
				return putUint(b, uint64(r.ObservationDomain), r.Kind == KindIPFIX || r.Kind == KindNetFlowV9 || r.Kind == KindSFlow)
			}},
		{Name: "netflow.observation_point_id", Type: "long", Description: "observation point (mirror port) the flow was metered at",
			put: func(b []byte, r *Record) ([]byte, bool) {
				return putUint(b, r.ObservationPoint, r.ObservationPoint != 0)
			}},
		{Name: "netflow.ip_class_of_service", Type: "long", Description: "IPv4 TOS / IPv6 traffic class byte",
			put: func(b []byte, r *Record) ([]byte, bool) { return putUint(b, uint64(r.TOS), r.TOS != 0) }},
		{Name: "netflow.tcp_control_bits", Type: "long", Description: "OR of the TCP flags seen in the flow (TCP flows whose exporter sent them)",
			put: func(b []byte, r *Record) ([]byte, bool) {
				return putUint(b, uint64(r.TCPFlags), r.Proto == 6 && !r.NoTCPFlags)
			}},
		{Name: "netflow.icmp_type_ipv4", Type: "long", Description: "ICMP type (IPv4)",
			put: func(b []byte, r *Record) ([]byte, bool) {
				return putUint(b, uint64(r.ICMPType), r.Proto == 1 && isICMP(r))
			}},
		{Name: "netflow.icmp_code_ipv4", Type: "long", Description: "ICMP code (IPv4)",
			put: func(b []byte, r *Record) ([]byte, bool) {
				return putUint(b, uint64(r.ICMPCode), r.Proto == 1 && isICMP(r))
			}},
		{Name: "netflow.icmp_type_ipv6", Type: "long", Description: "ICMPv6 type",
			put: func(b []byte, r *Record) ([]byte, bool) {
				return putUint(b, uint64(r.ICMPType), r.Proto == 58 && isICMP(r))
			}},
		{Name: "netflow.icmp_code_ipv6", Type: "long", Description: "ICMPv6 code",
			put: func(b []byte, r *Record) ([]byte, bool) {
				return putUint(b, uint64(r.ICMPCode), r.Proto == 58 && isICMP(r))
			}},
		{Name: "netflow.layer2_segment_id", Type: "long", Description: "VXLAN/Geneve VNI or GRE key of the tunnel the flow was seen in",
			put: func(b []byte, r *Record) ([]byte, bool) { return putUint(b, r.SegmentID, r.SegmentID != 0) }},
		{Name: "netflow.flow_end_reason", Type: "long", Description: "IPFIX flowEndReason: 1 idle timeout, 2 active timeout, 3 end of flow (FIN/RST), 4 forced end, 5 lack of resources",
			put: func(b []byte, r *Record) ([]byte, bool) { return putUint(b, uint64(r.EndReason), r.EndReason != 0) }},
		{Name: "netflow.sampling_interval", Type: "long", Description: "1 in N sampling the exporter applied; bytes and packets are already multiplied by it",
			put: func(b []byte, r *Record) ([]byte, bool) {
				return putUint(b, uint64(r.SamplingRate), r.SamplingRate > 1)
			}},
		{Name: ExtrasField, Type: "dynamic", Description: "information elements without an ECS home, by IANA name in snake_case, vendors' elements prefixed with the vendor (numbers, booleans, strings: dates in RFC 3339, addresses, MACs, unknown elements in hex); see docs/collector.md"},
		{Name: "network.transport", Type: "keyword", Description: "transport protocol name (tcp, udp, icmp, ipv6-icmp, ...)",
			put: func(b []byte, r *Record) ([]byte, bool) {
				if !r.SrcAddr.IsValid() && r.Proto == 0 {
					return b, false
				}
				return putString(b, TransportName(r.Proto))
			}},
		{Name: "network.iana_number", Type: "keyword", Description: "IANA protocol number",
			put: func(b []byte, r *Record) ([]byte, bool) {
				return putUintString(b, uint64(r.Proto), r.SrcAddr.IsValid())
			}},
		{Name: "network.type", Type: "keyword", Description: "ipv4 or ipv6",
			put: func(b []byte, r *Record) ([]byte, bool) {
				switch {
				case !r.SrcAddr.IsValid():
					return b, false
				case r.SrcAddr.Unmap().Is4():
					return append(b, `"ipv4"`...), true
				}
				return append(b, `"ipv6"`...), true
			}},
		{Name: "network.bytes", Type: "long", Description: "bytes of the flow at layer 3 (IP total length), scaled by the sampling interval",
			put: func(b []byte, r *Record) ([]byte, bool) {
				return putUint(b, r.Bytes, r.Counters == nil && r.Exporter == nil && r.SFlowCounters == nil)
			}},
		{Name: "network.packets", Type: "long", Description: "packets of the flow, scaled by the sampling interval",
			put: func(b []byte, r *Record) ([]byte, bool) {
				return putUint(b, r.Packets, r.Counters == nil && r.Exporter == nil && r.SFlowCounters == nil)
			}},
		{Name: "network.vlan.id", Type: "keyword", Description: "outer 802.1Q VLAN id",
			put: func(b []byte, r *Record) ([]byte, bool) { return putUintString(b, uint64(r.VLAN), r.VLAN != 0) }},
		{Name: "network.inner.vlan.id", Type: "keyword", Description: "inner (customer) VLAN id of a QinQ frame",
			put: func(b []byte, r *Record) ([]byte, bool) {
				return putUintString(b, uint64(r.InnerVLAN), r.InnerVLAN != 0)
			}},
		{Name: "network.community_id", Type: "keyword", Description: "Community ID flow hash (v1, seed 0) of the 5-tuple; absent when the ports (or ICMP type) were not read",
			put: func(b []byte, r *Record) ([]byte, bool) {
				if !r.SrcAddr.IsValid() || !r.DstAddr.IsValid() || r.NoPorts {
					return b, false
				}
				b = append(b, '"')
				b = AppendCommunityID(b, r)
				return append(b, '"'), true
			}},
		{Name: "observer.ip", Type: "ip", Description: "the exporter that sent the record",
			put: func(b []byte, r *Record) ([]byte, bool) {
				if !r.ObserverIP.IsValid() {
					return b, false
				}
				b = append(b, '"')
				b = appendAddr(b, r.ObserverIP.Unmap())
				return append(b, '"'), true
			}},
		{Name: "spanflow.observer.source_ip", Type: "ip", Description: "UDP source address of the datagram the record came in (observer.ip is the sFlow agent address, which can differ)",
			put: func(b []byte, r *Record) ([]byte, bool) {
				if !r.ExporterAddr.IsValid() {
					return b, false
				}
				b = append(b, '"')
				b = appendAddr(b, r.ExporterAddr.Unmap())
				return append(b, '"'), true
			}},
		{Name: "spanflow.ingress.interface.special", Type: "keyword", Description: `sFlow input interface that is not an ifIndex: "internal" (0x3FFFFFFF, the agent itself), "multiple"`,
			put: func(b []byte, r *Record) ([]byte, bool) { return putString(b, r.InIfSpecial.String()) }},
		{Name: "spanflow.ingress.interface.count", Type: "long", Description: `number of input interfaces when special is "multiple" (0 = unknown)`,
			put: func(b []byte, r *Record) ([]byte, bool) {
				return putUint(b, uint64(r.InIfCount), r.InIfSpecial == IfMultiple)
			}},
		{Name: "spanflow.egress.interface.special", Type: "keyword", Description: `sFlow output interface that is not an ifIndex: "internal" (0x3FFFFFFF, the agent itself), "multiple", "discarded" (the packet was dropped)`,
			put: func(b []byte, r *Record) ([]byte, bool) { return putString(b, r.OutIfSpecial.String()) }},
		{Name: "spanflow.egress.interface.count", Type: "long", Description: `number of output interfaces when special is "multiple" (0 = unknown)`,
			put: func(b []byte, r *Record) ([]byte, bool) {
				return putUint(b, uint64(r.OutIfCount), r.OutIfSpecial == IfMultiple)
			}},
		{Name: "spanflow.discard.reason_code", Type: "long", Description: "sFlow drop reason code (sflow_drops.txt): 0-15 ICMP unreachable codes, 256 unknown, 257 ttl_exceeded, 258 acl, ...",
			put: func(b []byte, r *Record) ([]byte, bool) {
				if r.Discard == nil {
					return b, false
				}
				return putUint(b, uint64(r.Discard.Reason), true)
			}},
		{Name: "spanflow.discard.reason", Type: "keyword", Description: "name of the drop reason (sflow_drops.txt), or its number when it has none",
			put: func(b []byte, r *Record) ([]byte, bool) {
				if r.Discard == nil {
					return b, false
				}
				return putString(b, DropReasonName(r.Discard.Reason))
			}},
		{Name: "spanflow.discard.unreported", Type: "long", Description: "drops the exporter did not report before this drop notification (rate limiting)",
			put: func(b []byte, r *Record) ([]byte, bool) {
				if r.Discard == nil || !r.Discard.Notification {
					return b, false
				}
				return putUint(b, uint64(r.Discard.Unreported), true)
			}},
		{Name: CountersField, Type: "dynamic", Description: "sFlow counter records other than the generic interface counters, as spanflow.counters.<structure>.<name> (docs/collector.md lists them)"},
		{Name: "spanflow.counters.source_type", Type: "long", Description: "sFlow data source type of the counters: 0 ifIndex, 1 VLAN, 2 physical entity, 3 logical entity (a VM)",
			put: func(b []byte, r *Record) ([]byte, bool) {
				if r.SFlowCounters == nil {
					return b, false
				}
				return putUint(b, uint64(r.SFlowCounters.SourceType), true)
			}},
		{Name: "spanflow.counters.source_index", Type: "long", Description: "sFlow data source index of the counters (an ifIndex, or an entity index)",
			put: func(b []byte, r *Record) ([]byte, bool) {
				if r.SFlowCounters == nil {
					return b, false
				}
				return putUint(b, uint64(r.SFlowCounters.SourceIndex), true)
			}},
		{Name: "observer.ingress.interface.id", Type: "keyword", Description: "ingress interface index (SNMP ifIndex) at the exporter",
			put: func(b []byte, r *Record) ([]byte, bool) { return putUintString(b, uint64(r.InIf), r.InIf != 0) }},
		{Name: "observer.ingress.interface.name", Type: "keyword", Description: "ingress interface name (from options templates or configuration)",
			put: func(b []byte, r *Record) ([]byte, bool) { return putString(b, r.InIfName) }},
		{Name: "observer.egress.interface.id", Type: "keyword", Description: "egress interface index (SNMP ifIndex) at the exporter",
			put: func(b []byte, r *Record) ([]byte, bool) { return putUintString(b, uint64(r.OutIf), r.OutIf != 0) }},
		{Name: "observer.egress.interface.name", Type: "keyword", Description: "egress interface name (from options templates or configuration)",
			put: func(b []byte, r *Record) ([]byte, bool) { return putString(b, r.OutIfName) }},
		{Name: "spanflow.tcp.rtt_client_us", Type: "long", Description: "TCP handshake RTT on the client side (SYN-ACK to ACK), microseconds",
			put: func(b []byte, r *Record) ([]byte, bool) {
				return putUint(b, uint64(r.TCP.RTTClient/time.Microsecond), r.TCP.RTTClient > 0)
			}},
		{Name: "spanflow.tcp.rtt_server_us", Type: "long", Description: "TCP handshake RTT on the server side (SYN to SYN-ACK), microseconds",
			put: func(b []byte, r *Record) ([]byte, bool) {
				return putUint(b, uint64(r.TCP.RTTServer/time.Microsecond), r.TCP.RTTServer > 0)
			}},
		{Name: "spanflow.tcp.retransmissions", Type: "long", Description: "TCP segments retransmitted in the flow",
			put: func(b []byte, r *Record) ([]byte, bool) {
				return putUint(b, uint64(r.TCP.Retransmissions), !r.TCP.IsZero())
			}},
		{Name: "spanflow.tcp.zero_windows", Type: "long", Description: "TCP segments that advertised a zero receive window",
			put: func(b []byte, r *Record) ([]byte, bool) {
				return putUint(b, uint64(r.TCP.ZeroWindows), !r.TCP.IsZero())
			}},
	}
	fs = append(fs, counterFields()...)
	fs = append(fs, exporterFields()...)
	fs = append(fs, endpointFields("destination", false)...)
	fs = append(fs, endpointFields("source", true)...)
	slices.SortStableFunc(fs, func(a, b Field) int { return compareNames(a.Name, b.Name) })
	return fs
}

func counterField(name, desc string, get func(*IfCounters) uint64) Field {
	return Field{Name: "spanflow.interface." + name, Type: "long", Description: desc + " (interface counter documents)",
		put: func(b []byte, r *Record) ([]byte, bool) {
			if r.Counters == nil {
				return b, false
			}
			return putUint(b, get(r.Counters), true)
		}}
}

// counterFields are the interface counters of sFlow counter samples.
func counterFields() []Field {
	return []Field{
		counterField("index", "ifIndex of the interface", func(c *IfCounters) uint64 { return uint64(c.Index) }),
		counterField("type", "ifType (IANA), 6 = Ethernet", func(c *IfCounters) uint64 { return uint64(c.Type) }),
		counterField("speed", "ifSpeed, bits per second", func(c *IfCounters) uint64 { return c.Speed }),
		counterField("direction", "0 unknown, 1 full duplex, 2 half duplex, 3 in, 4 out", func(c *IfCounters) uint64 { return uint64(c.Direction) }),
		counterField("status", "bit 0 admin up, bit 1 operationally up", func(c *IfCounters) uint64 { return uint64(c.Status) }),
		counterField("in_octets", "ifInOctets", func(c *IfCounters) uint64 { return c.InOctets }),
		counterField("in_unicast_packets", "ifInUcastPkts", func(c *IfCounters) uint64 { return c.InUcastPkts }),
		counterField("in_multicast_packets", "ifInMulticastPkts", func(c *IfCounters) uint64 { return c.InMulticastPkts }),
		counterField("in_broadcast_packets", "ifInBroadcastPkts", func(c *IfCounters) uint64 { return c.InBroadcastPkts }),
		counterField("in_discards", "ifInDiscards", func(c *IfCounters) uint64 { return c.InDiscards }),
		counterField("in_errors", "ifInErrors", func(c *IfCounters) uint64 { return c.InErrors }),
		counterField("in_unknown_protos", "ifInUnknownProtos", func(c *IfCounters) uint64 { return c.InUnknownProtos }),
		counterField("out_octets", "ifOutOctets", func(c *IfCounters) uint64 { return c.OutOctets }),
		counterField("out_unicast_packets", "ifOutUcastPkts", func(c *IfCounters) uint64 { return c.OutUcastPkts }),
		counterField("out_multicast_packets", "ifOutMulticastPkts", func(c *IfCounters) uint64 { return c.OutMulticastPkts }),
		counterField("out_broadcast_packets", "ifOutBroadcastPkts", func(c *IfCounters) uint64 { return c.OutBroadcastPkts }),
		counterField("out_discards", "ifOutDiscards", func(c *IfCounters) uint64 { return c.OutDiscards }),
		counterField("out_errors", "ifOutErrors", func(c *IfCounters) uint64 { return c.OutErrors }),
		counterField("promiscuous", "ifPromiscuousMode: 1 true, 2 false", func(c *IfCounters) uint64 { return uint64(c.Promiscuous) }),
	}
}

func exporterField(name, desc string, get func(*ExporterStats) uint64) Field {
	return Field{Name: "spanflow.exporter." + name, Type: "long", Description: desc + " (exporter statistics documents)",
		put: func(b []byte, r *Record) ([]byte, bool) {
			if r.Exporter == nil {
				return b, false
			}
			return putUint(b, get(r.Exporter), true)
		}}
}

// exporterFields are the collector's statistics of one exporter and
// observation domain over one interval.
func exporterFields() []Field {
	return []Field{
		exporterField("interval_ms", "length of the interval the statistics cover, in milliseconds", func(s *ExporterStats) uint64 { return uint64(s.Interval.Milliseconds()) }),
		exporterField("datagrams", "datagrams received in the interval", func(s *ExporterStats) uint64 { return s.Datagrams }),
		exporterField("records", "records decoded in the interval (flows and interface counters)", func(s *ExporterStats) uint64 { return s.Records }),
		exporterField("sequence_losses", "missing by sequence number in the interval: datagrams (NetFlow v9, sFlow) or records (NetFlow v5, IPFIX)", func(s *ExporterStats) uint64 { return s.SequenceLosses }),
		exporterField("templates", "NetFlow v9/IPFIX templates the collector knows for the domain at the end of the interval", func(s *ExporterStats) uint64 { return s.Templates }),
		exporterField("decode_errors", "datagrams that did not decode cleanly (malformed, over a limit) in the interval", func(s *ExporterStats) uint64 { return s.DecodeErrors }),
	}
}

// compareNames orders dotted names segment by segment, so that every object's
// members are contiguous and the writer can nest them in one pass.
func compareNames(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if c := strings.Compare(as[i], bs[i]); c != 0 {
			return c
		}
	}
	return len(as) - len(bs)
}

// compiled is a field with its dotted name split once, so the encoder does
// no string work per document beyond comparing the open objects.
type compiled struct {
	put     func(b []byte, r *Record) ([]byte, bool)
	parents []string // enclosing objects, outermost first
	opens   [][]byte // `"parent":{` for each of parents
	key     []byte   // `"key":`
	extras  bool     // the place of Record.Extra
	sflow   bool     // the place of Record.SFlowCounters
	group   uint8    // fields of a group are skipped together when the record lacks it
}

// Field groups.
const (
	groupNone uint8 = iota
	groupCounters
	groupExporter
	groupSrcVSphere
	groupDstVSphere
	groupSrcNetwork
	groupDstNetwork
	groupDiscard
	groupSFlowCounters
	groups
)

func groupOf(name string) uint8 {
	switch {
	case strings.HasPrefix(name, "spanflow.interface."):
		return groupCounters
	case strings.HasPrefix(name, "spanflow.exporter."):
		return groupExporter
	case strings.HasPrefix(name, "source.vsphere."):
		return groupSrcVSphere
	case strings.HasPrefix(name, "destination.vsphere."):
		return groupDstVSphere
	case strings.HasPrefix(name, "source.network."):
		return groupSrcNetwork
	case strings.HasPrefix(name, "destination.network."):
		return groupDstNetwork
	case strings.HasPrefix(name, "spanflow.discard."):
		return groupDiscard
	case strings.HasPrefix(name, "spanflow.counters."):
		return groupSFlowCounters
	}
	return groupNone
}

// interned holds one copy of each object name: the encoder compares the
// open objects with the parents of each field, and equal strings that share
// their bytes compare without reading them.
var interned = map[string]string{}

// internedParents holds one slice per list of parents, so that the
// encoder tells in one comparison that a field sits in the object already
// open.
var internedParents = map[string][]string{}

func intern(segs []string) []string {
	for i, s := range segs {
		if c, ok := interned[s]; ok {
			segs[i] = c
		} else {
			interned[s] = s
		}
	}
	k := strings.Join(segs, ".")
	if c, ok := internedParents[k]; ok {
		return c
	}
	internedParents[k] = segs
	return segs
}

var compiledFields = func() []compiled {
	cs := make([]compiled, len(fields))
	for i, f := range fields {
		segs := strings.Split(f.Name, ".")
		c := compiled{put: f.put, parents: intern(segs[: len(segs)-1 : len(segs)-1]), key: jsonKey(segs[len(segs)-1]), group: groupOf(f.Name)}
		if f.put == nil {
			c.parents = intern(strings.Split(strings.TrimSuffix(f.Name, ".*"), "."))
			c.extras = f.Name == ExtrasField
			c.sflow = f.Name == CountersField
		}
		for _, p := range c.parents {
			c.opens = append(c.opens, append(jsonKey(p), '{'))
		}
		cs[i] = c
	}
	return cs
}()

var netflowOpen = intern([]string{"netflow"})

// reservedExtra are the names of the fixed netflow.* fields: an extra
// element of the same name is left out (the fixed field carries it).
var reservedExtra = func() map[string]bool {
	m := map[string]bool{}
	for _, f := range fields {
		if rest, ok := strings.CutPrefix(f.Name, "netflow."); ok && f.put != nil {
			m[rest] = true
		}
	}
	return m
}()

func repeatedExtra(before []Extra, name string) bool {
	for i := range before {
		if before[i].Name == name {
			return true
		}
	}
	return false
}

func jsonKey(k string) []byte { return append(AppendJSONString(nil, k), ':') }

// Encoder writes records as nested JSON documents. It keeps scratch space
// between calls, so reuse one per goroutine; it is not safe for concurrent use.
type Encoder struct {
	path     []string // objects currently open
	first    []bool   // whether the object at each depth has no member yet
	val      []byte
	open0    *string       // the interned parents that opened path, when they did
	days     [2]dayDate    // the last days formatted, the latest first
	secs     [4]secondText // seconds formatted lately
	secsNext uint8         // the entry of secs to replace next
	// sha1 computes the community ids; nil until the first, and when the
	// digest's state cannot be read (noSHA1State).
	sha1        mdsum.Digest
	sha1Buf     []byte
	sha1Block   [sha1.BlockSize]byte
	noSHA1State bool
}

// AppendDocument appends r as one JSON document (no trailing newline) to b.
func (e *Encoder) AppendDocument(b []byte, r *Record) []byte {
	if isFlowShape(r) {
		return e.appendFlow(b, r)
	}
	return e.appendGeneric(b, r)
}

// appendGeneric writes any record's document by walking the field table.
func (e *Encoder) appendGeneric(b []byte, r *Record) []byte {
	e.path, e.open0 = e.path[:0], nil
	e.first = append(e.first[:0], true)
	b = append(b, '{')
	var present [groups]bool
	present[groupNone] = true
	present[groupCounters] = r.Counters != nil
	present[groupExporter] = r.Exporter != nil
	present[groupSrcVSphere] = r.Src.VSphere != nil
	present[groupDstVSphere] = r.Dst.VSphere != nil
	present[groupSrcNetwork] = r.Src.Network != nil
	present[groupDstNetwork] = r.Dst.Network != nil
	present[groupDiscard] = r.Discard != nil
	present[groupSFlowCounters] = r.SFlowCounters != nil
	for i := range compiledFields {
		c := &compiledFields[i]
		if !present[c.group] {
			continue
		}
		if c.sflow {
			if cs := r.SFlowCounters; cs != nil && cs.Structure != "" && len(cs.Values) > 0 {
				b = e.open(b, c.parents, c.opens)
				b = e.sep(b)
				b = AppendJSONString(b, cs.Structure)
				b = append(b, ':', '{')
				for j := range cs.Values {
					v := &cs.Values[j]
					if j > 0 {
						b = append(b, ',')
					}
					b = AppendJSONString(b, v.Name)
					b = append(b, ':')
					switch v.Kind {
					case CounterStr:
						b = AppendJSONString(b, v.Str)
					case CounterFloat:
						if math.IsNaN(v.Float) || math.IsInf(v.Float, 0) {
							b = append(b, "null"...)
						} else {
							b = strconv.AppendFloat(b, v.Float, 'g', -1, 64)
						}
					default:
						b = strconv.AppendUint(b, v.Num, 10)
					}
				}
				b = append(b, '}')
			}
			continue
		}
		if c.extras {
			for j := range r.Extra {
				x := &r.Extra[j]
				if reservedExtra[x.Name] || repeatedExtra(r.Extra[:j], x.Name) {
					// A duplicate key would make Elasticsearch refuse the document.
					continue
				}
				b = e.open(b, netflowOpen, c.opens)
				b = e.sep(b)
				b = appendExtra(b, x)
			}
			continue
		}
		if len(c.parents) == len(e.path) && (len(c.parents) == 0 || unsafe.SliceData(c.parents) == e.open0) {
			// In the object already open: the value goes straight after
			// its key, taken back when the record has none.
			mark, d := len(b), len(e.first)-1
			if !e.first[d] {
				b = append(b, ',')
			}
			b = append(b, c.key...)
			var ok bool
			if b, ok = c.put(b, r); !ok {
				b = b[:mark]
				continue
			}
			e.first[d] = false
			continue
		}
		var ok bool
		e.val, ok = c.put(e.val[:0], r)
		if !ok {
			continue
		}
		b = e.open(b, c.parents, c.opens)
		b = e.sep(b)
		b = append(b, c.key...)
		b = append(b, e.val...)
	}
	for range e.path {
		b = append(b, '}')
	}
	return append(b, '}')
}

// open closes the objects not in parents and opens those missing.
func (e *Encoder) open(b []byte, parents []string, opens [][]byte) []byte {
	if len(parents) == len(e.path) && (len(parents) == 0 || unsafe.SliceData(parents) == e.open0) {
		return b // the same object as the field before
	}
	common := 0
	for common < len(e.path) && common < len(parents) && e.path[common] == parents[common] {
		common++
	}
	for len(e.path) > common {
		e.path = e.path[:len(e.path)-1]
		e.first = e.first[:len(e.first)-1]
		b = append(b, '}')
	}
	for i := common; i < len(parents); i++ {
		b = e.sep(b)
		b = append(b, opens[i]...)
		e.path = append(e.path, parents[i])
		e.first = append(e.first, true)
	}
	e.open0 = unsafe.SliceData(parents)
	return b
}

// sep writes the comma before a member, unless it is its object's first.
func (e *Encoder) sep(b []byte) []byte {
	d := len(e.first) - 1
	if !e.first[d] {
		b = append(b, ',')
	}
	e.first[d] = false
	return b
}

// AppendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func AppendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	// Most strings (names, localities, directions) need no escape: copied
	// whole, up to the first byte that does.
	i := 0
	for i < len(s) && jsonPlain[s[i]] {
		i++
	}
	b = append(b, s[:i]...)
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, "\ufffd"...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// jsonPlain says which bytes a JSON string holds as they are: printable
// ASCII but the quote and the backslash.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// TransportName is the ECS network.transport value for an IANA protocol number.
func TransportName(p uint8) string {
	switch p {
	case 1:
		return "icmp"
	case 2:
		return "igmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 41:
		return "ipv6"
	case 47:
		return "gre"
	case 50:
		return "esp"
	case 51:
		return "ah"
	case 58:
		return "ipv6-icmp"
	case 89:
		return "ospf"
	case 103:
		return "pim"
	case 112:
		return "vrrp"
	case 132:
		return "sctp"
	}
	return transportNumbers[p]
}

var transportNumbers = func() (t [256]string) {
	for i := range t {
		t[i] = strconv.Itoa(i)
	}
	return
}()

// appendExtra writes an extra field as a member: its name, then its raw
// JSON, string or number.
func appendExtra(b []byte, x *Extra) []byte {
	b = AppendJSONString(b, x.Name)
	b = append(b, ':')
	switch {
	case x.Raw != nil:
		return append(b, x.Raw...)
	case x.IsStr:
		return AppendJSONString(b, x.Str)
	}
	return appendUint(b, x.Num)
}
