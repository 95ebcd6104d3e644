package distribute

import (
	"encoding/binary"
	"fmt"
	"net"
)

// sender writes one frame to a destination. buf holds headroom bytes for
// the tunnel headers, then the frame; ts is its capture time.
type sender interface {
	send(buf []byte, ts int64) error
	Close() error
}

// GRE protocol types of the payloads we write.
const (
	greTEB     = 0x6558 // transparent Ethernet bridging
	greERSPAN2 = 0x88BE // ERSPAN type II
	greERSPAN3 = 0x22EB // ERSPAN type III
	greSeq     = 0x1000 // S bit: a sequence number follows
	greKey     = 0x2000 // K bit: a key follows
)

func openSender(d Destination) (sender, error) {
	switch d.Kind {
	case KindInterface:
		return openInterface(d.Iface)
	case KindVXLAN:
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(d.Addr))
		if err != nil {
			return nil, fmt.Errorf("open vxlan to %s: %w", d.Addr, err)
		}
		return &vxlanSender{conn: c, vni: d.VNI}, nil
	}
	network := "ip4:47"
	if d.Addr.Addr().Is6() {
		network = "ip6:47"
	}
	c, err := net.DialIP(network, nil, &net.IPAddr{IP: d.Addr.Addr().AsSlice()})
	if err != nil {
		return nil, fmt.Errorf("open GRE to %s (raw socket: needs CAP_NET_RAW): %w", d.Addr.Addr(), err)
	}
	return &greSender{conn: c, d: d}, nil
}

type vxlanSender struct {
	conn *net.UDPConn
	vni  uint32
}

// send writes the VXLAN header (RFC 7348: I flag, VNI) before the frame.
func (s *vxlanSender) send(buf []byte, _ int64) error {
	h := buf[headroom-8 : headroom]
	binary.BigEndian.PutUint32(h[0:], 0x08000000)
	binary.BigEndian.PutUint32(h[4:], s.vni<<8)
	_, err := s.conn.Write(buf[headroom-8:])
	return err
}

func (s *vxlanSender) Close() error { return s.conn.Close() }

// greSender writes GRE (transparent Ethernet bridging, optional key) or
// ERSPAN II/III over GRE with a sequence number; the kernel adds the IP
// header.
type greSender struct {
	conn *net.IPConn
	d    Destination
	seq  uint32
}

func (s *greSender) send(buf []byte, ts int64) error {
	var h []byte
	switch s.d.Kind {
	case KindGRE:
		n := 4
		if s.d.HasKey {
			n = 8
		}
		h = buf[headroom-n : headroom]
		binary.BigEndian.PutUint16(h[2:], greTEB)
		if s.d.HasKey {
			binary.BigEndian.PutUint16(h[0:], greKey)
			binary.BigEndian.PutUint32(h[4:], s.d.Key)
		} else {
			binary.BigEndian.PutUint16(h[0:], 0)
		}
	case KindERSPAN2:
		h = buf[headroom-16 : headroom]
		s.greSeq(h, greERSPAN2)
		e := h[8:]
		// Ver 1, VLAN 0 | COS 0, En 0 (no tag kept), T 0, session | index.
		binary.BigEndian.PutUint16(e[0:], 1<<12)
		binary.BigEndian.PutUint16(e[2:], s.d.Session&0x3ff)
		binary.BigEndian.PutUint32(e[4:], s.d.Index&0xfffff)
	case KindERSPAN3:
		h = buf[headroom-20 : headroom]
		s.greSeq(h, greERSPAN3)
		e := h[8:]
		// Ver 2, VLAN 0 | COS 0, BSO 0, T 0, session | timestamp in 100 µs
		// units (granularity 00) | SGT 0 | P 1 (an Ethernet frame, as
		// Linux's erspan device writes), FT 0, HW ID 0, D 0, Gra 00, O 0.
		binary.BigEndian.PutUint16(e[0:], 2<<12)
		binary.BigEndian.PutUint16(e[2:], s.d.Session&0x3ff)
		binary.BigEndian.PutUint32(e[4:], uint32(ts/100_000))
		binary.BigEndian.PutUint16(e[8:], 0)
		binary.BigEndian.PutUint16(e[10:], 0x8000)
	}
	_, err := s.conn.Write(buf[headroom-len(h):])
	return err
}

// greSeq writes a GRE header with a sequence number.
func (s *greSender) greSeq(h []byte, proto uint16) {
	binary.BigEndian.PutUint16(h[0:], greSeq)
	binary.BigEndian.PutUint16(h[2:], proto)
	binary.BigEndian.PutUint32(h[4:], s.seq)
	s.seq++
}

func (s *greSender) Close() error { return s.conn.Close() }
