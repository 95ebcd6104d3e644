package pcapfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// ngFile builds pcapng files block by block.
type ngFile struct {
	o interface {
		binary.ByteOrder
		binary.AppendByteOrder
	}
	b bytes.Buffer
}

func (f *ngFile) block(typ uint32, body []byte) {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	n := uint32(12 + len(body))
	f.b.Write(f.o.AppendUint32(f.o.AppendUint32(nil, typ), n))
	f.b.Write(body)
	f.b.Write(f.o.AppendUint32(nil, n))
}

func (f *ngFile) section() {
	b := f.o.AppendUint32(nil, ngByteOrderMagic)
	b = f.o.AppendUint16(f.o.AppendUint16(b, 1), 0)
	b = f.o.AppendUint64(b, ^uint64(0))
	f.block(ngSectionHeader, b)
}

// iface adds an interface; resol is the if_tsresol byte (0: none), offset
// if_tsoffset seconds.
func (f *ngFile) iface(link uint16, snap uint32, resol byte, offset uint64) {
	b := f.o.AppendUint16(nil, link)
	b = f.o.AppendUint32(f.o.AppendUint16(b, 0), snap)
	if resol != 0 {
		b = f.o.AppendUint16(f.o.AppendUint16(b, ngOptTSResolution), 1)
		b = append(b, resol, 0, 0, 0)
	}
	if offset != 0 {
		b = f.o.AppendUint16(f.o.AppendUint16(b, ngOptTSOffset), 8)
		b = f.o.AppendUint64(b, offset)
	}
	b = f.o.AppendUint32(b, 0) // end of options
	f.block(ngInterfaceBlock, b)
}

func (f *ngFile) packet(id uint32, ts uint64, wire uint32, data []byte) {
	b := f.o.AppendUint32(nil, id)
	b = f.o.AppendUint32(f.o.AppendUint32(b, uint32(ts>>32)), uint32(ts))
	b = f.o.AppendUint32(f.o.AppendUint32(b, uint32(len(data))), wire)
	f.block(ngEnhancedPacket, append(b, data...))
}

// TestPCAPNG: sections in both byte orders, interfaces of different link
// types, timestamp resolutions and offsets, enhanced, simple and obsolete
// packet blocks, and unknown blocks skipped.
func TestPCAPNG(t *testing.T) {
	data := multiSectionNG()
	want := []Frame{
		{Data: []byte{1, 2, 3}, Length: 60, LinkType: 1, Timestamp: 1_500_000_250_000_000},
		{Data: []byte{4, 5, 6, 7}, Length: 4, LinkType: 276, Timestamp: 1_500_000_000_123_456_789},
		{Data: []byte{8, 9}, Length: 2, LinkType: 101, Timestamp: 1003_500_000_000},
		{Data: []byte{1, 2}, Length: 5, LinkType: 113, Timestamp: 1003_500_000_000}, // no time: the frame before's
		{Data: []byte{42}, Length: 1, LinkType: 113, Timestamp: 7_000_000_000},
	}
	src, err := Open(writeFile(t, data))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var fr Frame
	for i, w := range want {
		if err := src.Next(&fr); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(fr.Data, w.Data) || fr.Length != w.Length || fr.LinkType != w.LinkType || fr.Timestamp != w.Timestamp {
			t.Errorf("frame %d: %+v, want %+v", i, fr, w)
		}
	}
	if err := src.Next(&fr); err != io.EOF {
		t.Errorf("after the last frame: %v", err)
	}
	cut, err := Open(writeFile(t, data[:len(data)-3]))
	if err != nil {
		t.Fatal(err)
	}
	defer cut.Close()
	for err = cut.Next(&fr); err == nil; err = cut.Next(&fr) {
	}
	if errors.Is(err, io.EOF) {
		t.Errorf("cut file: %v, want an error", err)
	}
}

// FuzzPCAPNG: FuzzPCAP, from a pcapng file of every block type read.
func FuzzPCAPNG(f *testing.F) {
	f.Add(multiSectionNG())
	f.Fuzz(readsToAnEnd)
}

// readsToAnEnd opens data as a capture file and reads it: frames, then an
// error or the end, never a panic or an endless loop.
func readsToAnEnd(t *testing.T, data []byte) {
	src, err := Open(writeFile(t, data))
	if err != nil {
		return
	}
	defer src.Close()
	var fr Frame
	for i := 0; i < 100000; i++ {
		if err := src.Next(&fr); err != nil {
			return
		}
	}
	t.Fatal("no end after 100000 frames")
}

// multiSectionNG is a pcapng file of two sections (big-endian, then
// little-endian) with the blocks TestPCAPNG expects.
func multiSectionNG() []byte {
	f := &ngFile{o: binary.BigEndian}
	f.section()
	f.iface(1, 0, 0, 0)            // microseconds
	f.iface(276, 0, 9, 0)          // nanoseconds, Linux SLL2
	f.iface(101, 0, 0x80|20, 1000) // 2^-20 s, 1000 s later
	f.packet(0, 1_500_000_250_000, 60, []byte{1, 2, 3})
	f.block(0x0bad, []byte{9, 9, 9, 9}) // unknown: skipped
	f.packet(1, 1_500_000_000_123_456_789, 4, []byte{4, 5, 6, 7})
	f.packet(2, 3<<20|1<<19, 2, []byte{8, 9})
	f.o = binary.LittleEndian // a second section, the other byte order
	f.section()
	f.iface(113, 2, 0, 0)
	f.block(ngSimplePacket, append(f.o.AppendUint32(nil, 5), 1, 2, 3, 4, 5)) // cut to the snap length
	obs := f.o.AppendUint16(f.o.AppendUint16(nil, 0), 0)
	obs = f.o.AppendUint32(f.o.AppendUint32(obs, 0), 7_000_000)
	obs = f.o.AppendUint32(f.o.AppendUint32(obs, 1), 1)
	f.block(ngObsoletePacket, append(obs, 42))
	return f.b.Bytes()
}
