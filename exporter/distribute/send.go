package distribute

import (
	"encoding/binary"
	"fmt"
	"net"
)

// sender writes frames to one destination: encap puts the tunnel headers
// in the headroom before each frame, then write sends a batch of packets
// (with one sendmmsg call on Linux).
type sender struct {
	d     Destination
	seq   uint32 // ERSPAN's GRE sequence number
	write batchWriter
	close func() error
}

// batchWriter sends the packets and returns how many it could not send,
// and the last error; it sets refused[i] for each packet i it could not
// send (refused has one entry per packet, all false on the call), so that
// the bytes sent are those of the others.
type batchWriter func(pkts [][]byte, refused []bool) (failed int, err error)

// refuseAll marks every packet refused and says how many there are.
func refuseAll(refused []bool) int {
	for i := range refused {
		refused[i] = true
	}
	return len(refused)
}

// GRE protocol types of the payloads we write.
const (
	greTEB     = 0x6558 // transparent Ethernet bridging
	greERSPAN2 = 0x88BE // ERSPAN type II
	greERSPAN3 = 0x22EB // ERSPAN type III
	greSeq     = 0x1000 // S bit: a sequence number follows
	greKey     = 0x2000 // K bit: a key follows
)

func openSender(d Destination) (*sender, error) {
	s := &sender{d: d}
	switch d.Kind {
	case KindInterface:
		w, closeFn, err := openInterface(d.Iface)
		if err != nil {
			return nil, err
		}
		s.write, s.close = w, closeFn
		return s, nil
	case KindVXLAN:
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(d.Addr))
		if err != nil {
			return nil, fmt.Errorf("open vxlan to %s: %w", d.Addr, err)
		}
		s.write, s.close = udpWriter(c), c.Close
		return s, nil
	}
	network := "ip4:47"
	if d.Addr.Addr().Is6() {
		network = "ip6:47"
	}
	c, err := net.DialIP(network, nil, &net.IPAddr{IP: d.Addr.Addr().AsSlice()})
	if err != nil {
		return nil, fmt.Errorf("open GRE to %s (raw socket: needs CAP_NET_RAW): %w", d.Addr.Addr(), err)
	}
	s.write, s.close = greWriter(d.Addr.Addr(), connWriter(c), c.Close)
	return s, nil
}

// encap writes the tunnel headers before the frame in buf (which begins
// with headroom bytes) and returns the packet to send.
func (s *sender) encap(buf []byte, ts int64) []byte {
	switch s.d.Kind {
	case KindVXLAN:
		// RFC 7348: I flag, VNI.
		h := buf[headroom-8:]
		binary.BigEndian.PutUint32(h[0:], 0x08000000)
		binary.BigEndian.PutUint32(h[4:], s.d.VNI<<8)
		return h
	case KindGRE:
		n := 4
		if s.d.HasKey {
			n = 8
		}
		h := buf[headroom-n:]
		binary.BigEndian.PutUint16(h[2:], greTEB)
		if s.d.HasKey {
			binary.BigEndian.PutUint16(h[0:], greKey)
			binary.BigEndian.PutUint32(h[4:], s.d.Key)
		} else {
			binary.BigEndian.PutUint16(h[0:], 0)
		}
		return h
	case KindERSPAN2:
		h := buf[headroom-16:]
		s.greSeq(h, greERSPAN2)
		e := h[8:]
		// Ver 1, VLAN 0 | COS 0, En 0 (no tag kept), T 0, session | index.
		binary.BigEndian.PutUint16(e[0:], 1<<12)
		binary.BigEndian.PutUint16(e[2:], s.d.Session&0x3ff)
		binary.BigEndian.PutUint32(e[4:], s.d.Index&0xfffff)
		return h
	case KindERSPAN3:
		h := buf[headroom-20:]
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
		return h
	}
	return buf[headroom:]
}

// greSeq writes a GRE header with a sequence number.
func (s *sender) greSeq(h []byte, proto uint16) {
	binary.BigEndian.PutUint16(h[0:], greSeq)
	binary.BigEndian.PutUint16(h[2:], proto)
	binary.BigEndian.PutUint32(h[4:], s.seq)
	s.seq++
}
