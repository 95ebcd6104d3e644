// Package ipfix is spanflow's IPFIX (RFC 7011) encoder, the exporter's fourth
// stage: it turns flow records into IPFIX messages (templates, data sets,
// exporter statistics in an options template) no larger than the path MTU,
// numbered per observation domain, and hands each message to a transport.
package ipfix

import "github.com/spanflow/spanflow/internal/flow"

// Field is one field specifier of a template.
type Field struct {
	ID         uint16 // information element id, without the enterprise bit
	Length     uint16
	Enterprise uint32 // 0 for IANA elements
	Name       string // the element's name, for documentation
}

// IANA information element ids used here.
const (
	ieOctetDeltaCount              = 1
	iePacketDeltaCount             = 2
	ieProtocolIdentifier           = 4
	ieIPClassOfService             = 5
	ieTCPControlBits               = 6
	ieSourceTransportPort          = 7
	ieSourceIPv4Address            = 8
	ieIngressInterface             = 10
	ieInterfaceName                = 82
	ieDestinationTransportPort     = 11
	ieDestinationIPv4Address       = 12
	ieEgressInterface              = 14
	ieSourceIPv6Address            = 27
	ieDestinationIPv6Address       = 28
	ieICMPTypeCodeIPv4             = 32
	ieExportedMessageTotalCount    = 41
	ieExportedFlowRecordTotalCount = 42
	ieSourceMacAddress             = 56
	ieVlanID                       = 58
	ieDestinationMacAddress        = 80
	ieOctetTotalCount              = 85
	iePacketTotalCount             = 86
	ieFlowEndReason                = 136
	ieObservationPointID           = 138
	ieICMPTypeCodeIPv6             = 139
	ieObservationDomainID          = 149
	ieFlowStartMilliseconds        = 152
	ieFlowEndMilliseconds          = 153
	ieIgnoredPacketTotalCount      = 164
	ieBiflowDirection              = 239
	ieDot1qCustomerVlanID          = 245
	ieLayer2SegmentID              = 351
	ieObservationDomainName        = 300
)

// Template ids. A flow record goes in the smallest of three data templates
// per IP version that holds what it has: the full one when it came in a
// tunnel, a VLAN or an ERSPAN session, else one without those four fields,
// and without the TCP ones too when it is not TCP (see Shape). A live
// capture's TCP and plain templates keep observationPointId (every record
// has its interface's, see Configuration.ObservationPoints).
const (
	TemplateIPv4    uint16 = 256 // full
	TemplateIPv6    uint16 = 257 // full
	TemplateOptions uint16 = 258
	// TemplateIdentity is the identity options template, sent only when
	// the probe has a name or serves its packet ring.
	TemplateIdentity uint16 = 259
	// TemplateInterface is the interface options template, sent only by
	// a live capture (Configuration.Interfaces).
	TemplateInterface uint16 = 260
	// TemplateIPv4TCP and TemplateIPv6TCP leave out the tunnel fields.
	TemplateIPv4TCP uint16 = 261
	TemplateIPv6TCP uint16 = 262
	// TemplateIPv4Plain and TemplateIPv6Plain leave out the tunnel and
	// the TCP fields.
	TemplateIPv4Plain uint16 = 263
	TemplateIPv6Plain uint16 = 264
)

// Shape is which fields a data template has beyond the ones all have.
type Shape uint8

const (
	// ShapeFull has the tunnel fields (vlanId, dot1qCustomerVlanId,
	// layer2SegmentId, observationPointId) and the TCP ones.
	ShapeFull Shape = iota
	// ShapeTCP has the TCP fields, not the tunnel ones.
	ShapeTCP
	// ShapePlain has neither.
	ShapePlain
	shapes
)

// ShapeOf is the shape of the template r goes in: full when it has any
// tunnel field (an observation point counts only without points: when the
// TCP and plain templates leave it out), else TCP for a TCP flow, else
// plain.
func ShapeOf(r *flow.Record, points bool) Shape {
	switch {
	case r.VLAN != 0 || r.InnerVLAN != 0 || r.SegmentID != 0 || (uint32(r.ObservationPoint) != 0 && !points):
		return ShapeFull
	case r.Proto == 6:
		return ShapeTCP
	}
	return ShapePlain
}

// dataTemplates are the data template ids by shape and IP version.
var dataTemplates = [shapes][2]uint16{
	ShapeFull:  {TemplateIPv4, TemplateIPv6},
	ShapeTCP:   {TemplateIPv4TCP, TemplateIPv6TCP},
	ShapePlain: {TemplateIPv4Plain, TemplateIPv6Plain},
}

// TemplateID is the id of the data template of shape s and IP version v6.
func TemplateID(s Shape, v6 bool) uint16 {
	if v6 {
		return dataTemplates[s][1]
	}
	return dataTemplates[s][0]
}

// varLength is the field length of variable-length elements (RFC 7011 §7).
const varLength = 0xFFFF

// maxIdentity bounds the probe name and packets URL: each is sent in one
// record, with the templates.
const maxIdentity = 255

// flowFields are the fields of the full data template.
func flowFields(v6 bool) []Field { return shapeFields(ShapeFull, v6, false) }

// shapeFields are the fields of the data template of shape s, in the order
// appendRecord writes them; with points, every shape has
// observationPointId.
func shapeFields(s Shape, v6, points bool) []Field {
	var fs []Field
	for _, f := range allFlowFields(v6) {
		switch {
		case points && f.ID == ieObservationPointID && f.Enterprise == 0:
			fs = append(fs, f)
		case s != ShapeFull && isTunnelField(f):
		case s == ShapePlain && isTCPField(f):
		default:
			fs = append(fs, f)
		}
	}
	return fs
}

func isTunnelField(f Field) bool {
	switch f.ID {
	case ieVlanID, ieDot1qCustomerVlanID, ieLayer2SegmentID, ieObservationPointID:
		return f.Enterprise == 0
	}
	return false
}

func isTCPField(f Field) bool {
	if f.ID == ieBiflowDirection && f.Enterprise == 0 {
		return true
	}
	if f.Enterprise != flow.EnterpriseNumber {
		return false
	}
	switch f.ID {
	case flow.IETCPRTTClientMicroseconds, flow.IETCPRTTServerMicroseconds, flow.IETCPRetransmittedPackets, flow.IETCPZeroWindowEvents:
		return true
	}
	return false
}

func allFlowFields(v6 bool) []Field {
	src := Field{ieSourceIPv4Address, 4, 0, "sourceIPv4Address"}
	dst := Field{ieDestinationIPv4Address, 4, 0, "destinationIPv4Address"}
	icmp := Field{ieICMPTypeCodeIPv4, 2, 0, "icmpTypeCodeIPv4"}
	if v6 {
		src = Field{ieSourceIPv6Address, 16, 0, "sourceIPv6Address"}
		dst = Field{ieDestinationIPv6Address, 16, 0, "destinationIPv6Address"}
		icmp = Field{ieICMPTypeCodeIPv6, 2, 0, "icmpTypeCodeIPv6"}
	}
	pen := flow.EnterpriseNumber
	return []Field{
		src, dst,
		{ieSourceTransportPort, 2, 0, "sourceTransportPort"},
		{ieDestinationTransportPort, 2, 0, "destinationTransportPort"},
		{ieProtocolIdentifier, 1, 0, "protocolIdentifier"},
		{ieIPClassOfService, 1, 0, "ipClassOfService"},
		{ieTCPControlBits, 2, 0, "tcpControlBits"},
		icmp,
		{ieOctetDeltaCount, 8, 0, "octetDeltaCount"},
		{iePacketDeltaCount, 8, 0, "packetDeltaCount"},
		{ieFlowStartMilliseconds, 8, 0, "flowStartMilliseconds"},
		{ieFlowEndMilliseconds, 8, 0, "flowEndMilliseconds"},
		{ieFlowEndReason, 1, 0, "flowEndReason"},
		{ieVlanID, 2, 0, "vlanId"},
		{ieDot1qCustomerVlanID, 2, 0, "dot1qCustomerVlanId"},
		{ieSourceMacAddress, 6, 0, "sourceMacAddress"},
		{ieDestinationMacAddress, 6, 0, "destinationMacAddress"},
		{ieIngressInterface, 4, 0, "ingressInterface"},
		{ieEgressInterface, 4, 0, "egressInterface"},
		{ieLayer2SegmentID, 8, 0, "layer2SegmentId"},
		{ieObservationPointID, 4, 0, "observationPointId"},
		{flow.IETCPRTTClientMicroseconds, 4, pen, "tcpRttClientMicroseconds"},
		{flow.IETCPRTTServerMicroseconds, 4, pen, "tcpRttServerMicroseconds"},
		{flow.IETCPRetransmittedPackets, 4, pen, "tcpRetransmittedPackets"},
		{flow.IETCPZeroWindowEvents, 4, pen, "tcpZeroWindowEvents"},
		{ieBiflowDirection, 1, 0, "biflowDirection"},
	}
}

// optionsScope and optionsFields make the exporter statistics options
// template (RFC 7011 §4.1, Metering Process Statistics), scoped to the
// observation domain.
var (
	optionsScope  = []Field{{ieObservationDomainID, 4, 0, "observationDomainId"}}
	optionsFields = []Field{
		{iePacketTotalCount, 8, 0, "packetTotalCount"},
		{ieOctetTotalCount, 8, 0, "octetTotalCount"},
		{ieIgnoredPacketTotalCount, 8, 0, "ignoredPacketTotalCount"},
		{ieExportedFlowRecordTotalCount, 8, 0, "exportedFlowRecordTotalCount"},
		{ieExportedMessageTotalCount, 8, 0, "exportedMessageTotalCount"},
	}
)

// identityScope and identityFields make the identity options template.
var (
	identityScope  = []Field{{ieObservationDomainID, 4, 0, "observationDomainId"}}
	identityFields = []Field{
		{ieObservationDomainName, varLength, 0, "observationDomainName"},
		{flow.IEPacketsURL, varLength, flow.EnterpriseNumber, "packetsURL"},
	}
)

// interfaceScope and interfaceFields make the interface options template:
// a capture interface's index and name, as routers send them.
var (
	interfaceScope  = []Field{{ieIngressInterface, 4, 0, "ingressInterface"}}
	interfaceFields = []Field{{ieInterfaceName, varLength, 0, "interfaceName"}}
)

// InterfaceFields returns the scope and fields of the interface options
// template.
func InterfaceFields() (scope, fields []Field) { return interfaceScope, interfaceFields }

// IdentityFields returns the scope and fields of the identity options
// template.
func IdentityFields() (scope, fields []Field) { return identityScope, identityFields }

// FlowFields returns the fields of the full IPv4 or IPv6 data template
// (for documentation and tests).
func FlowFields(v6 bool) []Field { return flowFields(v6) }

// OptionsFields returns the scope and fields of the statistics options template.
func OptionsFields() (scope, fields []Field) { return optionsScope, optionsFields }

func recordLength(fs []Field) int {
	n := 0
	for _, f := range fs {
		n += int(f.Length)
	}
	return n
}
