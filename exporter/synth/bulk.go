package synth

import (
	"bufio"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"os"
	"time"
)

// Bulk generates an endless, deterministic mix of traffic for benchmarks:
// about 8000 concurrent connections, 70% TCP (handshake, data, FIN), 25%
// UDP, 5% ICMP; one in five IPv6; carried plain (50%), in 802.1Q (15%),
// VXLAN (15%), ERSPAN II (10%), ERSPAN III (5%) or GRE (5%). Frames keep
// their first 160 bytes (as a snap-length capture would); the IP lengths
// say how long they were. One packet every 5 µs.
type Bulk struct {
	rng   *rand.Rand
	now   int64
	conns []bulkConn
	next  uint32
	plain bool // NewPlain: untunnelled, short connections
}

type bulkConn struct {
	enc        Encap
	a, b       netip.Addr
	sport      uint16
	dport      uint16
	proto      uint8
	left, step int
}

// NewBulk returns a generator starting at base.
func NewBulk(base time.Time) *Bulk {
	g := &Bulk{rng: rand.New(rand.NewPCG(1, 2)), now: base.UnixNano(), conns: make([]bulkConn, 8192)}
	for i := range g.conns {
		g.newConn(&g.conns[i])
	}
	return g
}

// NewPlain returns a generator of plain traffic, as a capture on an
// untunnelled link sees it: the same protocols and address families as
// Bulk, every frame plain Ethernet, 16,384 concurrent connections of 4 to
// 59 packets (about 40,000 connections, 80,000 flows one per direction, in
// 1.24 M packets).
func NewPlain(base time.Time) *Bulk {
	g := &Bulk{rng: rand.New(rand.NewPCG(3, 4)), now: base.UnixNano(), conns: make([]bulkConn, 16384), plain: true}
	for i := range g.conns {
		g.newConn(&g.conns[i])
	}
	return g
}

var bulkEncaps = []struct {
	enc    Encap
	weight int
}{{Plain, 50}, {VLAN100, 15}, {VXLAN5001, 15}, {ERSPAN2s7, 10}, {ERSPAN3s9, 5}, {GREKey77, 5}}

func (g *Bulk) newConn(c *bulkConn) {
	g.next++
	n := g.next
	w := g.rng.IntN(100)
	for _, e := range bulkEncaps {
		if w < e.weight {
			c.enc = e.enc
			break
		}
		w -= e.weight
	}
	if g.rng.IntN(5) == 0 {
		var a, b [16]byte
		a[0], a[1], b[0], b[1] = 0x20, 0x01, 0x20, 0x01
		binary.BigEndian.PutUint32(a[12:], n)
		binary.BigEndian.PutUint32(b[12:], n*7+1)
		c.a, c.b = netip.AddrFrom16(a), netip.AddrFrom16(b)
	} else {
		var a, b [4]byte
		binary.BigEndian.PutUint32(a[:], 10<<24|n)
		binary.BigEndian.PutUint32(b[:], 172<<24|16<<16|(n*7+1)&0xffff)
		c.a, c.b = netip.AddrFrom4(a), netip.AddrFrom4(b)
	}
	c.sport = uint16(1024 + n%60000)
	c.dport = []uint16{80, 443, 53, 8080, 22, 3306}[g.rng.IntN(6)]
	switch p := g.rng.IntN(100); {
	case p < 70:
		c.proto = 6
	case p < 95:
		c.proto = 17
	default:
		c.proto = 1
		if c.a.Is6() {
			c.proto = 58
		}
	}
	c.left = 4 + g.rng.IntN(250)
	if g.plain {
		c.enc, c.left = Plain, 4+g.rng.IntN(56)
	}
	c.step = 0
}

// Next returns the next packet.
func (g *Bulk) Next() Packet {
	c := &g.conns[g.rng.IntN(len(g.conns))]
	g.now += 5 * int64(time.Microsecond)
	fromA := c.step%2 == 0 || g.rng.IntN(3) > 0
	s, d, sp, dp := c.a, c.b, c.sport, c.dport
	if !fromA {
		s, d, sp, dp = d, s, dp, sp
	}
	size := 64 + g.rng.IntN(1400)
	var l4 []byte
	switch c.proto {
	case 6:
		flags := uint8(0x10)
		switch {
		case c.step == 0:
			flags, fromA = 0x02, true
			s, d, sp, dp = c.a, c.b, c.sport, c.dport
		case c.step == 1:
			flags, fromA = 0x12, false
			s, d, sp, dp = c.b, c.a, c.dport, c.sport
		case c.left <= 2:
			flags = 0x11
		default:
			flags = 0x18
		}
		l4 = TCP(sp, dp, uint32(c.step)*1000, 1, flags, 65535, size)
	case 17:
		l4 = UDP(sp, dp, make([]byte, size))
	default:
		typ := uint8(8)
		if c.proto == 58 {
			typ = 128
		}
		l4 = ICMP(typ, 0, size)
	}
	frame := c.enc.Wrap(ipPacket(s, d, c.proto, l4), fromA)
	c.step++
	c.left--
	if c.left <= 0 {
		g.newConn(c)
	}
	return Packet{Time: g.now, Data: frame, SnapLen: 160}
}

// Packets returns the next n packets.
func (g *Bulk) Packets(n int) []Packet {
	out := make([]Packet, n)
	for i := range out {
		p := g.Next()
		if len(p.Data) > p.SnapLen {
			// Keep only what the capture keeps, but remember the length.
			p.Data = p.Data[:p.SnapLen:p.SnapLen]
		}
		out[i] = p
	}
	return out
}

// WriteBulkFile writes n bulk packets to a pcap file at path.
func WriteBulkFile(path string, base time.Time, n int) error {
	return writeFile(path, NewBulk(base), n)
}

// WritePlainFile writes n packets of plain traffic (NewPlain) to a pcap
// file at path.
func WritePlainFile(path string, base time.Time, n int) error {
	return writeFile(path, NewPlain(base), n)
}

func writeFile(path string, g *Bulk, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := WritePcap(bw, nil); err != nil {
		f.Close()
		return err
	}
	for i := 0; i < n; i++ {
		if err := writeRecord(bw, g.Next()); err != nil {
			f.Close()
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
