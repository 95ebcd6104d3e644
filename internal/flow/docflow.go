package flow

import (
	"time"
)

// The flow document written straight, field after field, for the records
// most documents come from: flows (no interface counters, exporter
// statistics, sFlow counter records or discards). The generic encoder
// (appendGeneric) visits every field of the table through a function and
// cost about 0.8 µs per document; this writes the same bytes, in the
// table's order, with the keys as constants. TestFlowDocumentMatchesGeneric
// and FuzzFlowDocument compare the two on every kind of record, so a field
// added to the table without being added here fails them.

// isFlowShape reports whether appendFlow writes r's document.
func isFlowShape(r *Record) bool {
	return r.Counters == nil && r.Exporter == nil && r.SFlowCounters == nil && r.Discard == nil
}

// member starts a member of the object whose contents begin at start:
// a comma unless it is the first.
func member(b []byte, start int, key string) []byte {
	if len(b) != start {
		b = append(b, ',')
	}
	return append(b, key...)
}

// object opens an object member ("key":{) and returns where its contents
// start; closeObject takes the key back when nothing was written in it.
func object(b []byte, start int, key string) ([]byte, int, int) {
	mark := len(b)
	b = member(b, start, key)
	return b, mark, len(b)
}

func closeObject(b []byte, mark, start int) []byte {
	if len(b) == start {
		return b[:mark]
	}
	return append(b, '}')
}

// appendPlainString writes s, which needs no escape (one of the package's
// names: a record kind, a transport), as a JSON string without scanning it.
// TestPlainNames checks every name it is given.
func appendPlainString(b []byte, s string) []byte {
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func appendQuotedUint(b []byte, v uint64) []byte {
	b = append(b, '"')
	b = appendUint(b, v)
	return append(b, '"')
}

// appendFlow writes r's document; r must have the flow shape.
func (e *Encoder) appendFlow(b []byte, r *Record) []byte {
	b = append(b, '{')
	top := len(b)
	// @timestamp, kept to be copied as event.end or event.created.
	var ts0, ts1 int
	tsEnd := !r.End.IsZero()
	if tsEnd || !r.Received.IsZero() {
		t := r.End
		if !tsEnd {
			t = r.Received
		}
		b = append(b, `"@timestamp":"`...)
		ts0 = len(b)
		b = e.appendTime(b, t)
		ts1 = len(b)
		b = append(b, '"')
	}

	b = e.appendEndpoint(b, top, r, false)

	// event: always has members.
	b = member(b, top, `"event":{"action":"network_flow","category":"network"`)
	if !r.Received.IsZero() {
		b = append(b, `,"created":"`...)
		if !tsEnd {
			b = append(b, b[ts0:ts1]...)
		} else {
			b = e.appendTime(b, r.Received)
		}
		b = append(b, '"')
	}
	if !r.Start.IsZero() && !r.End.IsZero() {
		b = append(b, `,"duration":`...)
		b = appendUint(b, uint64(r.Duration()))
	}
	if tsEnd {
		b = append(b, `,"end":"`...)
		b = append(b, b[ts0:ts1]...)
		b = append(b, '"')
	}
	b = append(b, `,"kind":"event"`...)
	if !r.Start.IsZero() {
		b = append(b, `,"start":"`...)
		if r.Start == r.End {
			b = append(b, b[ts0:ts1]...)
		} else {
			b = e.appendTime(b, r.Start)
		}
		b = append(b, '"')
	}
	b = append(b, '}')

	b, mark, start := object(b, top, `"flow":{`)
	if r.Direction != "" {
		b = member(b, start, `"direction":`)
		b = AppendJSONString(b, r.Direction)
	}
	if r.Locality != "" {
		b = member(b, start, `"locality":`)
		b = AppendJSONString(b, r.Locality)
	}
	if r.Kind != KindUnknown {
		b = member(b, start, `"protocol":`)
		b = appendPlainString(b, r.Kind.String())
	}
	b = closeObject(b, mark, start)

	b = e.appendNetflow(b, top, r)

	// network: bytes and packets are always there.
	b = member(b, top, `"network":{"bytes":`)
	b = appendUint(b, r.Bytes)
	if r.SrcAddr.IsValid() && r.DstAddr.IsValid() && !r.NoPorts {
		b = append(b, `,"community_id":"`...)
		b = e.appendCommunityID(b, r)
		b = append(b, '"')
	}
	if r.SrcAddr.IsValid() {
		b = append(b, `,"iana_number":`...)
		b = appendQuotedUint(b, uint64(r.Proto))
	}
	if r.InnerVLAN != 0 {
		b = append(b, `,"inner":{"vlan":{"id":`...)
		b = appendQuotedUint(b, uint64(r.InnerVLAN))
		b = append(b, "}}"...)
	}
	b = append(b, `,"packets":`...)
	b = appendUint(b, r.Packets)
	if r.SrcAddr.IsValid() || r.Proto != 0 {
		b = append(b, `,"transport":`...)
		b = appendPlainString(b, TransportName(r.Proto))
	}
	if r.SrcAddr.IsValid() {
		if r.SrcAddr.Unmap().Is4() {
			b = append(b, `,"type":"ipv4"`...)
		} else {
			b = append(b, `,"type":"ipv6"`...)
		}
	}
	if r.VLAN != 0 {
		b = append(b, `,"vlan":{"id":`...)
		b = appendQuotedUint(b, uint64(r.VLAN))
		b = append(b, '}')
	}
	b = append(b, '}')

	b, mark, start = object(b, top, `"observer":{`)
	b = appendInterface(b, start, `"egress":{"interface":{`, r.OutIf, r.OutIfName)
	b = appendInterface(b, start, `"ingress":{"interface":{`, r.InIf, r.InIfName)
	if r.ObserverIP.IsValid() {
		b = member(b, start, `"ip":"`)
		b = appendAddr(b, r.ObserverIP.Unmap())
		b = append(b, '"')
	}
	b = closeObject(b, mark, start)

	b = e.appendEndpoint(b, top, r, true)

	b, mark, start = object(b, top, `"spanflow":{`)
	b = appendSpecial(b, start, `"egress":{"interface":{`, r.OutIfSpecial, r.OutIfCount)
	b = appendSpecial(b, start, `"ingress":{"interface":{`, r.InIfSpecial, r.InIfCount)
	if r.ExporterAddr.IsValid() {
		b = member(b, start, `"observer":{"source_ip":"`)
		b = appendAddr(b, r.ExporterAddr.Unmap())
		b = append(b, `"}`...)
	}
	if t := &r.TCP; !t.IsZero() {
		b = member(b, start, `"tcp":{"retransmissions":`)
		b = appendUint(b, uint64(t.Retransmissions))
		if t.RTTClient > 0 {
			b = append(b, `,"rtt_client_us":`...)
			b = appendUint(b, uint64(t.RTTClient/time.Microsecond))
		}
		if t.RTTServer > 0 {
			b = append(b, `,"rtt_server_us":`...)
			b = appendUint(b, uint64(t.RTTServer/time.Microsecond))
		}
		b = append(b, `,"zero_windows":`...)
		b = appendUint(b, uint64(t.ZeroWindows))
		b = append(b, '}')
	}
	b = closeObject(b, mark, start)
	return append(b, '}')
}

// appendEndpoint writes the destination or source object.
func (e *Encoder) appendEndpoint(b []byte, top int, r *Record, src bool) []byte {
	key, mac, port, ep := `"destination":{`, r.DstMAC, r.DstPort, &r.Dst
	if src {
		key, mac, port, ep = `"source":{`, r.SrcMAC, r.SrcPort, &r.Src
	}
	b, mark, start := object(b, top, key)
	if src && r.SrcAddr.IsValid() || !src && r.DstAddr.IsValid() {
		b = member(b, start, `"ip":`)
		b, _ = putAddr(b, r, src)
	}
	if !mac.IsZero() {
		b = member(b, start, `"mac":`)
		b, _ = putMAC(b, mac)
	}
	if n := ep.Network; n != nil {
		var m, s int
		b, m, s = object(b, start, `"network":{`)
		b = appendStringMember(b, s, `"name":`, n.Name)
		b = appendStringMember(b, s, `"project":`, n.Project)
		b = appendStringMember(b, s, `"role":`, n.Role)
		b = appendStringMember(b, s, `"site":`, n.Site)
		b = closeObject(b, m, s)
	}
	if hasPorts(r) {
		b = member(b, start, `"port":`)
		b = appendUint(b, uint64(port))
	}
	if v := ep.VSphere; v != nil {
		var m, s int
		b, m, s = object(b, start, `"vsphere":{`)
		b = appendNameObject(b, s, `"cluster":{"name":`, v.ClusterName)
		b = appendNameObject(b, s, `"datacenter":{"name":`, v.DatacenterName)
		b = appendNameObject(b, s, `"host":{"name":`, v.HostName)
		b = appendNameObject(b, s, `"network":{"name":`, v.NetworkName)
		b = appendStringMember(b, s, `"project":`, v.Project)
		if v.VMName != "" || v.VMUUID != "" {
			b = member(b, s, `"vm":{`)
			vs := len(b)
			b = appendStringMember(b, vs, `"name":`, v.VMName)
			b = appendStringMember(b, vs, `"uuid":`, v.VMUUID)
			b = append(b, '}')
		}
		b = closeObject(b, m, s)
	}
	return closeObject(b, mark, start)
}

func appendStringMember(b []byte, start int, key, s string) []byte {
	if s == "" {
		return b
	}
	b = member(b, start, key)
	return AppendJSONString(b, s)
}

// appendNameObject writes "x":{"name":s}, key holding all but s and the brace.
func appendNameObject(b []byte, start int, key, s string) []byte {
	if s == "" {
		return b
	}
	b = member(b, start, key)
	b = AppendJSONString(b, s)
	return append(b, '}')
}

// appendInterface writes observer.{egress,ingress}.interface.{id,name}.
func appendInterface(b []byte, start int, key string, id uint32, name string) []byte {
	if id == 0 && name == "" {
		return b
	}
	b = member(b, start, key)
	if id != 0 {
		b = append(b, `"id":`...)
		b = appendQuotedUint(b, uint64(id))
		if name != "" {
			b = append(b, ',')
		}
	}
	if name != "" {
		b = append(b, `"name":`...)
		b = AppendJSONString(b, name)
	}
	return append(b, "}}"...)
}

// appendSpecial writes spanflow.{egress,ingress}.interface.{count,special}.
func appendSpecial(b []byte, start int, key string, s IfSpecial, count uint32) []byte {
	name := s.String()
	if name == "" && s != IfMultiple {
		return b
	}
	b = member(b, start, key)
	if s == IfMultiple {
		b = append(b, `"count":`...)
		b = appendUint(b, uint64(count))
		b = append(b, ',')
	}
	b = append(b, `"special":`...)
	b = AppendJSONString(b, name)
	return append(b, "}}"...)
}

// appendNetflow writes the netflow object: the extra elements first (the
// table's "netflow.*" sorts before the fixed fields), then the fixed ones.
func (e *Encoder) appendNetflow(b []byte, top int, r *Record) []byte {
	b, mark, start := object(b, top, `"netflow":{`)
	for j := range r.Extra {
		x := &r.Extra[j]
		if reservedExtra[x.Name] || repeatedExtra(r.Extra[:j], x.Name) {
			continue // as appendGeneric: a duplicate key would make Elasticsearch refuse the document
		}
		if len(b) != start {
			b = append(b, ',')
		}
		b = appendExtra(b, x)
	}
	if r.EndReason != 0 {
		b = appendUintMember(b, start, `"flow_end_reason":`, uint64(r.EndReason))
	}
	if icmp := isICMP(r); icmp && r.Proto == 1 {
		b = appendUintMember(b, start, `"icmp_code_ipv4":`, uint64(r.ICMPCode))
	} else if icmp && r.Proto == 58 {
		b = appendUintMember(b, start, `"icmp_code_ipv6":`, uint64(r.ICMPCode))
	}
	if icmp := isICMP(r); icmp && r.Proto == 1 {
		b = appendUintMember(b, start, `"icmp_type_ipv4":`, uint64(r.ICMPType))
	} else if icmp && r.Proto == 58 {
		b = appendUintMember(b, start, `"icmp_type_ipv6":`, uint64(r.ICMPType))
	}
	if r.TOS != 0 {
		b = appendUintMember(b, start, `"ip_class_of_service":`, uint64(r.TOS))
	}
	if r.SegmentID != 0 {
		b = appendUintMember(b, start, `"layer2_segment_id":`, r.SegmentID)
	}
	if r.Kind == KindIPFIX || r.Kind == KindNetFlowV9 || r.Kind == KindSFlow {
		b = appendUintMember(b, start, `"observation_domain_id":`, uint64(r.ObservationDomain))
	}
	if r.ObservationPoint != 0 {
		b = appendUintMember(b, start, `"observation_point_id":`, r.ObservationPoint)
	}
	if r.SamplingRate > 1 {
		b = appendUintMember(b, start, `"sampling_interval":`, uint64(r.SamplingRate))
	}
	if r.Proto == 6 && !r.NoTCPFlags {
		b = appendUintMember(b, start, `"tcp_control_bits":`, uint64(r.TCPFlags))
	}
	return closeObject(b, mark, start)
}

func appendUintMember(b []byte, start int, key string, v uint64) []byte {
	b = member(b, start, key)
	return appendUint(b, v)
}
