package pcapfile

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// pcapReader reads the classic pcap format. It is spanflow's own because
// gopacket's pcapgo keeps link types in a uint8 (LINKTYPE_LINUX_SLL2 is 276)
// and converts every timestamp through time.Time.
type pcapReader struct {
	r     *bufio.Reader
	order binary.ByteOrder
	nanos bool
	link  uint32
	skip  int // bytes of the record last returned, still in the buffer
}

// maxFrame bounds a record's captured length: larger ones are corrupt.
const maxFrame = 256 << 10

func newPCAPReader(r *bufio.Reader) (*pcapReader, error) {
	var h [24]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, fmt.Errorf("short file header: %w", err)
	}
	p := &pcapReader{r: r}
	switch {
	case h[0] == 0xd4 && h[1] == 0xc3 && h[2] == 0xb2 && h[3] == 0xa1:
		p.order = binary.LittleEndian
	case h[0] == 0xa1 && h[1] == 0xb2 && h[2] == 0xc3 && h[3] == 0xd4:
		p.order = binary.BigEndian
	case h[0] == 0x4d && h[1] == 0x3c && h[2] == 0xb2 && h[3] == 0xa1:
		p.order, p.nanos = binary.LittleEndian, true
	case h[0] == 0xa1 && h[1] == 0xb2 && h[2] == 0x3c && h[3] == 0x4d:
		p.order, p.nanos = binary.BigEndian, true
	default:
		return nil, fmt.Errorf("unknown magic number % x: not a pcap or pcapng file", h[:4])
	}
	// The upper bits of the link type field carry FCS information.
	p.link = p.order.Uint32(h[20:]) & 0x0fffffff
	if r.Size() < 16+maxFrame {
		return nil, fmt.Errorf("internal error: pcap reader buffer of %d bytes is smaller than a record may be", r.Size())
	}
	return p, nil
}

// next reads the next record. The frame's data is a slice of the reader's
// buffer (no copy), valid until the next call: records are at most
// maxFrame, and the buffer is larger.
func (p *pcapReader) next(fr *Frame) error {
	if p.skip > 0 {
		if _, err := p.r.Discard(p.skip); err != nil {
			return err
		}
		p.skip = 0
	}
	hdr, err := p.r.Peek(16)
	if err != nil {
		if len(hdr) == 0 && errors.Is(err, io.EOF) {
			return io.EOF // at a record boundary
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	sec := int64(p.order.Uint32(hdr[0:]))
	frac := int64(p.order.Uint32(hdr[4:]))
	caplen := int(p.order.Uint32(hdr[8:]))
	wire := int(p.order.Uint32(hdr[12:]))
	if caplen > maxFrame {
		return fmt.Errorf("record of %d bytes: corrupt capture", caplen)
	}
	rec, err := p.r.Peek(16 + caplen)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	p.skip = 16 + caplen
	if !p.nanos {
		frac *= 1000
	}
	fr.Data, fr.Length, fr.LinkType = rec[16:16+caplen:16+caplen], wire, p.link
	fr.Timestamp = sec*1e9 + frac
	return nil
}
