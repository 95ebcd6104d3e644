package netflow

import (
	"encoding/binary"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	nf "github.com/netsampler/goflow2/v2/decoders/netflow"

	"github.com/spanflow/spanflow/decoders/netflow/ie"
	"github.com/spanflow/spanflow/decoders/reason"
	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/internal/flow"
)

// recordTimes collects the many ways a record can say when it started and ended.
type recordTimes struct {
	startUp, endUp       uint32 // flowStart/EndSysUpTime (ms since the exporter booted)
	hasStartUp, hasEndUp bool
	start, end           time.Time
	sysInit              uint64
	hasSysInit           bool
	durationMs           uint64
	hasDuration          bool
	hasBytes, hasPackets bool // a delta count was seen (totals only fill in)
	hasTCPFlags          bool // tcpControlBits was seen, or a decoded packet section's header
	hasByteTotal         bool // octetTotalCount was seen
	hasPacketTotal       bool // packetTotalCount was seen
	// initiator/responderOctets and Packets (231, 232, 298, 299: Cisco
	// ASA NSEL's only counts): the flow's, when it has no other count.
	biOctets, biPackets       uint64
	hasBiOctets, hasBiPackets bool
	// reverseOctetDeltaCount and reversePacketDeltaCount (RFC 5103, PEN
	// 29305; their totals when no delta): a biflow's other direction.
	revOctets, revPackets         uint64
	hasRevOctets, hasRevPackets   bool // a delta was seen
	revOctetTotal, revPacketTotal uint64
	observed                      time.Time // observationTime* (322-325): an NSEL event's time
	samplerID                     uint64
	hasSampler                    bool
	rate                          uint64
	packetSpace                   uint64
	icmpSet                       bool
	startDelta, endDelta          time.Duration // flowStart/EndDeltaMicroseconds, before the export time
	hasStartDelta                 bool
	hasEndDelta                   bool
	physIn, physOut               uint32
	vlan243                       uint16
	// postSourceMacAddress and postDestinationMacAddress (81, 57: NetFlow
	// v9's OUT_SRC_MAC and OUT_DST_MAC): the MACs of a record without
	// sourceMacAddress and destinationMacAddress (56, 80).
	postSrcMAC, postDstMAC       flow.MAC
	hasPostSrcMAC, hasPostDstMAC bool
	section                      section // a sampled packet's bytes (section.go)
}

func be(v []byte) uint64 {
	switch len(v) { // the sizes of nearly every field, without a loop
	case 4:
		return uint64(binary.BigEndian.Uint32(v))
	case 2:
		return uint64(binary.BigEndian.Uint16(v))
	case 1:
		return uint64(v[0])
	case 8:
		return binary.BigEndian.Uint64(v)
	}
	var x uint64
	for _, b := range v {
		x = x<<8 | uint64(b)
	}
	return x
}

// ntpTime decodes an IPFIX dateTimeMicro/Nanoseconds (NTP format).
func ntpTime(v uint64) time.Time {
	const ntpToUnix = 2208988800
	secs := int64(v>>32) - ntpToUnix
	frac := (v & 0xffffffff) * 1e9 >> 32
	return time.Unix(secs, int64(frac))
}

func toAddr(v []byte) (netip.Addr, bool) {
	switch len(v) {
	case 4:
		return netip.AddrFrom4([4]byte(v)), true
	case 16:
		return netip.AddrFrom16([16]byte(v)), true
	}
	return netip.Addr{}, false
}

// appendDataFields converts goflow2's decoded fields.
func (s *State) appendDataFields(out []flow.Record, h *header, fields []nf.DataField, received time.Time) []flow.Record {
	out, r := s.beginRecord(out, h, received)
	var t recordTimes
	for i := range fields {
		f := &fields[i]
		v, _ := f.Value.([]byte)
		pen := f.Pen
		if !f.PenProvided {
			pen = 0
		}
		s.applyField(r, &t, f.Type, pen, v, h.version)
	}
	s.finish(r, &t, h, s.domain(h))
	return out
}

// beginRecord appends a record with what the message says of every record
// (exporter, domain, kind, receive time) and returns it.
func (s *State) beginRecord(out []flow.Record, h *header, received time.Time) ([]flow.Record, *flow.Record) {
	out = append(out, flow.Record{})
	r := &out[len(out)-1]
	r.Received = received
	r.ObserverIP = s.exporter
	s.hdr = h // for the templates of structured data
	r.ObservationDomain = h.domain
	if h.version == 9 {
		r.Kind = flow.KindNetFlowV9
	} else {
		r.Kind = flow.KindIPFIX
	}
	return out, r
}

// applyField sets what one field (pen 0: IANA or NetFlow v9) says about
// the flow.
func (s *State) applyField(r *flow.Record, t *recordTimes, typ uint16, pen uint32, v []byte, version uint16) {
	if pen == 0 {
		s.applyIANA(r, t, typ, v, version)
		return
	}
	switch pen {
	case flow.EnterpriseNumber:
		x := be(v)
		switch typ {
		case flow.IETCPRTTClientMicroseconds:
			r.TCP.RTTClient = time.Duration(x) * time.Microsecond
		case flow.IETCPRTTServerMicroseconds:
			r.TCP.RTTServer = time.Duration(x) * time.Microsecond
		case flow.IETCPRetransmittedPackets:
			r.TCP.Retransmissions = uint32(x)
		case flow.IETCPZeroWindowEvents:
			r.TCP.ZeroWindows = uint32(x)
		default:
			if len(v) <= 8 {
				s.addExtra(r, flow.Extra{Name: "spanflow_" + strconv.Itoa(int(typ)), Num: x})
			}
		}
	case ie.Reverse:
		// A biflow's reverse counts are its other direction: network.bytes
		// and packets (ECS: both directions) and the rollups count them.
		switch typ {
		case 1:
			t.revOctets, t.hasRevOctets = be(v), true
		case 2:
			t.revPackets, t.hasRevPackets = be(v), true
		case 85:
			t.revOctetTotal = be(v)
		case 86:
			t.revPacketTotal = be(v)
		}
		s.appendExtra(r, pen, typ, v)
	case ie.CERT:
		// YAF sends no tcpControlBits: a flow's TCP flags are its first
		// packet's (initialTCPFlags) and the union of the others'
		// (unionTCPFlags). Their reverse ones (id | 0x4000) are the other
		// direction's, left as written, as RFC 5103 reverse tcpControlBits.
		if typ == 14 || typ == 15 {
			r.TCPFlags |= uint16(be(v))
			t.hasTCPFlags = true
		}
		s.appendExtra(r, pen, typ, v)
	default:
		s.appendExtra(r, pen, typ, v)
	}
}

// applyIANA sets what an IANA (or NetFlow v9) element says about the flow.
func (s *State) applyIANA(r *flow.Record, t *recordTimes, typ uint16, v []byte, version uint16) {
	switch typ {
	case 1: // octetDeltaCount
		r.Bytes, t.hasBytes = be(v), true
	case 2: // packetDeltaCount
		r.Packets, t.hasPackets = be(v), true
	case 85: // octetTotalCount
		if !t.hasBytes {
			r.Bytes = be(v)
		}
		t.hasByteTotal = true
	case 86: // packetTotalCount
		if !t.hasPackets {
			r.Packets = be(v)
		}
		t.hasPacketTotal = true
	case 231, 232: // initiatorOctets, responderOctets: also written as they are
		t.biOctets, t.hasBiOctets = t.biOctets+be(v), true
		s.appendExtra(r, 0, typ, v)
	case 298, 299: // initiatorPackets, responderPackets
		t.biPackets, t.hasBiPackets = t.biPackets+be(v), true
		s.appendExtra(r, 0, typ, v)
	case 322, 323, 324, 325: // observationTime*: also written as they are
		switch typ {
		case 322:
			t.observed = time.Unix(int64(be(v)), 0)
		case 323:
			t.observed = time.UnixMilli(int64(be(v)))
		default:
			t.observed = ntpTime(be(v))
		}
		s.appendExtra(r, 0, typ, v)
	case 4:
		r.Proto = uint8(be(v))
	case 5:
		r.TOS = uint8(be(v))
	case 6:
		r.TCPFlags, t.hasTCPFlags = uint16(be(v)), true
	case 7:
		r.SrcPort = uint16(be(v))
	case 11:
		r.DstPort = uint16(be(v))
	case 180, 182: // udp/tcpSourcePort
		if r.SrcPort == 0 {
			r.SrcPort = uint16(be(v))
		}
	case 181, 183:
		if r.DstPort == 0 {
			r.DstPort = uint16(be(v))
		}
	case 8, 27:
		// Templates with both IPv4 and IPv6 fields zero the unused ones.
		if a, ok := toAddr(v); ok && (!r.SrcAddr.IsValid() || !a.IsUnspecified()) {
			r.SrcAddr = a
		}
	case 12, 28:
		if a, ok := toAddr(v); ok && (!r.DstAddr.IsValid() || !a.IsUnspecified()) {
			r.DstAddr = a
		}
	case 10:
		r.InIf = uint32(be(v))
	case 14:
		r.OutIf = uint32(be(v))
	case 252:
		t.physIn = uint32(be(v))
	case 253:
		t.physOut = uint32(be(v))
	case 56:
		if len(v) == 6 {
			r.SrcMAC = flow.MAC(v)
		}
	case 80:
		if len(v) == 6 {
			r.DstMAC = flow.MAC(v)
		}
	case 57, 81: // also written as they are
		if len(v) == 6 {
			if typ == 57 {
				t.postDstMAC, t.hasPostDstMAC = flow.MAC(v), true
			} else {
				t.postSrcMAC, t.hasPostSrcMAC = flow.MAC(v), true
			}
		}
		s.appendExtra(r, 0, typ, v)
	case 58:
		r.VLAN = uint16(be(v)) & 0xfff
	case 243:
		t.vlan243 = uint16(be(v)) & 0xfff
	case 245:
		r.InnerVLAN = uint16(be(v)) & 0xfff
	case 32, 139: // icmpTypeCode
		x := be(v)
		r.ICMPType, r.ICMPCode, t.icmpSet = uint8(x>>8), uint8(x), true
	case 176, 178:
		r.ICMPType, t.icmpSet = uint8(be(v)), true
	case 177, 179:
		r.ICMPCode, t.icmpSet = uint8(be(v)), true
	case 34, 305, 50: // samplingInterval, samplingPacketInterval, samplerRandomInterval
		if x := be(v); x > 0 {
			t.rate = x
		}
	case 306:
		t.packetSpace = be(v)
	case 48, 302: // samplerId, selectorId
		t.samplerID, t.hasSampler = be(v), true
	case 136:
		r.EndReason = uint8(be(v))
	case 138:
		r.ObservationPoint = be(v)
	case 351:
		r.SegmentID = be(v)
	case 21: // a zero uptime is an exporter that does not know it: absent
		t.endUp, t.hasEndUp = uint32(be(v)), be(v) != 0
	case 22:
		t.startUp, t.hasStartUp = uint32(be(v)), be(v) != 0
	case 150:
		t.start = time.Unix(int64(be(v)), 0)
	case 151:
		t.end = time.Unix(int64(be(v)), 0)
	case 152:
		t.start = time.UnixMilli(int64(be(v)))
	case 153:
		t.end = time.UnixMilli(int64(be(v)))
	case 154, 156:
		t.start = ntpTime(be(v))
	case 155, 157:
		t.end = ntpTime(be(v))
	case 158, 159: // flowStart/EndDeltaMicroseconds: before the export time; resolved in finish
		d := time.Duration(be(v)) * time.Microsecond
		if typ == 158 {
			t.startDelta, t.hasStartDelta = d, true
		} else {
			t.endDelta, t.hasEndDelta = d, true
		}
	case 160:
		t.sysInit, t.hasSysInit = be(v), true
	case 161:
		t.durationMs, t.hasDuration = be(v), true
	case 162:
		t.durationMs, t.hasDuration = be(v)/1000, true
	case 210: // paddingOctets
	case 312, 313, 315, 408, 409:
		// Packet sections and what describes them: read in finish, and
		// written as they are too.
		switch typ {
		case 312:
			t.section.frameSize = be(v)
		case 313:
			if t.section.data == nil {
				t.section.data, t.section.link = v, decode.LinkRaw
			}
		case 315:
			t.section.data, t.section.link = v, decode.LinkEthernet
		case 408:
			t.section.frameType = be(v)
		case 409:
			t.section.offset = be(v)
		}
		s.appendExtra(r, 0, typ, v)
	default:
		s.appendExtra(r, 0, typ, v)
	}
}

// finish resolves times, sampling and interface names once every field is
// known, from what the fields said (t) and the state of the record's domain
// (d, which is s.domain(h): the caller looks it up once per data set).
func (s *State) finish(r *flow.Record, t *recordTimes, h *header, d *domain) {
	export := time.Unix(int64(h.exportSecs), 0)
	// A flow counted only by direction (Cisco ASA NSEL) is both directions.
	if t.hasBiOctets && !t.hasBytes && !t.hasByteTotal {
		r.Bytes = t.biOctets
	}
	if t.hasBiPackets && !t.hasPackets && !t.hasPacketTotal {
		r.Packets = t.biPackets
	}
	// An RFC 5103 biflow is both directions too.
	if t.hasRevOctets {
		r.Bytes += t.revOctets
	} else {
		r.Bytes += t.revOctetTotal
	}
	if t.hasRevPackets {
		r.Packets += t.revPackets
	} else {
		r.Packets += t.revPacketTotal
	}
	applySection(r, t)
	switch {
	case h.version == 9 && (t.hasStartUp || t.hasEndUp):
		// v9: sysUptime at export and the switched times are both ms since
		// boot. uptimeBefore keeps a time a little after sysUptime (a flow
		// ended while the datagram was built) and one before a wrap right.
		exportMs := int64(h.exportSecs) * 1000
		if t.hasStartUp {
			r.Start = time.UnixMilli(exportMs - uptimeBefore(h.sysUptime, t.startUp))
		}
		if t.hasEndUp {
			r.End = time.UnixMilli(exportMs - uptimeBefore(h.sysUptime, t.endUp))
		}
	case t.hasStartUp || t.hasEndUp:
		init, ok := t.sysInit, t.hasSysInit
		if !ok {
			init, ok = d.sysInitMs, d.hasSysInit
		}
		if ok {
			if t.hasStartUp {
				r.Start = time.UnixMilli(int64(init + uint64(t.startUp)))
			}
			if t.hasEndUp {
				r.End = time.UnixMilli(int64(init + uint64(t.endUp)))
			}
		}
	}
	switch {
	case !t.start.IsZero():
		r.Start = t.start
	case t.hasStartDelta:
		r.Start = export.Add(-t.startDelta)
	}
	switch {
	case !t.end.IsZero():
		r.End = t.end
	case t.hasEndDelta:
		r.End = export.Add(-t.endDelta)
	}
	if t.hasDuration {
		switch {
		case r.Start.IsZero() && !r.End.IsZero():
			r.Start = r.End.Add(-time.Duration(t.durationMs) * time.Millisecond)
		case r.End.IsZero() && !r.Start.IsZero():
			r.End = r.Start.Add(time.Duration(t.durationMs) * time.Millisecond)
		}
	}

	if r.End.IsZero() && !t.observed.IsZero() {
		// No end time but the time of the event that exported the flow
		// (Cisco ASA NSEL: a teardown's time).
		r.End = t.observed
	}
	r.Start, r.End = flow.ResolveTimes(r.Start, r.End, r.Received)

	if r.InIf == 0 {
		r.InIf = t.physIn
	}
	if r.OutIf == 0 {
		r.OutIf = t.physOut
	}
	if r.VLAN == 0 {
		r.VLAN = t.vlan243
	}
	// softflowd and Cisco's NetFlow v9 send the source MAC as 56 and the
	// destination MAC as 57 (OUT_DST_MAC), with no 80: without this,
	// destination.mac would be empty for their flows (pmacct and tshark
	// read 57 as the destination MAC too).
	if r.SrcMAC.IsZero() && t.hasPostSrcMAC {
		r.SrcMAC = t.postSrcMAC
	}
	if r.DstMAC.IsZero() && t.hasPostDstMAC {
		r.DstMAC = t.postDstMAC
	}
	// Many NetFlow v9 exporters put ICMP type and code in the destination port.
	if !t.icmpSet && (r.Proto == 1 || r.Proto == 58) && r.DstPort != 0 {
		r.ICMPType, r.ICMPCode = uint8(r.DstPort>>8), uint8(r.DstPort)
	}
	if r.Proto == 1 || r.Proto == 58 {
		r.SrcPort, r.DstPort = 0, 0
	}
	// A TCP flow whose template has no tcpControlBits has no flags to
	// write: 0 would say that none was seen.
	r.NoTCPFlags = r.Proto == 6 && !t.hasTCPFlags

	rate := t.rate
	if rate > 0 && t.packetSpace > 0 {
		rate = (rate + t.packetSpace) / rate
	}
	if rate == 0 && t.hasSampler {
		rate = uint64(d.samplers[t.samplerID])
	}
	if rate == 0 {
		rate = uint64(d.sampling)
	}
	if rate > 1 {
		r.SamplingRate = uint32(min(rate, 1<<32-1))
		r.Bytes *= rate
		r.Packets *= rate
	}
	if len(d.ifNames) > 0 {
		r.InIfName = d.ifNames[r.InIf]
		r.OutIfName = d.ifNames[r.OutIf]
	}
	if d.probe != "" {
		s.addExtra(r, flow.Extra{Name: "observation_domain_name", Str: d.probe, IsStr: true})
	}
	if d.packetsURL != "" {
		s.addExtra(r, flow.Extra{Name: "spanflow_packets_url", Str: packetsQuery(d.packetsURL, r), IsStr: true})
	}
}

// uptimeBefore is how many milliseconds before the uptime now an uptime
// up was: the 32-bit difference read as signed, so that a wrap of the
// uptime (every 49.7 days) between them, and an up a little after now,
// are both a few milliseconds away rather than 49.7 days.
func uptimeBefore(now, up uint32) int64 { return int64(int32(now - up)) }

// packetsQuery is the packet ring query of r's packets at the probe's
// base URL: its Community ID, from a second before its start to a second
// after its end (the exporter's clock against the probe's).
func packetsQuery(base string, r *flow.Record) string {
	b := make([]byte, 0, len(base)+120)
	b = append(b, strings.TrimRight(base, "/")...)
	b = append(b, "/packets?flow="...)
	b = append(b, url.QueryEscape(string(flow.AppendCommunityID(nil, r)))...)
	start, end := r.Start, r.End
	if start.IsZero() {
		start = end
	}
	if !start.IsZero() {
		b = append(b, "&from="...)
		b = strconv.AppendInt(b, start.Add(-time.Second).UnixNano(), 10)
		b = append(b, "&to="...)
		b = strconv.AppendInt(b, end.Add(time.Second).UnixNano(), 10)
	}
	return string(b)
}

// NetFlow v9 options scope types (RFC 3954 §6.1).
const (
	v9ScopeSystem    = 1
	v9ScopeInterface = 2
	v9ScopeTemplate  = 5 // after line card (3) and cache (4)
)

// applyOptions keeps what an options data record says about the data
// records of its domain: sampling rates (per sampler or for all), interface
// names and the exporter's boot time. Names and sampler rates are bounded
// in number and bytes; interface names in length.
func (s *State) applyOptions(h *header, rec *nf.OptionsDataRecord) {
	d := s.domain(h)
	if d == &noDomain { // its options template was withdrawn in the same datagram
		return
	}
	var (
		rate, space, sampler uint64
		hasSampler           bool
		ifIndex              uint64
		hasIf                bool
		name, descr          string
	)
	var probe, packetsURL string
	var identity bool
	for part, values := range [][]nf.DataField{rec.ScopesValues, rec.OptionsValues} {
		for i := range values {
			f := &values[i]
			if part == 0 && h.version == 9 && f.Type >= v9ScopeSystem && f.Type <= v9ScopeTemplate {
				// NetFlow v9 scopes are scope types (RFC 3954 §6.1), not
				// field types: an interface scope is the ifIndex the
				// record is about; the others name no flow's part.
				if f.Type == v9ScopeInterface {
					v, _ := f.Value.([]byte)
					ifIndex, hasIf = be(v), true
				}
				continue
			}
			if f.PenProvided && f.Pen == flow.EnterpriseNumber && f.Type&0x7fff == flow.IEPacketsURL {
				v, _ := f.Value.([]byte)
				packetsURL, identity = cleanIdentity(v), true
				if !strings.HasPrefix(packetsURL, "http://") && !strings.HasPrefix(packetsURL, "https://") {
					packetsURL = "" // not a link to follow
				}
				continue
			}
			if f.PenProvided && f.Pen != 0 {
				continue
			}
			v, _ := f.Value.([]byte)
			switch f.Type {
			case 34, 305, 50:
				if x := be(v); x > 0 {
					rate = x
				}
			case 306:
				space = be(v)
			case 48, 302, 141: // samplerId, selectorId
				if f.Type != 141 {
					sampler, hasSampler = be(v), true
				}
			case 10, 252:
				ifIndex, hasIf = be(v), true
			case 82:
				name = s.cleanName(v)
			case 83:
				descr = s.cleanName(v)
			case 160:
				d.sysInitMs, d.hasSysInit = be(v), true
			case 300:
				probe, identity = cleanIdentity(v), true
			}
		}
	}
	if identity {
		s.setIdentity(h, d, probe, packetsURL)
	}
	if rate > 0 && space > 0 {
		rate = (rate + space) / rate
	}
	if rate > 0 {
		if hasSampler {
			s.setSampler(h, d, sampler, uint32(min(rate, 1<<32-1)))
		} else {
			d.sampling = uint32(min(rate, 1<<32-1))
		}
	}
	if hasIf {
		if name == "" {
			name = descr
		}
		if name != "" {
			s.setName(h, d, uint32(ifIndex), name)
		}
	}
}

func (s *State) setSampler(h *header, d *domain, id uint64, rate uint32) {
	if _, ok := d.samplers[id]; ok {
		d.samplers[id] = rate
		return
	}
	if s.samplers >= maxSamplers {
		s.refuse(reason.OptionsLimit, "%s from %s: sampler %d of domain %d: exporter already has %d sampler rates",
			kindName(h.version), s.exporter, id, h.domain, s.samplers)
		return
	}
	if why := s.reserve(samplerBytes); why != "" {
		s.refuse(why, "%s from %s: sampler %d of domain %d: %d bytes of state kept for the exporter",
			kindName(h.version), s.exporter, id, h.domain, s.bytes)
		return
	}
	if d.samplers == nil {
		d.samplers = map[uint64]uint32{}
	}
	d.samplers[id] = rate
	d.bytes += samplerBytes
	s.samplers++
}

func (s *State) setName(h *header, d *domain, ifIndex uint32, name string) {
	old, ok := d.ifNames[ifIndex]
	if ok && old == name {
		return
	}
	if !ok && s.limits.MaxInterfaceNames > 0 && s.names >= s.limits.MaxInterfaceNames {
		s.refuse(reason.OptionsLimit, "%s from %s: name of interface %d of domain %d: exporter already has %d interface names",
			kindName(h.version), s.exporter, ifIndex, h.domain, s.names)
		return
	}
	cost := nameBytes + len(name)
	if ok {
		cost = len(name) - len(old)
	}
	if cost > 0 {
		if why := s.reserve(cost); why != "" {
			if ok { // a stale name would mislead
				delete(d.ifNames, ifIndex)
				s.release(nameBytes + len(old))
				d.bytes -= nameBytes + len(old)
				s.names--
			}
			s.refuse(why, "%s from %s: name of interface %d of domain %d: %d bytes of state kept for the exporter",
				kindName(h.version), s.exporter, ifIndex, h.domain, s.bytes)
			return
		}
	} else {
		s.release(-cost)
	}
	if d.ifNames == nil {
		d.ifNames = map[uint32]string{}
	}
	d.ifNames[ifIndex] = name
	d.bytes += cost
	if !ok {
		s.names++
	}
}

// maxIdentity bounds the probe name and packets URL kept per domain.
const maxIdentity = 255

// cleanIdentity is a probe name or URL: as cleanString, at most
// maxIdentity bytes (cut between characters).
func cleanIdentity(v []byte) string {
	n := cleanString(v[:min(len(v), 4*maxIdentity)])
	if len(n) <= maxIdentity {
		return n
	}
	cut := maxIdentity
	for cut > 0 && !utf8.RuneStart(n[cut]) {
		cut--
	}
	return strings.Clone(n[:cut])
}

// setIdentity keeps a domain's probe name and packets URL (an identity
// options record), counted in the exporter's state.
func (s *State) setIdentity(h *header, d *domain, probe, packetsURL string) {
	cost := len(probe) + len(packetsURL) - len(d.probe) - len(d.packetsURL)
	if cost > 0 {
		if why := s.reserve(cost); why != "" {
			s.release(len(d.probe) + len(d.packetsURL)) // a stale identity would mislead
			d.bytes -= len(d.probe) + len(d.packetsURL)
			d.probe, d.packetsURL = "", ""
			s.refuse(why, "%s from %s: identity of domain %d: %d bytes of state kept for the exporter",
				kindName(h.version), s.exporter, h.domain, s.bytes)
			return
		}
	} else {
		s.release(-cost)
	}
	d.probe, d.packetsURL = probe, packetsURL
	d.bytes += cost
}

// cleanName is an interface name or description: NUL padding trimmed,
// valid UTF-8, at most MaxInterfaceNameBytes (cut between characters).
func (s *State) cleanName(v []byte) string {
	limit := s.limits.MaxInterfaceNameBytes
	if limit <= 0 {
		return cleanString(v)
	}
	// Repairing invalid UTF-8 can triple a name: clean a bounded prefix,
	// then cut what the repair made longer.
	n := cleanString(v[:min(len(v), 4*limit)])
	if len(n) <= limit {
		return n
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(n[cut]) {
		cut--
	}
	return strings.Clone(n[:cut]) // not the whole prefix
}

// cleanString trims the NUL padding exporters put after names.
func cleanString(v []byte) string {
	s := strings.TrimRight(string(v), "\x00")
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\ufffd")
	}
	return s
}
