package netflow

import (
	"strings"
	"unicode"
)

// Element types, as far as the collector needs them to write a value.
const (
	tUnsigned = 'u'
	tIPv4     = '4'
	tIPv6     = '6'
	tMAC      = 'm'
	tString   = 's'
	tOctets   = 'o' // written as hex
)

type element struct {
	name string // snake_case, as written under netflow.*
	typ  byte
}

// ianaElements lists IANA IPFIX information elements (also the NetFlow v9
// field types below 128, which share their numbers) by id, for the elements
// without an ECS home that are written under netflow.<snake_case name>.
// Written from the IANA registry https://www.iana.org/assignments/ipfix.
const ianaTable = `
1 octetDeltaCount u|2 packetDeltaCount u|3 deltaFlowCount u|4 protocolIdentifier u|5 ipClassOfService u
6 tcpControlBits u|7 sourceTransportPort u|8 sourceIPv4Address 4|9 sourceIPv4PrefixLength u|10 ingressInterface u
11 destinationTransportPort u|12 destinationIPv4Address 4|13 destinationIPv4PrefixLength u|14 egressInterface u
15 ipNextHopIPv4Address 4|16 bgpSourceAsNumber u|17 bgpDestinationAsNumber u|18 bgpNextHopIPv4Address 4
19 postMCastPacketDeltaCount u|20 postMCastOctetDeltaCount u|21 flowEndSysUpTime u|22 flowStartSysUpTime u
23 postOctetDeltaCount u|24 postPacketDeltaCount u|25 minimumIpTotalLength u|26 maximumIpTotalLength u
27 sourceIPv6Address 6|28 destinationIPv6Address 6|29 sourceIPv6PrefixLength u|30 destinationIPv6PrefixLength u
31 flowLabelIPv6 u|32 icmpTypeCodeIPv4 u|33 igmpType u|34 samplingInterval u|35 samplingAlgorithm u
36 flowActiveTimeout u|37 flowIdleTimeout u|38 engineType u|39 engineId u|40 exportedOctetTotalCount u
41 exportedMessageTotalCount u|42 exportedFlowRecordTotalCount u|43 ipv4RouterSc 4|44 sourceIPv4Prefix 4
45 destinationIPv4Prefix 4|46 mplsTopLabelType u|47 mplsTopLabelIPv4Address 4|48 samplerId u|49 samplerMode u
50 samplerRandomInterval u|51 classId u|52 minimumTTL u|53 maximumTTL u|54 fragmentIdentification u
55 postIpClassOfService u|56 sourceMacAddress m|57 postDestinationMacAddress m|58 vlanId u|59 postVlanId u
60 ipVersion u|61 flowDirection u|62 ipNextHopIPv6Address 6|63 bgpNextHopIPv6Address 6|64 ipv6ExtensionHeaders u
70 mplsTopLabelStackSection o|71 mplsLabelStackSection2 o|72 mplsLabelStackSection3 o|73 mplsLabelStackSection4 o
74 mplsLabelStackSection5 o|75 mplsLabelStackSection6 o|76 mplsLabelStackSection7 o|77 mplsLabelStackSection8 o
78 mplsLabelStackSection9 o|79 mplsLabelStackSection10 o|80 destinationMacAddress m|81 postSourceMacAddress m
82 interfaceName s|83 interfaceDescription s|84 samplerName s|85 octetTotalCount u|86 packetTotalCount u
87 flagsAndSamplerId u|88 fragmentOffset u|89 forwardingStatus u|90 mplsVpnRouteDistinguisher o
91 mplsTopLabelPrefixLength u|92 srcTrafficIndex u|93 dstTrafficIndex u|94 applicationDescription s
95 applicationId o|96 applicationName s|98 postIpDiffServCodePoint u|99 multicastReplicationFactor u
100 className s|101 classificationEngineId u|102 layer2packetSectionOffset u|103 layer2packetSectionSize u
104 layer2packetSectionData o|128 bgpNextAdjacentAsNumber u|129 bgpPrevAdjacentAsNumber u
130 exporterIPv4Address 4|131 exporterIPv6Address 6|132 droppedOctetDeltaCount u|133 droppedPacketDeltaCount u
134 droppedOctetTotalCount u|135 droppedPacketTotalCount u|136 flowEndReason u|137 commonPropertiesId u
138 observationPointId u|139 icmpTypeCodeIPv6 u|140 mplsTopLabelIPv6Address 6|141 lineCardId u|142 portId u
143 meteringProcessId u|144 exportingProcessId u|145 templateId u|146 wlanChannelId u|147 wlanSSID s
148 flowId u|149 observationDomainId u|150 flowStartSeconds u|151 flowEndSeconds u|152 flowStartMilliseconds u
153 flowEndMilliseconds u|154 flowStartMicroseconds u|155 flowEndMicroseconds u|156 flowStartNanoseconds u
157 flowEndNanoseconds u|158 flowStartDeltaMicroseconds u|159 flowEndDeltaMicroseconds u
160 systemInitTimeMilliseconds u|161 flowDurationMilliseconds u|162 flowDurationMicroseconds u
163 observedFlowTotalCount u|164 ignoredPacketTotalCount u|165 ignoredOctetTotalCount u
166 notSentFlowTotalCount u|167 notSentPacketTotalCount u|168 notSentOctetTotalCount u
169 destinationIPv6Prefix 6|170 sourceIPv6Prefix 6|171 postOctetTotalCount u|172 postPacketTotalCount u
173 flowKeyIndicator u|174 postMCastPacketTotalCount u|175 postMCastOctetTotalCount u|176 icmpTypeIPv4 u
177 icmpCodeIPv4 u|178 icmpTypeIPv6 u|179 icmpCodeIPv6 u|180 udpSourcePort u|181 udpDestinationPort u
182 tcpSourcePort u|183 tcpDestinationPort u|184 tcpSequenceNumber u|185 tcpAcknowledgementNumber u
186 tcpWindowSize u|187 tcpUrgentPointer u|188 tcpHeaderLength u|189 ipHeaderLength u|190 totalLengthIPv4 u
191 payloadLengthIPv6 u|192 ipTTL u|193 nextHeaderIPv6 u|194 mplsPayloadLength u|195 ipDiffServCodePoint u
196 ipPrecedence u|197 fragmentFlags u|198 octetDeltaSumOfSquares u|199 octetTotalSumOfSquares u
200 mplsTopLabelTTL u|201 mplsLabelStackLength u|202 mplsLabelStackDepth u|203 mplsTopLabelExp u
204 ipPayloadLength u|205 udpMessageLength u|206 isMulticast u|207 ipv4IHL u|208 ipv4Options u|209 tcpOptions u
210 paddingOctets o|211 collectorIPv4Address 4|212 collectorIPv6Address 6|213 exportInterface u
214 exportProtocolVersion u|215 exportTransportProtocol u|216 collectorTransportPort u|217 exporterTransportPort u
218 tcpSynTotalCount u|219 tcpFinTotalCount u|220 tcpRstTotalCount u|221 tcpPshTotalCount u|222 tcpAckTotalCount u
223 tcpUrgTotalCount u|224 ipTotalLength u|225 postNATSourceIPv4Address 4|226 postNATDestinationIPv4Address 4
227 postNAPTSourceTransportPort u|228 postNAPTDestinationTransportPort u|229 natOriginatingAddressRealm u
230 natEvent u|231 initiatorOctets u|232 responderOctets u|233 firewallEvent u|234 ingressVRFID u|235 egressVRFID u
236 VRFname s|237 postMplsTopLabelExp u|238 tcpWindowScale u|239 biflowDirection u|240 ethernetHeaderLength u
241 ethernetPayloadLength u|242 ethernetTotalLength u|243 dot1qVlanId u|244 dot1qPriority u
245 dot1qCustomerVlanId u|246 dot1qCustomerPriority u|247 metroEvcId s|248 metroEvcType u|249 pseudoWireId u
250 pseudoWireType u|251 pseudoWireControlWord u|252 ingressPhysicalInterface u|253 egressPhysicalInterface u
254 postDot1qVlanId u|255 postDot1qCustomerVlanId u|256 ethernetType u|257 postIpPrecedence u
258 collectionTimeMilliseconds u|259 exportSctpStreamId u|260 maxExportSeconds u|261 maxFlowEndSeconds u
262 messageMD5Checksum o|263 messageScope u|264 minExportSeconds u|265 minFlowStartSeconds u|266 opaqueOctets o
267 sessionScope u|268 maxFlowEndMicroseconds u|269 maxFlowEndMilliseconds u|270 maxFlowEndNanoseconds u
271 minFlowStartMicroseconds u|272 minFlowStartMilliseconds u|273 minFlowStartNanoseconds u
276 dataRecordsReliability u|277 observationPointType u|278 newConnectionDeltaCount u
279 connectionSumDurationSeconds u|280 connectionTransactionId u|281 postNATSourceIPv6Address 6
282 postNATDestinationIPv6Address 6|283 natPoolId u|284 natPoolName s|285 anonymizationFlags u
286 anonymizationTechnique u|287 informationElementIndex u|288 p2pTechnology s|289 tunnelTechnology s
290 encryptedTechnology s|294 bgpValidityState u|295 IPSecSPI u|296 greKey u|297 natType u
298 initiatorPackets u|299 responderPackets u|300 observationDomainName s|301 selectionSequenceId u
302 selectorId u|303 informationElementId u|304 selectorAlgorithm u|305 samplingPacketInterval u
306 samplingPacketSpace u|307 samplingTimeInterval u|308 samplingTimeSpace u|309 samplingSize u
310 samplingPopulation u|312 dataLinkFrameSize u|313 ipHeaderPacketSection o|314 ipPayloadPacketSection o
315 dataLinkFrameSection o|316 mplsLabelStackSection o|317 mplsPayloadPacketSection o
318 selectorIdTotalPktsObserved u|319 selectorIdTotalPktsSelected u|322 observationTimeSeconds u
323 observationTimeMilliseconds u|324 observationTimeMicroseconds u|325 observationTimeNanoseconds u
326 digestHashValue u|346 privateEnterpriseNumber u|347 virtualStationInterfaceId o
348 virtualStationInterfaceName s|349 virtualStationUUID o|350 virtualStationName s|351 layer2SegmentId u
352 layer2OctetDeltaCount u|353 layer2OctetTotalCount u|354 ingressUnicastPacketTotalCount u
355 ingressMulticastPacketTotalCount u|356 ingressBroadcastPacketTotalCount u|357 egressUnicastPacketTotalCount u
358 egressBroadcastPacketTotalCount u|359 monitoringIntervalStartMilliSeconds u
360 monitoringIntervalEndMilliSeconds u|361 portRangeStart u|362 portRangeEnd u|363 portRangeStepSize u
364 portRangeNumPorts u|365 staMacAddress m|366 staIPv4Address 4|367 wtpMacAddress m|368 ingressInterfaceType u
369 egressInterfaceType u|370 rtpSequenceNumber u|371 userName s|372 applicationCategoryName s
373 applicationSubCategoryName s|374 applicationGroupName s|375 originalFlowsPresent u
376 originalFlowsInitiated u|377 originalFlowsCompleted u|384 valueDistributionMethod u
385 rfc3550JitterMilliseconds u|386 rfc3550JitterMicroseconds u|387 rfc3550JitterNanoseconds u
388 dot1qDEI u|389 dot1qCustomerDEI u|401 transportOctetDeltaCount u|402 transportPacketDeltaCount u
403 originalExporterIPv4Address 4|404 originalExporterIPv6Address 6|405 originalObservationDomainId u
408 dataLinkFrameType u|409 sectionOffset u|410 sectionExportedOctets u|411 dot1qServiceInstanceTag o
412 dot1qServiceInstanceId u|413 dot1qServiceInstancePriority u|414 dot1qCustomerSourceMacAddress m
415 dot1qCustomerDestinationMacAddress m|417 postLayer2OctetDeltaCount u|418 postMCastLayer2OctetDeltaCount u
420 postLayer2OctetTotalCount u|421 postMCastLayer2OctetTotalCount u|422 minimumLayer2TotalLength u
423 maximumLayer2TotalLength u|424 droppedLayer2OctetDeltaCount u|425 droppedLayer2OctetTotalCount u
426 ignoredLayer2OctetTotalCount u|427 notSentLayer2OctetTotalCount u|428 layer2OctetDeltaSumOfSquares u
429 layer2OctetTotalSumOfSquares u|430 layer2FrameDeltaCount u|431 layer2FrameTotalCount u
432 pseudoWireDestinationIPv4Address 4|433 ignoredLayer2FrameTotalCount u|434 mibObjectValueInteger u
458 sourceTransportPortsLimit u|459 httpRequestMethod s|460 httpRequestHost s|461 httpRequestTarget s
462 httpMessageVersion s|463 natInstanceID u|464 internalAddressRealm o|465 externalAddressRealm o
466 natQuotaExceededEvent u|467 natThresholdEvent u|468 httpUserAgent s|469 httpContentType s
470 httpReasonPhrase s|471 maxSessionEntries u|472 maxBIBEntries u|473 maxEntriesPerUser u
474 maxSubscribers u|475 maxFragmentsPendingReassembly u|476 addressPoolHighThreshold u
477 addressPoolLowThreshold u|478 addressPortMappingHighThreshold u|479 addressPortMappingLowThreshold u
480 addressPortMappingPerUserHighThreshold u|481 globalAddressMappingHighThreshold u|482 vpnIdentifier o
483 bgpCommunity u|489 icmpTypeCodeIPv4 u|490 icmpTypeCodeIPv6 u|491 tcpOptions u
`

// VMware's enterprise elements (PEN 6876), sent by vSphere Distributed
// Switches and NSX: the tenant (inner, overlay) flow of VXLAN/Geneve traffic.
const vmwareTable = `
880 tenantProtocol u|881 tenantSourceIPv4 4|882 tenantDestIPv4 4|883 tenantSourceIPv6 6|884 tenantDestIPv6 6
886 tenantSourcePort u|887 tenantDestPort u|888 egressInterfaceAttr u|889 vxlanExportRole u|890 ingressInterfaceAttr u
`

// PENs whose elements have names here.
const (
	penVMware = 6876
	// penReverse is RFC 5103's reverse element enterprise number: the
	// element is the IANA one of the same id, in the reverse direction.
	penReverse = 29305
)

var iana, vmware = parseTable(ianaTable), parseTable(vmwareTable)

func parseTable(t string) map[uint16]element {
	m := map[uint16]element{}
	for _, line := range strings.Split(t, "\n") {
		for _, e := range strings.Split(line, "|") {
			var f []string
			if f = strings.Fields(e); len(f) != 3 {
				continue
			}
			id := 0
			for _, c := range f[0] {
				id = id*10 + int(c-'0')
			}
			m[uint16(id)] = element{name: SnakeCase(f[1]), typ: f[2][0]}
		}
	}
	return m
}

// SnakeCase turns an IPFIX camelCase name into the snake_case one used under
// netflow.* (sourceIPv4Address → source_ipv4_address), as Elastic's NetFlow
// integration does.
func SnakeCase(s string) string {
	s = strings.ReplaceAll(s, "IPv", "Ipv")
	s = strings.ReplaceAll(s, "VRFname", "vrfName")
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		if unicode.IsUpper(r) {
			prevLower := i > 0 && (unicode.IsLower(rs[i-1]) || unicode.IsDigit(rs[i-1]))
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			prevUpper := i > 0 && unicode.IsUpper(rs[i-1])
			if i > 0 && (prevLower || (prevUpper && nextLower)) {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
