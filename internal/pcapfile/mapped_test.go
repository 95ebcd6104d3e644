package pcapfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// readAll reads every frame of r (copied), and the error that ended it
// (nil at io.EOF).
func readAll(r *Reader) ([]Frame, error) {
	var out []Frame
	var f Frame
	for {
		err := r.Next(&f)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		f.Data = slices.Clone(f.Data)
		out = append(out, f)
	}
}

func readPath(t *testing.T, path string, mapped bool) ([]Frame, error) {
	t.Helper()
	open := Open
	if mapped {
		open = OpenMapped
	}
	r, err := open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return readAll(r)
}

// pcapOf builds a pcap file in either byte order, with microsecond or
// nanosecond timestamps.
func pcapOf(order binary.ByteOrder, nanos bool, link uint32, frames ...[]byte) []byte {
	var b bytes.Buffer
	h := make([]byte, 24)
	magic := uint32(0xa1b2c3d4)
	if nanos {
		magic = 0xa1b23c4d
	}
	order.PutUint32(h, magic)
	order.PutUint16(h[4:], 2)
	order.PutUint16(h[6:], 4)
	order.PutUint32(h[16:], 65535)
	order.PutUint32(h[20:], link)
	b.Write(h)
	for i, f := range frames {
		r := make([]byte, 16)
		order.PutUint32(r, uint32(1000+i))
		order.PutUint32(r[4:], 250000)
		order.PutUint32(r[8:], uint32(len(f)))
		order.PutUint32(r[12:], uint32(len(f)+100))
		b.Write(r)
		b.Write(f)
	}
	return b.Bytes()
}

// TestMappedLinkTypes: a mapped capture of every link type the decoder
// reads, in both byte orders and timestamp resolutions, gives the frames
// that reading it gives, as written.
func TestMappedLinkTypes(t *testing.T) {
	links := []uint32{0, 1, 9, 12, 14, 101, 104, 108, 113, 228, 229, 239, 276}
	frames := [][]byte{{1, 2, 3}, {}, bytes.Repeat([]byte{7}, 1500), {4, 5}}
	for _, link := range links {
		for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
			for _, nanos := range []bool{false, true} {
				name := fmt.Sprintf("link%d-%s-nanos%v", link, order, nanos)
				t.Run(name, func(t *testing.T) {
					path := writeFile(t, pcapOf(order, nanos, link, frames...))
					read, err := readPath(t, path, false)
					if err != nil {
						t.Fatal(err)
					}
					mapped, err := readPath(t, path, true)
					if err != nil {
						t.Fatal(err)
					}
					if len(mapped) != len(frames) {
						t.Fatalf("%d frames, want %d", len(mapped), len(frames))
					}
					for i, f := range mapped {
						frac := int64(250000 * 1000)
						if nanos {
							frac = 250000
						}
						want := Frame{Data: frames[i], Length: len(frames[i]) + 100, LinkType: link, Timestamp: int64(1000+i)*1e9 + frac}
						if !bytes.Equal(f.Data, want.Data) || f.Length != want.Length || f.LinkType != want.LinkType || f.Timestamp != want.Timestamp {
							t.Errorf("frame %d: %+v, want %+v", i, f, want)
						}
						if g := read[i]; !bytes.Equal(g.Data, f.Data) || g.Length != f.Length || g.LinkType != f.LinkType || g.Timestamp != f.Timestamp {
							t.Errorf("frame %d read %+v, mapped %+v", i, g, f)
						}
					}
				})
			}
		}
	}
}

// TestMappedCaptures: the repository's real captures read the same mapped
// and read, and so does a pcapng file with interfaces of different link
// types (which OpenMapped reads rather than maps).
func TestMappedCaptures(t *testing.T) {
	var paths []string
	for _, glob := range []string{"../../exporter/testdata/encap/*.pcap", "../../decoders/testdata/*.pcap", "../../collector/alert/testdata/*.pcap"} {
		m, _ := filepath.Glob(glob)
		paths = append(paths, m...)
	}
	if len(paths) < 5 {
		t.Fatalf("only %d captures found", len(paths))
	}
	paths = append(paths, writePCAPNG(t))
	for _, path := range paths {
		read, err := readPath(t, path, false)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		mapped, err := readPath(t, path, true)
		if err != nil {
			t.Fatalf("%s mapped: %v", path, err)
		}
		if len(read) == 0 || len(read) != len(mapped) {
			t.Fatalf("%s: %d frames read, %d mapped", path, len(read), len(mapped))
		}
		for i := range read {
			g, f := read[i], mapped[i]
			if !bytes.Equal(g.Data, f.Data) || g.Length != f.Length || g.LinkType != f.LinkType || g.Timestamp != f.Timestamp {
				t.Fatalf("%s frame %d: read %+v, mapped %+v", path, i, g, f)
			}
		}
	}
}

// writePCAPNG writes a pcapng file with an Ethernet and a raw IP interface.
func writePCAPNG(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "c.pcapng")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := pcapgo.NewNgWriterInterface(f, pcapgo.NgInterface{LinkType: layers.LinkTypeEthernet, SnapLength: 65535}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := w.AddInterface(pcapgo.NgInterface{LinkType: layers.LinkTypeRaw, SnapLength: 65535})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		data := bytes.Repeat([]byte{byte(i)}, 60+i)
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1000+int64(i), 0), CaptureLength: len(data), Length: len(data), InterfaceIndex: i % 2 * raw}
		if err := w.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestMappedCut: a capture whose last record is cut gives the frames before
// it and then an error naming the frame, mapped as read.
func TestMappedCut(t *testing.T) {
	data := pcapOf(binary.LittleEndian, false, 1, []byte{1, 2, 3}, []byte{4, 5, 6, 7})
	for cut := 1; cut < 16+4; cut++ {
		path := writeFile(t, data[:len(data)-cut])
		for _, mapped := range []bool{false, true} {
			frames, err := readPath(t, path, mapped)
			if len(frames) != 1 || err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("cut %d, mapped %v: %d frames, %v; want 1 frame and an unexpected EOF", cut, mapped, len(frames), err)
			}
		}
	}
	// Only part of the file header.
	if _, err := OpenMapped(writeFile(t, data[:10])); err == nil {
		t.Error("a file of 10 bytes was accepted")
	}
}

// bigCapture writes a capture of n frames of 1,000 bytes.
func bigCapture(t *testing.T, n int) (string, int) {
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = bytes.Repeat([]byte{byte(i)}, 1000)
	}
	data := pcapOf(binary.LittleEndian, true, 1, frames...)
	return writeFile(t, data), len(data)
}

// TestMappedTruncatedUnderneath: a mapped file cut while it is read ends
// the reading with an error, never a crash: either the reader sees the new
// size (it checks it every 4 MiB) or reading a page that is gone faults,
// which the reading goroutine, run with SetPanicOnFault as the exporter
// runs it, takes as an error because the address is in the mapping.
func TestMappedTruncatedUnderneath(t *testing.T) {
	for _, c := range []struct {
		cutAt int   // frames read before the cut
		cutTo int64 // size left
		check bool  // the size check sees it before a fault
	}{{100, 4096, false}, {5000, 4096, false}, {9000, 4096, false}, {100, 6 << 20, true}} {
		cutAt := c.cutAt
		path, size := bigCapture(t, 12000) // 12 MB: three size checks
		r, err := OpenMapped(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.mapped) != size {
			t.Fatalf("not mapped (%d bytes)", len(r.mapped))
		}
		got, err := readGuarded(r, func(n int) {
			if n == cutAt {
				if err := os.Truncate(path, c.cutTo); err != nil {
					t.Fatal(err)
				}
			}
		})
		r.Close()
		if err == nil || errors.Is(err, io.EOF) {
			t.Errorf("cut after %d frames: %d frames read and %v, want an error", cutAt, got, err)
		}
		t.Logf("cut after %d frames: %d frames read, then %v", cutAt, got, err)
		if got < cutAt || got >= 12000 {
			t.Errorf("cut after %d frames: %d frames read", cutAt, got)
		}
		if c.check && (err == nil || !strings.Contains(err.Error(), "cut to")) {
			t.Errorf("cut to %d bytes after %d frames: %v, want the size check's error", c.cutTo, cutAt, err)
		}
	}
}

// readGuarded reads r to its end with faults turned into errors, calling
// each after every frame; it returns the frames read.
func readGuarded(r *Reader, each func(n int)) (n int, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if v := recover(); v != nil {
			f, ok := v.(interface{ Addr() uintptr })
			if !ok || !r.Mapped(f.Addr()) {
				panic(v)
			}
			err = fmt.Errorf("fault at %#x", f.Addr())
		}
	}()
	var f Frame
	var sum byte
	for {
		if err := r.Next(&f); err != nil {
			return n, err
		}
		sum += f.Data[len(f.Data)-1] // read the frame, as a decoder would
		n++
		each(n)
	}
}

// TestMappedGrows: frames appended after the file was mapped are read too,
// as Open reads them.
func TestMappedGrows(t *testing.T) {
	data := pcapOf(binary.LittleEndian, false, 1, []byte{1}, []byte{2, 2}, []byte{3, 3, 3})
	head := len(data) - 16 - 3 - 2 // cut inside the third record
	path := writeFile(t, data[:head])
	r, err := OpenMapped(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var f Frame
	if err := r.Next(&f); err != nil || !bytes.Equal(f.Data, []byte{1}) {
		t.Fatalf("first frame: %v %v", f.Data, err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	frames, err := readAll(r)
	if err != nil || len(frames) != 2 || !bytes.Equal(frames[1].Data, []byte{3, 3, 3}) {
		t.Fatalf("after the file grew: %d frames, %v", len(frames), err)
	}
	if r.mapped != nil {
		t.Error("still mapped after reading on")
	}
}

// TestMappedPipe: a named pipe cannot be mapped: OpenMapped reads it.
func TestMappedPipe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skip("no named pipes:", err)
	}
	frames := make([][]byte, 3000) // more than the read buffer
	for i := range frames {
		frames[i] = bytes.Repeat([]byte{byte(i)}, 500)
	}
	data := pcapOf(binary.BigEndian, false, 113, frames...)
	go func() {
		w, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer w.Close()
		for len(data) > 0 { // in uneven pieces
			n := min(len(data), 7777)
			w.Write(data[:n])
			data = data[n:]
		}
	}()
	r, err := OpenMapped(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := readAll(r)
	if err != nil || len(got) != len(frames) {
		t.Fatalf("%d frames, %v", len(got), err)
	}
	for i := range got {
		if !bytes.Equal(got[i].Data, frames[i]) || got[i].LinkType != 113 {
			t.Fatalf("frame %d differs", i)
		}
	}
}

// FuzzMapped: any file content gives, mapped, exactly the frames and the
// kind of ending (end, or error) that reading it gives.
func FuzzMapped(f *testing.F) {
	f.Add(pcapBytes(1, []byte{1, 2, 3}, make([]byte, 60)))
	f.Add(pcapOf(binary.BigEndian, true, 276, []byte{1}, []byte{}))
	f.Add(pcapBytes(276)[:20])
	f.Add([]byte{0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		path := writeFile(t, data)
		read, rerr := readPath(t, path, false)
		mapped, merr := readPath(t, path, true)
		if (rerr == nil) != (merr == nil) || len(read) != len(mapped) {
			t.Fatalf("read: %d frames, %v; mapped: %d frames, %v", len(read), rerr, len(mapped), merr)
		}
		for i := range read {
			g, m := read[i], mapped[i]
			if !bytes.Equal(g.Data, m.Data) || g.Length != m.Length || g.LinkType != m.LinkType || g.Timestamp != m.Timestamp {
				t.Fatalf("frame %d: read %+v, mapped %+v", i, g, m)
			}
		}
	})
}
