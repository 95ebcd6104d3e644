package ring

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// WritePcap writes frames as a pcap file with nanosecond timestamps. A pcap
// file has one link type: frames of several (a ring fed from interfaces of
// different kinds) need WritePcapng.
func WritePcap(w io.Writer, pkts []Packet) error {
	link := uint32(1)
	if len(pkts) > 0 {
		link = pkts[0].LinkType
	}
	for _, p := range pkts {
		if p.LinkType != link {
			return fmt.Errorf("the frames have link types %d and %d, which one pcap file cannot hold: ask for pcapng", link, p.LinkType)
		}
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	le := binary.LittleEndian
	var h [24]byte
	le.PutUint32(h[0:], 0xa1b23c4d) // nanosecond pcap
	le.PutUint16(h[4:], 2)
	le.PutUint16(h[6:], 4)
	le.PutUint32(h[16:], 262144)
	le.PutUint32(h[20:], link)
	bw.Write(h[:])
	for _, p := range pkts {
		var r [16]byte
		le.PutUint32(r[0:], uint32(p.Time/1e9))
		le.PutUint32(r[4:], uint32(p.Time%1e9))
		le.PutUint32(r[8:], uint32(len(p.Data)))
		le.PutUint32(r[12:], uint32(max(p.Length, len(p.Data))))
		bw.Write(r[:])
		bw.Write(p.Data)
	}
	return bw.Flush()
}

// WritePcapng writes frames as pcapng, one interface per link type and
// observation point, with nanosecond timestamps.
func WritePcapng(w io.Writer, pkts []Packet) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	le := binary.LittleEndian
	block := func(typ uint32, body []byte) {
		pad := (4 - len(body)%4) % 4
		n := uint32(12 + len(body) + pad)
		var b [8]byte
		le.PutUint32(b[0:], typ)
		le.PutUint32(b[4:], n)
		bw.Write(b[:])
		bw.Write(body)
		bw.Write(make([]byte, pad))
		le.PutUint32(b[0:], n)
		bw.Write(b[:4])
	}
	// Section header: byte-order magic, version 1.0, section length unknown.
	shb := make([]byte, 16)
	le.PutUint32(shb[0:], 0x1a2b3c4d)
	le.PutUint16(shb[4:], 1)
	le.PutUint64(shb[8:], ^uint64(0))
	block(0x0a0d0d0a, shb)
	type iface struct {
		link uint32
		obs  uint16
	}
	ids := map[iface]uint32{}
	for _, p := range pkts {
		k := iface{p.LinkType, p.ObservationPoint}
		id, ok := ids[k]
		if !ok {
			id = uint32(len(ids))
			ids[k] = id
			// Interface description: link type, snap length, and the
			// option if_tsresol = 9 (nanoseconds).
			idb := make([]byte, 8, 20)
			le.PutUint16(idb[0:], uint16(p.LinkType))
			le.PutUint32(idb[4:], 262144)
			idb = append(idb, 9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0)
			block(0x00000001, idb)
		}
		epb := make([]byte, 20, 20+len(p.Data))
		le.PutUint32(epb[0:], id)
		le.PutUint32(epb[4:], uint32(uint64(p.Time)>>32))
		le.PutUint32(epb[8:], uint32(uint64(p.Time)))
		le.PutUint32(epb[12:], uint32(len(p.Data)))
		le.PutUint32(epb[16:], uint32(max(p.Length, len(p.Data))))
		epb = append(epb, p.Data...)
		block(0x00000006, epb)
	}
	return bw.Flush()
}
