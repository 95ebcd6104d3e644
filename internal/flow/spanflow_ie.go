package flow

// spanflow's own IPFIX information elements, for what IANA has no element for
// (TCP performance). The exporter encodes them and the collector decodes them,
// so both take the numbers from here.
//
// EnterpriseNumber is 32473, the private enterprise number RFC 5612 reserves
// for documentation and experiments, until spanflow registers its own with
// IANA; collectors that do not know it skip these fields as unknown
// enterprise elements, as RFC 7011 §6.2 requires.
const EnterpriseNumber uint32 = 32473

// Element ids under EnterpriseNumber; all are unsigned integers but
// IEPacketsURL.
const (
	IETCPRTTClientMicroseconds uint16 = 1 // unsigned32: client-side handshake RTT (SYN-ACK to ACK)
	IETCPRTTServerMicroseconds uint16 = 2 // unsigned32: server-side handshake RTT (SYN to SYN-ACK)
	IETCPRetransmittedPackets  uint16 = 3 // unsigned32: retransmitted segments
	IETCPZeroWindowEvents      uint16 = 4 // unsigned32: segments advertising a zero window
	// IEPacketsURL is a string: the address at which the probe that
	// meters the observation domain serves its packet ring
	// (https://probe-a:9109), sent in the identity options record with
	// observationDomainName.
	IEPacketsURL uint16 = 5
)
