package ipfixgen

import (
	"encoding/binary"
	"time"
)

// V9Generator makes NetFlow v9 export packets of the same flows as
// Generator (flow i: source 10.(i>>16).(i>>8).i, port 1024+i%60000, to
// 10.255.0.1:443, TCP, Bytes = 1000+i%1000, Packets = 10+i%10), with the
// same template id: the load tool mixes both protocols, each exporter with
// its own template state.
type V9Generator struct {
	SourceID uint32
	PerMsg   int
	seq      uint32
	next     uint64
	bytes    uint64
	boot     time.Time // the exporter's boot: sysUptime and the switched times count from it
}

// v9Fields are the IPFIX template's elements that NetFlow v9 has (no
// enterprise elements), with the flow times as FIRST_SWITCHED and
// LAST_SWITCHED (milliseconds of uptime).
var v9Fields = []field{
	{8, 4, 0}, {12, 4, 0}, {7, 2, 0}, {11, 2, 0}, {4, 1, 0}, {6, 1, 0},
	{1, 8, 0}, {2, 8, 0}, {22, 4, 0}, {21, 4, 0}, {10, 4, 0}, {14, 4, 0},
}

// V9RecordLen is the size of one v9 data record.
var V9RecordLen = func() int {
	n := 0
	for _, f := range v9Fields {
		n += int(f.length)
	}
	return n
}()

// NewV9 returns a generator of perMessage records per packet.
func NewV9(sourceID uint32, perMessage int) *V9Generator {
	return &V9Generator{SourceID: sourceID, PerMsg: perMessage, boot: time.Unix(1764000000, 0).Add(-time.Hour)}
}

// header writes the packet header; the export time is the first whole
// second 2 s after the end of the last flow generated so far (whole, so
// that a collector's boot time from unix seconds and uptime is exact).
func (g *V9Generator) header(b []byte, count int) {
	now := time.Unix(1764000000, 0).Add(time.Duration(g.next)*time.Millisecond + 2*time.Second).Truncate(time.Second).Add(time.Second)
	binary.BigEndian.PutUint16(b[0:], 9)
	binary.BigEndian.PutUint16(b[2:], uint16(count))
	binary.BigEndian.PutUint32(b[4:], uint32(now.Sub(g.boot).Milliseconds()))
	binary.BigEndian.PutUint32(b[8:], uint32(now.Unix()))
	binary.BigEndian.PutUint32(b[12:], g.seq)
	binary.BigEndian.PutUint32(b[16:], g.SourceID)
	g.seq++ // v9 counts packets
}

// Template returns a packet holding the template.
func (g *V9Generator) Template() []byte {
	b := make([]byte, 20, 128)
	b = binary.BigEndian.AppendUint16(b, 0) // template flowset
	lenAt := len(b)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, TemplateID)
	b = binary.BigEndian.AppendUint16(b, uint16(len(v9Fields)))
	for _, f := range v9Fields {
		b = binary.BigEndian.AppendUint16(b, f.id)
		b = binary.BigEndian.AppendUint16(b, f.length)
	}
	binary.BigEndian.PutUint16(b[lenAt:], uint16(len(b)-20))
	g.header(b, 1)
	return b
}

// Flows is how many flows the generator has put in packets.
func (g *V9Generator) Flows() uint64 { return g.next }

// Bytes is the sum of the flows' bytes.
func (g *V9Generator) Bytes() uint64 { return g.bytes }

// AppendData appends a packet of PerMsg records to b (b[:0] to reuse).
func (g *V9Generator) AppendData(b []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, 20)...)
	b = binary.BigEndian.AppendUint16(b, TemplateID)
	lenAt := len(b)
	b = binary.BigEndian.AppendUint16(b, 0)
	// Flow i started at uptime 3,600,000+i ms (1764000000 s + i ms) and
	// lasted 1.5 s, as Generator's.
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
		b = binary.BigEndian.AppendUint32(b, uint32(3_600_000+i))
		b = binary.BigEndian.AppendUint32(b, uint32(3_600_000+i+1500))
		b = binary.BigEndian.AppendUint32(b, 3)
		b = binary.BigEndian.AppendUint32(b, 4)
	}
	for (len(b)-lenAt+2)%4 != 0 {
		b = append(b, 0) // flowsets are padded to 4 bytes
	}
	binary.BigEndian.PutUint16(b[lenAt:], uint16(len(b)-lenAt+2))
	g.header(b[start:], g.PerMsg)
	return b
}
