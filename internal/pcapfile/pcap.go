package pcapfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// pcapReader reads the classic pcap format. It is spanflow's own because
// gopacket's pcapgo keeps link types in a uint8 (LINKTYPE_LINUX_SLL2 is 276)
// and converts every timestamp through time.Time.
//
// It parses records in place from a window of bytes: the whole file when it
// is mapped (no copy at all, see mapping.go), or a buffer that read fills
// (pipes, or where mapping fails); records are handed out as slices of it.
type pcapReader struct {
	order binary.ByteOrder
	big   bool // order is big-endian
	nanos bool
	link  uint32
	// hdr is a record header's length: 16, or 24 in Alexey Kuznetzov's
	// modified format (ifindex, protocol and packet type after it), or
	// another of the old variants (see recordHeader).
	hdr int
	buf []byte // the window; records start at off, bytes end at end
	off int
	end int
	src io.Reader // refills buf; nil when buf is the whole mapped file
	err error     // src's error once it returned one (io.EOF at the end)
	// check, for a mapped file, is called as reading passes each
	// checkEvery bytes, with the offset of the next record: it says
	// whether the file is still as long as the mapping (a file truncated
	// underneath must stop the reading before it touches pages that are
	// gone), and unmaps the pages read.
	check     func(off int) error
	nextCheck int
	// more, for a mapped file, is called once at the end of the mapping:
	// it may switch the reader to reading the rest of a file that grew.
	more func(*pcapReader)
}

// maxFrame bounds a record's captured length: larger ones are corrupt.
const maxFrame = 256 << 10

// readBuffer is the size of the buffer of a capture that is read rather than
// mapped: large enough for several records of maxFrame, so that moving the
// partial record at its end back to its start is rare.
const readBuffer = 1 << 20

// checkEvery is how often, in bytes read, a mapped file's size is checked.
const checkEvery = 4 << 20

// newPCAPReader reads the file header from buf[:n] (the first bytes of the
// file, at most len(buf)) and, when src is not nil, reads the rest from
// src into buf as records are asked for.
func newPCAPReader(buf []byte, n int, src io.Reader) (*pcapReader, error) {
	p := &pcapReader{buf: buf, end: n, src: src}
	for src != nil && p.end < 24 && p.err == nil {
		p.fill()
	}
	// The magic number first: a short file that does not start with one is
	// not a capture, one that does is a cut one.
	h := buf[:max(p.end, 4)]
	p.hdr = 16
	switch {
	case p.end < 4:
		return nil, errors.New("not a pcap or pcapng file")
	case h[0] == 0xd4 && h[1] == 0xc3 && h[2] == 0xb2 && h[3] == 0xa1:
		p.order = binary.LittleEndian
	case h[0] == 0xa1 && h[1] == 0xb2 && h[2] == 0xc3 && h[3] == 0xd4:
		p.order = binary.BigEndian
	case h[0] == 0x4d && h[1] == 0x3c && h[2] == 0xb2 && h[3] == 0xa1:
		p.order, p.nanos = binary.LittleEndian, true
	case h[0] == 0xa1 && h[1] == 0xb2 && h[2] == 0x3c && h[3] == 0x4d:
		p.order, p.nanos = binary.BigEndian, true
	case h[0] == 0x34 && h[1] == 0xcd && h[2] == 0xb2 && h[3] == 0xa1: // modified (Kuznetzov) pcap
		p.order, p.hdr = binary.LittleEndian, 24
	case h[0] == 0xa1 && h[1] == 0xb2 && h[2] == 0xcd && h[3] == 0x34:
		p.order, p.hdr = binary.BigEndian, 24
	default:
		return nil, fmt.Errorf("unknown magic number % x: not a pcap or pcapng file", h[:4])
	}
	if p.end < 24 {
		return nil, fmt.Errorf("short file header: %d bytes (a cut pcap file)", p.end)
	}
	h = buf[:24]
	// The link type is the low 16 bits; the upper ones may carry FCS
	// information (libpcap's LT_FCS_LENGTH_PRESENT, 0x04000000, and the FCS
	// length in the top 4 bits): the frames then end with their FCS, which
	// the decoder leaves out as it counts IP lengths.
	p.link = p.order.Uint32(h[20:]) & 0xffff
	p.big = p.order == binary.ByteOrder(binary.BigEndian)
	if src != nil && len(buf) < 28+maxFrame {
		return nil, fmt.Errorf("internal error: pcap reader buffer of %d bytes is smaller than a record may be", len(buf))
	}
	p.off = 24
	if !p.nanos {
		// The window is the whole file when it is mapped, or (most
		// likely) when the first read did not fill the buffer.
		p.hdr = recordHeader(p.buf[:p.end], src == nil || p.end < len(p.buf), p.order, p.hdr)
	}
	p.nextCheck = checkEvery
	return p, nil
}

// recordHeader is the length of the record headers of a microsecond pcap
// file whose first bytes are b (whole: all of it), hdr by its magic
// number. Some tcpdumps wrote longer record headers than their magic
// number says: Red Hat 6.1's (24 bytes) and Nokia IPSO's (20) under the
// standard one, SuSE 6.3's (28) under the modified one. As tshark does, they are told apart by their
// first records: hdr unless its records do not fit and another layout's
// do (two records at least, so a capture of one frame in those formats is
// not told apart).
func recordHeader(b []byte, whole bool, order binary.ByteOrder, hdr int) int {
	if fits, _ := layoutFits(b, hdr, order, whole); fits {
		return hdr
	}
	layouts := []int{24, 20}
	if hdr == 24 {
		layouts = []int{28}
	}
	for _, h := range layouts {
		// Two records at least: one record of another layout may end
		// where a capture cut short ends by chance.
		if fits, n := layoutFits(b, h, order, whole); fits && n >= 2 {
			return h
		}
	}
	return hdr
}

// layoutFits says whether the first records of b (up to 8) have sane
// captured lengths and microseconds with headers of h bytes and, when b is
// the whole file, end where it ends; n is how many records it walked.
func layoutFits(b []byte, h int, order binary.ByteOrder, whole bool) (fits bool, n int) {
	off := 24
	for ; n < 8; n++ {
		if off == len(b) {
			return true, n
		}
		if off+h > len(b) {
			return !whole, n
		}
		usec, caplen := order.Uint32(b[off+4:]), order.Uint32(b[off+8:])
		if usec >= 1e6 || caplen > maxFrame {
			return false, n
		}
		off += h + int(caplen)
		if off > len(b) {
			return !whole, n
		}
	}
	return true, n
}

// fill moves the bytes not yet parsed to the start of the buffer and reads
// once from src after them.
func (p *pcapReader) fill() {
	if p.off > 0 {
		p.end = copy(p.buf, p.buf[p.off:p.end])
		p.nextCheck -= p.off
		p.off = 0
	}
	n, err := p.src.Read(p.buf[p.end:])
	p.end += n
	if err != nil {
		p.err = err
	}
}

// need makes sure that n bytes from off are in the window; it returns false
// when the capture ends (or src fails) before them.
func (p *pcapReader) need(n int) bool {
	for p.end-p.off < n {
		if p.src == nil && p.more != nil {
			more := p.more
			p.more = nil
			more(p)
			continue
		}
		if p.src == nil || p.err != nil {
			return false
		}
		p.fill()
	}
	return true
}

// next parses the next record. The frame's data is a slice of the window
// (no copy), valid until the next call: records are at most maxFrame, and
// a read buffer is larger.
func (p *pcapReader) next(fr *Frame) error {
	if p.check != nil && p.off >= p.nextCheck {
		if err := p.check(p.off); err != nil {
			return err
		}
		p.nextCheck = p.off + checkEvery
	}
	if !p.need(p.hdr) {
		return p.ended()
	}
	// The byte order is known once per file: calling it through the
	// binary.ByteOrder interface, four times a record, is not inlined.
	hdr := p.buf[p.off : p.off+16 : p.off+16]
	var sec, frac int64
	var caplen, wire int
	if p.big {
		sec, frac = int64(binary.BigEndian.Uint32(hdr[0:])), int64(binary.BigEndian.Uint32(hdr[4:]))
		caplen, wire = int(binary.BigEndian.Uint32(hdr[8:])), int(binary.BigEndian.Uint32(hdr[12:]))
	} else {
		sec, frac = int64(binary.LittleEndian.Uint32(hdr[0:])), int64(binary.LittleEndian.Uint32(hdr[4:]))
		caplen, wire = int(binary.LittleEndian.Uint32(hdr[8:])), int(binary.LittleEndian.Uint32(hdr[12:]))
	}
	if caplen > maxFrame {
		return fmt.Errorf("record of %d bytes: corrupt capture", caplen)
	}
	if !p.need(p.hdr + caplen) {
		if err := p.ended(); !errors.Is(err, io.EOF) {
			return err
		}
		return io.ErrUnexpectedEOF
	}
	start := p.off + p.hdr
	p.off = start + caplen
	if !p.nanos {
		frac *= 1000
	}
	fr.Data, fr.Length, fr.LinkType = p.buf[start:p.off:p.off], wire, p.link
	fr.Timestamp = sec*1e9 + frac
	return nil
}

// ended is the error when the window has no complete record left: io.EOF
// at a record boundary, io.ErrUnexpectedEOF within one, or src's error.
func (p *pcapReader) ended() error {
	if p.err != nil && !errors.Is(p.err, io.EOF) {
		return p.err
	}
	if p.off == p.end {
		return io.EOF
	}
	return io.ErrUnexpectedEOF
}
