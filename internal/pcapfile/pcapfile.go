// Package pcapfile reads pcap and pcapng capture files, frame by frame,
// without allocating: it is spanflow's one reader of captures, under the
// exporter's file source (exporter/capture), the collector's replay of flow
// datagrams (collector/pcapreplay) and the tests' capture helper
// (internal/testutil).
package pcapfile

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
	"unsafe"

	"github.com/klauspost/compress/zstd"
)

// Frame is one frame of a capture. Data is valid only until the next call
// to Next: the reader hands out its buffer in place.
type Frame struct {
	Data      []byte
	Timestamp int64  // capture time, nanoseconds since the Unix epoch
	Length    int    // length on the wire, at least len(Data)
	LinkType  uint32 // pcap LINKTYPE_* of the frame (per interface in pcapng)
}

// Reader reads a pcap or pcapng file; the format is told by its magic
// number.
type Reader struct {
	f       *os.File
	pcap    *pcapReader
	ng      *ngReader
	frames  int
	mapped  []byte // the file, when OpenMapped mapped it
	release func() // frees the decompressor of a compressed file
	dropped int    // bytes at the start of mapped whose pages were unmapped
}

// Open opens a capture file, read with read(2) into a buffer.
func Open(path string) (*Reader, error) { return open(path, false) }

// OpenMapped opens a capture file like Open but, when it is a regular pcap
// file, maps it in memory and hands frames out of the mapping: no copy from
// the page cache. (pcapng files, pipes and other files that cannot be
// mapped are read as Open reads them.)
//
// A mapped file cut shorter while it is read would make reading the pages
// that are gone raise SIGBUS. Next checks the file's size every 4 MiB and
// returns an error once it shrank; a cut in between can still fault, in the
// reader or wherever the frame's bytes are read before the next call to
// Next. So the goroutine that reads the frames must run with
// debug.SetPanicOnFault(true) and take a runtime.Error whose Addr is
// Mapped as a read error (see exporter.Run).
func OpenMapped(path string) (*Reader, error) { return open(path, true) }

func open(path string, mapped bool) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open capture: %w", err)
	}
	if st, err := f.Stat(); err == nil && st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("%s is a directory, not a capture file", path)
	}
	src := &Reader{f: f}
	if err := src.start(path, mapped); err != nil {
		src.Close()
		return nil, err
	}
	return src, nil
}

// compression names the compression whose magic number starts b, or "".
func compression(b []byte) string {
	switch {
	case len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b:
		return "gzip"
	case len(b) >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd:
		return "zstd"
	case len(b) >= 4 && b[0] == 0x04 && b[1] == 0x22 && b[2] == 0x4d && b[3] == 0x18:
		return "lz4"
	}
	return ""
}

func isPCAPNG(magic []byte) bool {
	return magic[0] == 0x0a && magic[1] == 0x0d && magic[2] == 0x0d && magic[3] == 0x0a
}

func (src *Reader) start(path string, mapped bool) error {
	if mapped {
		if st, err := src.f.Stat(); err == nil && st.Mode().IsRegular() {
			src.mapped = mapFile(src.f, st.Size())
		}
		if m := src.mapped; len(m) >= 4 && !isPCAPNG(m) && compression(m) == "" {
			p, err := newPCAPReader(m, len(m), nil)
			if err != nil {
				return fmt.Errorf("read pcap header of %s: %w", path, err)
			}
			p.check, p.more = src.checkpoint, src.readOn
			src.pcap = p
			return nil
		}
		src.unmap()
	}
	buf := make([]byte, readBuffer)
	var in io.Reader = src.f
	n, err := io.ReadAtLeast(in, buf, 4)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("read capture %s: not a pcap or pcapng file (%d bytes)", path, n)
	case err != nil:
		return fmt.Errorf("read capture %s: %w", path, err)
	}
	if c := compression(buf[:n]); c != "" {
		// Compressed captures (tcpdump -z gzip, rotated files) are read
		// through their decompressor, as tshark reads them.
		head := io.MultiReader(bytes.NewReader(bytes.Clone(buf[:n])), src.f)
		switch c {
		case "gzip":
			in, err = gzip.NewReader(head)
		case "zstd":
			var d *zstd.Decoder
			d, err = zstd.NewReader(head, zstd.WithDecoderConcurrency(1))
			if err == nil {
				in, src.release = d, d.Close
			}
		default:
			err = fmt.Errorf("%s compression is not read: decompress it first", c)
		}
		if err != nil {
			return fmt.Errorf("read %s capture %s: %w", c, path, err)
		}
		if n, err = io.ReadAtLeast(in, buf, 4); err != nil {
			return fmt.Errorf("read %s capture %s (%d bytes decompressed): %w", c, path, n, err)
		}
	}
	if isPCAPNG(buf) {
		br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(buf[:n]), in), readBuffer)
		src.ng, err = newNGReader(br)
		if err != nil {
			return fmt.Errorf("read pcapng header of %s: %w", path, err)
		}
		// The time of frames whose blocks have none, before any frame
		// with one (ngReader): when the file was last written, the end
		// of the capture; for a pipe, now.
		src.ng.fallback = time.Now().UnixNano()
		if st, err := src.f.Stat(); err == nil && st.Mode().IsRegular() {
			src.ng.fallback = st.ModTime().UnixNano()
		}
		return nil
	}
	src.pcap, err = newPCAPReader(buf, n, in)
	if err != nil {
		return fmt.Errorf("read pcap header of %s: %w", path, err)
	}
	return nil
}

// checkpoint fails once the mapped file is shorter than the mapping, and
// drops the pages before off from the mapping: they were read, and mapped
// pages of the file count in the process's resident set (though they are
// the page cache's, shared and clean) as read(2)'s buffer did not.
func (src *Reader) checkpoint(off int) error {
	if end := off &^ (dropPage - 1); end > src.dropped {
		dropPages(src.mapped[src.dropped:end])
		src.dropped = end
	}
	st, err := src.f.Stat()
	if err != nil {
		return fmt.Errorf("check the size of the capture: %w", err)
	}
	if st.Size() < int64(len(src.mapped)) {
		return fmt.Errorf("capture cut to %d bytes while being read (it had %d): %w", st.Size(), len(src.mapped), io.ErrUnexpectedEOF)
	}
	return nil
}

// readOn is called when the reader reached the end of the mapping: a file
// that grew since it was mapped is read on from there, as Open would.
func (src *Reader) readOn(p *pcapReader) {
	st, err := src.f.Stat()
	if err != nil || st.Size() <= int64(len(src.mapped)) {
		return
	}
	if _, err := src.f.Seek(int64(len(src.mapped)), io.SeekStart); err != nil {
		return
	}
	buf := make([]byte, readBuffer)
	p.end = copy(buf, p.buf[p.off:p.end])
	p.nextCheck -= p.off
	p.buf, p.off, p.src, p.check = buf, 0, src.f, nil
	src.unmap() // the frame handed out last is no longer valid
}

// Mapped says whether addr is in the mapping of the file (a fault there
// means that the file was cut while being read).
func (src *Reader) Mapped(addr uintptr) bool {
	m := src.mapped
	if len(m) == 0 {
		return false
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(m)))
	return addr >= base && addr-base < uintptr(len(m))
}

func (src *Reader) unmap() {
	if src.mapped != nil {
		unmap(src.mapped)
		src.mapped, src.dropped = nil, 0
	}
}

// Next reads the next frame; it returns io.EOF after the last one.
func (s *Reader) Next(fr *Frame) error {
	var err error
	if s.pcap != nil {
		err = s.pcap.next(fr)
	} else {
		err = s.ng.next(fr)
	}
	switch {
	case err == nil:
		s.frames++
		if fr.Length < len(fr.Data) {
			fr.Length = len(fr.Data)
		}
		return nil
	case errors.Is(err, io.EOF):
		return io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("capture truncated after frame %d: %w", s.frames, err)
	}
	return fmt.Errorf("read frame %d: %w", s.frames+1, err)
}

// Untimed is how many frames read so far had no time in the file (pcapng
// simple packet blocks) and were given one: the time of the frame before
// them, else of the first frame after them with one, else the file's
// modification time.
func (s *Reader) Untimed() int {
	if s.ng == nil {
		return 0
	}
	return s.ng.untimed
}

// Close closes the file (and unmaps it): frames handed out are no longer
// valid.
func (s *Reader) Close() error {
	s.unmap()
	if s.release != nil {
		s.release()
	}
	return s.f.Close()
}
