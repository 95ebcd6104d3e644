// Package ipfixgen builds IPFIX messages of synthetic flows with known
// contents, for the collector's benchmarks and the load tool: one template
// (IPv4 5-tuple, counters, millisecond timestamps, interfaces, TCP flags and
// spanflow's TCP performance elements) and data sets of RecordsPerMessage
// records.
package ipfixgen

import (
	"encoding/binary"
	"time"

	"github.com/spanflow/spanflow/internal/flow"
)

// TemplateID of the generated data.
const TemplateID = 256

type field struct {
	id     uint16
	length uint16
	pen    uint32
}

var fields = []field{
	{8, 4, 0}, {12, 4, 0}, {7, 2, 0}, {11, 2, 0}, {4, 1, 0}, {6, 1, 0},
	{1, 8, 0}, {2, 8, 0}, {152, 8, 0}, {153, 8, 0}, {10, 4, 0}, {14, 4, 0}, {136, 1, 0},
	{flow.IETCPRTTClientMicroseconds, 4, flow.EnterpriseNumber}, {flow.IETCPRTTServerMicroseconds, 4, flow.EnterpriseNumber},
	{flow.IETCPRetransmittedPackets, 4, flow.EnterpriseNumber}, {flow.IETCPZeroWindowEvents, 4, flow.EnterpriseNumber},
}

// RecordLen is the size of one data record.
var RecordLen = func() int {
	n := 0
	for _, f := range fields {
		n += int(f.length)
	}
	return n
}()

// Generator makes messages; flow i has source 10.(i>>16).(i>>8).i, port
// 1024+i%60000, destination 10.255.0.1:443, TCP, Bytes = 1000+i%1000,
// Packets = 10+i%10.
type Generator struct {
	Domain  uint32
	seq     uint32
	next    uint64
	bytes   uint64
	PerMsg  int
	started time.Time
}

// New returns a generator of perMessage records per message.
func New(domain uint32, perMessage int) *Generator {
	return &Generator{Domain: domain, PerMsg: perMessage, started: time.Unix(1764000000, 0)}
}

func header(b []byte, length int, export, seq, domain uint32) {
	binary.BigEndian.PutUint16(b[0:], 10)
	binary.BigEndian.PutUint16(b[2:], uint16(length))
	binary.BigEndian.PutUint32(b[4:], export)
	binary.BigEndian.PutUint32(b[8:], seq)
	binary.BigEndian.PutUint32(b[12:], domain)
}

// Template returns a message holding the template.
func (g *Generator) Template() []byte {
	b := make([]byte, 16, 256)
	b = binary.BigEndian.AppendUint16(b, 2)
	lenAt := len(b)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, TemplateID)
	b = binary.BigEndian.AppendUint16(b, uint16(len(fields)))
	for _, f := range fields {
		if f.pen != 0 {
			b = binary.BigEndian.AppendUint16(b, f.id|0x8000)
			b = binary.BigEndian.AppendUint16(b, f.length)
			b = binary.BigEndian.AppendUint32(b, f.pen)
		} else {
			b = binary.BigEndian.AppendUint16(b, f.id)
			b = binary.BigEndian.AppendUint16(b, f.length)
		}
	}
	binary.BigEndian.PutUint16(b[lenAt:], uint16(len(b)-16))
	header(b, len(b), uint32(g.started.Unix()), g.seq, g.Domain)
	return b
}

// Flows is how many flows the generator has put in messages.
func (g *Generator) Flows() uint64 { return g.next }

// Bytes is the sum of the flows' bytes.
func (g *Generator) Bytes() uint64 { return g.bytes }

// AppendData appends a message of PerMsg records to b (b[:0] to reuse).
func (g *Generator) AppendData(b []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, 16)...)
	b = binary.BigEndian.AppendUint16(b, TemplateID)
	b = binary.BigEndian.AppendUint16(b, uint16(4+g.PerMsg*RecordLen))
	t0 := uint64(g.started.UnixMilli())
	for range g.PerMsg {
		i := g.next
		g.next++
		g.bytes += 1000 + i%1000
		b = append(b, 10, byte(i>>16), byte(i>>8), byte(i))
		b = append(b, 10, 255, 0, 1)
		b = binary.BigEndian.AppendUint16(b, uint16(1024+i%60000))
		b = binary.BigEndian.AppendUint16(b, 443)
		b = append(b, 6, 0x1b)
		b = binary.BigEndian.AppendUint64(b, 1000+i%1000)
		b = binary.BigEndian.AppendUint64(b, 10+i%10)
		b = binary.BigEndian.AppendUint64(b, t0+i)
		b = binary.BigEndian.AppendUint64(b, t0+i+1500)
		b = binary.BigEndian.AppendUint32(b, 3)
		b = binary.BigEndian.AppendUint32(b, 4)
		b = append(b, 3)
		b = binary.BigEndian.AppendUint32(b, 250)
		b = binary.BigEndian.AppendUint32(b, 120)
		b = binary.BigEndian.AppendUint32(b, uint32(i%3))
		b = binary.BigEndian.AppendUint32(b, 0)
	}
	header(b[start:], len(b)-start, uint32(g.started.Unix()), g.seq, g.Domain)
	g.seq += uint32(g.PerMsg)
	return b
}
