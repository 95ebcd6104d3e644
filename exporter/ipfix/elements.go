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
	ieDot1qCustomerVlanID          = 245
	ieLayer2SegmentID              = 351
	ieObservationDomainName        = 300
)

// Template ids.
const (
	TemplateIPv4    uint16 = 256
	TemplateIPv6    uint16 = 257
	TemplateOptions uint16 = 258
	// TemplateIdentity is the identity options template, sent only when
	// the probe has a name or serves its packet ring.
	TemplateIdentity uint16 = 259
	// TemplateInterface is the interface options template, sent only by
	// a live capture (Configuration.Interfaces).
	TemplateInterface uint16 = 260
)

// varLength is the field length of variable-length elements (RFC 7011 §7).
const varLength = 0xFFFF

// maxIdentity bounds the probe name and packets URL: each is sent in one
// record, with the templates.
const maxIdentity = 255

func flowFields(v6 bool) []Field {
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

// FlowFields returns the fields of the IPv4 or IPv6 data template (for
// documentation and tests).
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
