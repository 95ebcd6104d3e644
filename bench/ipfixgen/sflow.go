package ipfixgen

import (
	"encoding/binary"
	"net/netip"
)

// SFlowGenerator makes sFlow v5 datagrams (SFLOW-DATAGRAM5.txt) of flow
// samples, one flow per sample: sample i holds the sampled header (Ethernet,
// IPv4, TCP) of a packet of flow i, source 10.(i>>16).(i>>8).i port
// 1024+i%60000, to 10.255.0.1:443, IP length 100+i%1400, sampled 1 in Rate.
// A collector that scales by the rate, as spanflow's decoder does, counts
// Rate packets and (100+i%1400)×Rate bytes for it. Each generator is one
// agent (its address and sub-agent id) with its own datagram and sample
// sequence numbers; sFlow has no templates, so Template returns nil.
type SFlowGenerator struct {
	Agent    netip.Addr // IPv4
	SubAgent uint32
	Rate     uint32
	PerMsg   int
	seq      uint32 // datagrams
	next     uint64 // flows (samples)
	bytes    uint64
}

// NewSFlow returns a generator of perMessage flow samples per datagram.
func NewSFlow(agent netip.Addr, subAgent uint32, perMessage int, rate uint32) *SFlowGenerator {
	return &SFlowGenerator{Agent: agent, SubAgent: subAgent, PerMsg: perMessage, Rate: max(rate, 1)}
}

// Template returns nil: sFlow datagrams describe themselves.
func (g *SFlowGenerator) Template() []byte { return nil }

// Flows is how many flows (one sample each) the generator has put in datagrams.
func (g *SFlowGenerator) Flows() uint64 { return g.next }

// Bytes is the sum of the flows' bytes as a collector counts them: the
// sampled packets' IP lengths times the sampling rate.
func (g *SFlowGenerator) Bytes() uint64 { return g.bytes }

// sampledHeaderLen: Ethernet (14), IPv4 (20), TCP (20), padded to 4 bytes.
const sampledHeaderLen = 54

// AppendData appends a datagram of PerMsg flow samples to b (b[:0] to reuse).
func (g *SFlowGenerator) AppendData(b []byte) []byte {
	g.seq++
	a := g.Agent.As4()
	b = binary.BigEndian.AppendUint32(b, 5) // version
	b = binary.BigEndian.AppendUint32(b, 1) // agent address type: IPv4
	b = append(b, a[:]...)
	b = binary.BigEndian.AppendUint32(b, g.SubAgent)
	b = binary.BigEndian.AppendUint32(b, g.seq)
	b = binary.BigEndian.AppendUint32(b, 3_600_000+g.seq) // uptime, ms
	b = binary.BigEndian.AppendUint32(b, uint32(g.PerMsg))
	for range g.PerMsg {
		i := g.next
		g.next++
		ipLen := 100 + i%1400
		g.bytes += ipLen * uint64(g.Rate)
		b = binary.BigEndian.AppendUint32(b, 1) // flow sample
		b = binary.BigEndian.AppendUint32(b, 32+8+16+(sampledHeaderLen+3)&^3)
		b = binary.BigEndian.AppendUint32(b, uint32(g.next)) // sample sequence number
		b = binary.BigEndian.AppendUint32(b, 3)              // source id: ifIndex 3
		b = binary.BigEndian.AppendUint32(b, g.Rate)
		b = binary.BigEndian.AppendUint32(b, uint32(g.next)*g.Rate) // sample pool
		b = binary.BigEndian.AppendUint32(b, 0)                     // drops
		b = binary.BigEndian.AppendUint32(b, 3)                     // input ifIndex
		b = binary.BigEndian.AppendUint32(b, 4)                     // output ifIndex
		b = binary.BigEndian.AppendUint32(b, 1)                     // one flow record
		b = binary.BigEndian.AppendUint32(b, 1)                     // raw packet header
		b = binary.BigEndian.AppendUint32(b, 16+(sampledHeaderLen+3)&^3)
		b = binary.BigEndian.AppendUint32(b, 1) // header protocol: Ethernet
		b = binary.BigEndian.AppendUint32(b, uint32(ipLen)+14+4)
		b = binary.BigEndian.AppendUint32(b, 4) // stripped: the FCS
		b = binary.BigEndian.AppendUint32(b, sampledHeaderLen)
		b = append(b, 0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00)
		b = append(b, 0x45, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(ipLen))
		b = append(b, 0, 0, 0x40, 0, 64, 6, 0, 0) // id, DF, TTL, TCP, checksum
		b = append(b, 10, byte(i>>16), byte(i>>8), byte(i), 10, 255, 0, 1)
		b = binary.BigEndian.AppendUint16(b, uint16(1024+i%60000))
		b = binary.BigEndian.AppendUint16(b, 443)
		b = append(b, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18) // seq, ack, offset, PSH|ACK
		b = append(b, 0xff, 0xff, 0, 0, 0, 0)             // window, checksum, urgent
		b = append(b, 0, 0)                               // pad to 4 bytes
	}
	return b
}
