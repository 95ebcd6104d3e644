package synth

import (
	"bufio"
	"encoding/binary"
	"io"
	"os"
)

// PcapHeader is the file header of a nanosecond-resolution pcap 2.4 file
// of Ethernet frames, snap length 65535.
func PcapHeader() [24]byte {
	var h [24]byte
	binary.LittleEndian.PutUint32(h[0:], 0xa1b23c4d)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], 65535)
	binary.LittleEndian.PutUint32(h[20:], 1)
	return h
}

// WritePcap writes packets as a nanosecond-resolution Ethernet pcap file.
func WritePcap(w io.Writer, pkts []Packet) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	h := PcapHeader()
	if _, err := bw.Write(h[:]); err != nil {
		return err
	}
	for _, p := range pkts {
		if err := writeRecord(bw, p); err != nil {
			return err
		}
	}
	return bw.Flush()
}

func writeRecord(w io.Writer, p Packet) error {
	var r [16]byte
	caplen := len(p.Data)
	if p.SnapLen > 0 && caplen > p.SnapLen {
		caplen = p.SnapLen
	}
	binary.LittleEndian.PutUint32(r[0:], uint32(p.Time/1e9))
	binary.LittleEndian.PutUint32(r[4:], uint32(p.Time%1e9))
	binary.LittleEndian.PutUint32(r[8:], uint32(caplen))
	binary.LittleEndian.PutUint32(r[12:], uint32(len(p.Data)))
	if _, err := w.Write(r[:]); err != nil {
		return err
	}
	_, err := w.Write(p.Data[:caplen])
	return err
}

// WritePcapFile writes packets to a new file at path.
func WritePcapFile(path string, pkts []Packet) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := WritePcap(f, pkts); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
