package pcapfile

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// ngReader reads the pcapng format: section headers (either byte order,
// several sections), interface descriptions (link type, snap length,
// timestamp resolution and offset), and enhanced, simple and obsolete
// packet blocks; other blocks are skipped. Each frame has the link type
// of its interface. It is spanflow's own so that the binary does not
// initialise gopacket's layer tables at every start; its test compares it
// with gopacket's pcapgo.
type ngReader struct {
	r      *bufio.Reader
	order  binary.ByteOrder
	ifaces []ngInterface
	buf    []byte // the block being read; frames are slices of it

	// Simple packet blocks carry no time (tshark shows none; libpcap
	// gives the epoch, 1970). A frame of one takes the time of the last
	// frame before it that had one; frames before any are held (copied,
	// up to maxUntimedHeld bytes) until a frame with a time comes, and
	// take its time; when the file ends first, or too many are held,
	// they take fallback (the file's modification time).
	last     int64   // time of the last frame with one; 0: none yet
	fallback int64   // time of frames before any time is known
	held     []Frame // untimed frames waiting for a time, oldest first
	heldSize int
	err      error // what ended the file, told after the frames held
	untimed  int   // frames given a time by these rules
}

// maxUntimedHeld bounds the bytes of untimed frames held waiting for a time.
const maxUntimedHeld = 16 << 20

type ngInterface struct {
	link uint32
	snap uint32
	// A timestamp counts units of 1/perSecond seconds, from offset
	// seconds after the epoch.
	perSecond uint64
	offset    int64
}

const (
	ngSectionHeader   = 0x0a0d0d0a
	ngInterfaceBlock  = 1
	ngObsoletePacket  = 2
	ngSimplePacket    = 3
	ngEnhancedPacket  = 6
	ngByteOrderMagic  = 0x1a2b3c4d
	ngMaxBlock        = 64 << 20 // larger blocks are corrupt
	ngOptEnd          = 0
	ngOptTSResolution = 9
	ngOptTSOffset     = 14
)

// newNGReader reads the first section header from r.
func newNGReader(r *bufio.Reader) (*ngReader, error) {
	n := &ngReader{r: r, order: binary.LittleEndian}
	typ, err := n.block()
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, err
	}
	if typ != ngSectionHeader {
		return nil, fmt.Errorf("first block of type %#x, not a section header", typ)
	}
	return n, nil
}

// block reads the next block into n.buf (its body: after the type and
// length, before the trailing length) and returns its type; a section
// header sets the byte order and starts a section. io.EOF: no more blocks.
func (n *ngReader) block() (uint32, error) {
	var h [12]byte
	if _, err := io.ReadFull(n.r, h[:8]); err != nil {
		return 0, err // io.EOF at a block boundary, io.ErrUnexpectedEOF within
	}
	typ := n.order.Uint32(h[:])
	if typ == ngSectionHeader { // the same in both byte orders
		if _, err := io.ReadFull(n.r, h[8:12]); err != nil {
			return 0, noEOF(err)
		}
		switch {
		case binary.LittleEndian.Uint32(h[8:]) == ngByteOrderMagic:
			n.order = binary.LittleEndian
		case binary.BigEndian.Uint32(h[8:]) == ngByteOrderMagic:
			n.order = binary.BigEndian
		default:
			return 0, errors.New("section header with a wrong byte-order magic")
		}
	}
	length := n.order.Uint32(h[4:])
	head := uint32(8)
	if typ == ngSectionHeader {
		head = 12
	}
	if length < head+4 || length > ngMaxBlock {
		return 0, fmt.Errorf("block of type %#x with a length of %d", typ, length)
	}
	body := int(length - head)
	if cap(n.buf) < body {
		n.buf = make([]byte, body)
	}
	n.buf = n.buf[:body]
	if _, err := io.ReadFull(n.r, n.buf); err != nil {
		return 0, noEOF(err)
	}
	n.buf = n.buf[:body-4] // the trailing copy of the length
	if typ == ngSectionHeader {
		if len(n.buf) < 12 {
			return 0, errors.New("short section header")
		}
		if major := n.order.Uint16(n.buf); major != 1 {
			return 0, fmt.Errorf("pcapng version %d, not 1", major)
		}
		n.ifaces = n.ifaces[:0]
	}
	return typ, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// options calls fn with each option of an options list.
func (n *ngReader) options(b []byte, fn func(code uint16, value []byte)) {
	for len(b) >= 4 {
		code, l := n.order.Uint16(b), int(n.order.Uint16(b[2:]))
		if code == ngOptEnd || 4+l > len(b) {
			return
		}
		fn(code, b[4:4+l])
		b = b[min(len(b), 4+(l+3)&^3):]
	}
}

func (n *ngReader) addInterface(b []byte) error {
	if len(b) < 8 {
		return errors.New("short interface description")
	}
	i := ngInterface{link: uint32(n.order.Uint16(b)), snap: n.order.Uint32(b[4:]), perSecond: 1e6}
	n.options(b[8:], func(code uint16, v []byte) {
		switch {
		case code == ngOptTSResolution && len(v) >= 1:
			e := uint64(v[0] & 0x7f)
			if v[0]&0x80 != 0 && e < 64 { // a negative power of 2
				i.perSecond = 1 << e
			} else if v[0]&0x80 == 0 && e <= 19 { // of 10
				i.perSecond = 1
				for range e {
					i.perSecond *= 10
				}
			}
		case code == ngOptTSOffset && len(v) >= 8:
			i.offset = int64(n.order.Uint64(v))
		}
	})
	n.ifaces = append(n.ifaces, i)
	return nil
}

// timestamp converts a timestamp of interface i to nanoseconds.
func (n *ngReader) timestamp(i *ngInterface, hi, lo uint32) int64 {
	ts := uint64(hi)<<32 | uint64(lo)
	sec, frac := ts/i.perSecond, ts%i.perSecond
	// frac * 1e9 / perSecond, exactly (2^-20 s is not a whole number of
	// nanoseconds): less than 1e9, so the division cannot overflow.
	ph, pl := bits.Mul64(frac, 1e9)
	ns, _ := bits.Div64(ph, pl, i.perSecond)
	return (int64(sec)+i.offset)*1e9 + int64(ns)
}

// next reads the next packet; io.EOF after the last one.
func (n *ngReader) next(fr *Frame) error {
	if len(n.held) > 0 && n.last != 0 {
		return n.unhold(fr, n.last)
	}
	if n.err != nil {
		return n.err
	}
	for {
		if err := n.read(fr); err != nil {
			if len(n.held) > 0 {
				// No time came: the file's own. The error comes after
				// the frames held.
				n.err, n.last = err, n.fallback
				return n.unhold(fr, n.fallback)
			}
			return err
		}
		if fr.Timestamp != 0 {
			n.last = fr.Timestamp
			if len(n.held) == 0 {
				return nil
			}
			n.hold(fr) // after the frames held, with its own time
			return n.unhold(fr, n.last)
		}
		n.untimed++
		if n.last != 0 {
			fr.Timestamp = n.last
			return nil
		}
		n.hold(fr)
		if n.heldSize > maxUntimedHeld {
			n.last = n.fallback
			return n.unhold(fr, n.fallback)
		}
	}
}

// hold keeps a copy of an untimed frame (or of the timed one that ends a
// run of them).
func (n *ngReader) hold(fr *Frame) {
	c := *fr
	c.Data = append([]byte(nil), fr.Data...)
	n.held = append(n.held, c)
	n.heldSize += len(c.Data)
}

// unhold gives the oldest frame held, timed ts when it has no time.
func (n *ngReader) unhold(fr *Frame, ts int64) error {
	*fr = n.held[0]
	n.held = n.held[1:]
	n.heldSize -= len(fr.Data)
	if fr.Timestamp == 0 {
		fr.Timestamp = ts
	}
	return nil
}

// read reads the next packet, its Timestamp 0 when its block has none.
func (n *ngReader) read(fr *Frame) error {
	for {
		typ, err := n.block()
		if err != nil {
			return err
		}
		b := n.buf
		switch typ {
		case ngInterfaceBlock:
			if err := n.addInterface(b); err != nil {
				return err
			}
		case ngEnhancedPacket, ngObsoletePacket:
			if len(b) < 20 {
				return errors.New("short packet block")
			}
			id := int(n.order.Uint32(b))
			if typ == ngObsoletePacket {
				id = int(n.order.Uint16(b))
			}
			if id >= len(n.ifaces) {
				return fmt.Errorf("packet of interface %d, but the section has %d", id, len(n.ifaces))
			}
			i := &n.ifaces[id]
			caplen := n.order.Uint32(b[12:])
			if uint64(caplen) > uint64(len(b)-20) {
				return fmt.Errorf("packet block of %d bytes with %d captured", len(b), caplen)
			}
			fr.Data, fr.Length = b[20:20+caplen], int(n.order.Uint32(b[16:]))
			fr.Timestamp, fr.LinkType = n.timestamp(i, n.order.Uint32(b[4:]), n.order.Uint32(b[8:])), i.link
			return nil
		case ngSimplePacket:
			if len(b) < 4 {
				return errors.New("short simple packet block")
			}
			if len(n.ifaces) == 0 {
				return errors.New("simple packet block before any interface description")
			}
			i := &n.ifaces[0]
			length := n.order.Uint32(b)
			caplen := min(uint64(length), uint64(len(b)-4))
			if i.snap != 0 {
				caplen = min(caplen, uint64(i.snap))
			}
			fr.Data, fr.Length, fr.Timestamp, fr.LinkType = b[4:4+caplen], int(length), 0, i.link
			return nil
		}
	}
}
