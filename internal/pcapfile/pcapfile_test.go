package pcapfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// pcapBytes builds a little-endian microsecond pcap file of link type link.
func pcapBytes(link uint32, frames ...[]byte) []byte {
	var b bytes.Buffer
	h := make([]byte, 24)
	binary.LittleEndian.PutUint32(h, 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], 65535)
	binary.LittleEndian.PutUint32(h[20:], link)
	b.Write(h)
	for i, f := range frames {
		r := make([]byte, 16)
		binary.LittleEndian.PutUint32(r, uint32(1000+i))
		binary.LittleEndian.PutUint32(r[4:], 250000)
		binary.LittleEndian.PutUint32(r[8:], uint32(len(f)))
		binary.LittleEndian.PutUint32(r[12:], uint32(len(f)+100))
		b.Write(r)
		b.Write(f)
	}
	return b.Bytes()
}

func writeFile(t testing.TB, data []byte) string {
	p := filepath.Join(t.TempDir(), "c.pcap")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPCAP: frames, their time (µs resolution), wire length and a link type
// above 255 (LINKTYPE_LINUX_SLL2) come out as written; a cut record is an
// error naming the frame.
func TestPCAP(t *testing.T) {
	data := pcapBytes(276, []byte{1, 2, 3}, []byte{4, 5})
	src, err := Open(writeFile(t, data))
	if err != nil {
		t.Fatal(err)
	}
	var f Frame
	for i, want := range [][]byte{{1, 2, 3}, {4, 5}} {
		if err := src.Next(&f); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f.Data, want) || f.LinkType != 276 || f.Length != len(want)+100 || f.Timestamp != int64(1000+i)*1e9+250000*1e3 {
			t.Errorf("frame %d: %+v", i, f)
		}
	}
	if err := src.Next(&f); err != io.EOF {
		t.Errorf("after the last frame: %v, want EOF", err)
	}
	src.Close()

	src, err = Open(writeFile(t, data[:len(data)-1]))
	if err != nil {
		t.Fatal(err)
	}
	src.Next(&f)
	if err := src.Next(&f); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("cut capture: %v, want an error", err)
	}
	src.Close()

	if _, err := Open(writeFile(t, []byte("not a capture at all, really"))); err == nil {
		t.Error("garbage accepted")
	}
}

// FuzzPCAP: any file content gives frames or an error, never a panic or an
// endless loop.
func FuzzPCAP(f *testing.F) {
	f.Add(pcapBytes(1, []byte{1, 2, 3}, make([]byte, 60)))
	f.Add(pcapBytes(276))
	f.Add([]byte{0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0})
	f.Fuzz(readsToAnEnd)
}

// TestNotACapture: a directory, a short text file and an empty file say
// what they are, whichever way the file is opened; a cut pcap header says
// it is cut.
func TestNotACapture(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, path, want string
	}{
		{"directory", dir, dir + " is a directory, not a capture file"},
		{"text", writeFile(t, []byte("hello\n")), "not a pcap or pcapng file"},
		{"empty", writeFile(t, nil), "not a pcap or pcapng file (0 bytes)"},
		{"cut header", writeFile(t, pcapBytes(1)[:10]), "short file header: 10 bytes"},
	} {
		for _, open := range []func(string) (*Reader, error){Open, OpenMapped} {
			r, err := open(tc.path)
			if err == nil {
				r.Close()
				t.Errorf("%s: no error", tc.name)
				continue
			}
			if !bytes.Contains([]byte(err.Error()), []byte(tc.want)) || bytes.Contains([]byte(err.Error()), []byte("short")) != (tc.name == "cut header") {
				t.Errorf("%s: error %q, want %q", tc.name, err, tc.want)
			}
		}
	}
}
