// Package ring is the exporter's packet ring for retrospection: beside
// metering, every captured frame (as mirrored, tunnel headers included, up
// to the snap length) is appended to segment files under one directory, so
// that a flow found in Kibana can be opened in Wireshark afterwards.
//
//	capture ─▶ decode ─▶ meter ─▶ ipfix          (exporter)
//	      └──▶ Appender ─▶ writer goroutine ─▶ DIR/NNNN.seg   (this package)
//	                        spanflow pcap query ◀─ Search ◀─┘
//
// A segment is a file header and a run of blocks. A block holds a few MiB
// of frames, compressed with zstd as one unit, behind a header that carries
// the block's time range and the sorted 32-bit keys of the flows it holds
// (the first bytes of each packet's Community ID hash): a one-flow query
// reads only the headers and key lists, and decompresses only the blocks
// whose keys hold the flow. The keys are the whole index, a few bytes per
// flow and block (well under 0.5 % of what is stored).
//
// Every block has CRCs over its header and its body, so a block cut short by
// a crash or power loss, or garbage after the last block, is found and
// skipped with a warning; the blocks before it still answer.
package ring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Segment files start with this file header: magic and format version,
// then the creation time (nanoseconds since the epoch).
const (
	segmentMagic      = "SFRING\x00\x01"
	segmentHeaderSize = 16
	segmentSuffix     = ".seg"
)

// A block: header, flow index (index.go), body (the records, compressed
// or not).
//
//	0  "SFBK"        4  codec, 3 reserved   8 packets  12 flows in the index
//	16 stored body  20 raw body            24 first ts 32 last ts
//	40 index bytes  44 CRC-32C of index and body     48 CRC-32C of bytes 0..47
const (
	blockMagic      = "SFBK"
	blockHeaderSize = 52
	// recordHeaderSize is each record's header in the raw body:
	// ts int64, key uint64, wire length uint32, captured length uint32,
	// link type uint16, observation point uint16; then the frame.
	recordHeaderSize = 28
	// maxBlockBody bounds what a reader allocates for one block, whatever
	// a damaged header says.
	maxBlockBody = 64 << 20
)

// Codec is how a block's body is stored.
type Codec uint8

// Codecs.
const (
	CodecNone Codec = 0
	CodecZstd Codec = 1
)

func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecZstd:
		return "zstd"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// ParseCodec reads "zstd" or "none".
func ParseCodec(s string) (Codec, error) {
	switch s {
	case "zstd", "":
		return CodecZstd, nil
	case "none":
		return CodecNone, nil
	}
	return 0, fmt.Errorf("compression %q: want zstd or none", s)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// blockHeader is a block's header, decoded.
type blockHeader struct {
	codec         Codec
	packets, keys uint32
	stored, raw   uint32
	first, last   int64
	index         uint32
	crc           uint32
}

// errBadHeader says that bytes where a block header should be are not one.
var errBadHeader = errors.New("not a valid block header")

func (h *blockHeader) put(b []byte) {
	copy(b[0:4], blockMagic)
	b[4], b[5], b[6], b[7] = byte(h.codec), 0, 0, 0
	le := binary.LittleEndian
	le.PutUint32(b[8:], h.packets)
	le.PutUint32(b[12:], h.keys)
	le.PutUint32(b[16:], h.stored)
	le.PutUint32(b[20:], h.raw)
	le.PutUint64(b[24:], uint64(h.first))
	le.PutUint64(b[32:], uint64(h.last))
	le.PutUint32(b[40:], h.index)
	le.PutUint32(b[44:], h.crc)
	le.PutUint32(b[48:], crc32.Checksum(b[:48], castagnoli))
}

// parseBlockHeader checks and decodes a block header: magic, header CRC and
// bounds, so that no length read from a damaged file makes the reader
// allocate or seek far.
func parseBlockHeader(b []byte) (blockHeader, error) {
	var h blockHeader
	if len(b) < blockHeaderSize || string(b[0:4]) != blockMagic {
		return h, errBadHeader
	}
	le := binary.LittleEndian
	if crc32.Checksum(b[:48], castagnoli) != le.Uint32(b[48:]) {
		return h, errBadHeader
	}
	h = blockHeader{codec: Codec(b[4]), packets: le.Uint32(b[8:]), keys: le.Uint32(b[12:]),
		stored: le.Uint32(b[16:]), raw: le.Uint32(b[20:]), first: int64(le.Uint64(b[24:])), last: int64(le.Uint64(b[32:])), index: le.Uint32(b[40:]), crc: le.Uint32(b[44:])}
	switch {
	case h.codec != CodecNone && h.codec != CodecZstd:
		return h, fmt.Errorf("unknown codec %d", h.codec)
	case h.raw > maxBlockBody || h.stored > maxBlockBody || h.index > maxBlockBody:
		return h, fmt.Errorf("body of %d bytes (%d stored) is over the limit", h.raw, h.stored)
	case uint64(h.packets)*recordHeaderSize > uint64(h.raw), h.keys > h.packets:
		return h, fmt.Errorf("%d packets and %d keys do not fit %d bytes", h.packets, h.keys, h.raw)
	case h.codec == CodecNone && h.stored != h.raw:
		return h, fmt.Errorf("uncompressed body of %d bytes stored in %d", h.raw, h.stored)
	case h.last < h.first:
		return h, errors.New("time range ends before it starts")
	}
	return h, nil
}

// size is the block's length in the segment.
func (h *blockHeader) size() int64 {
	return blockHeaderSize + int64(h.index) + int64(h.stored)
}

// record is one frame in a block's raw body.
type record struct {
	ts       int64
	key      uint64
	wire     uint32
	link     uint16
	obs      uint16
	data     []byte // in the body
	captured int
}

// nextRecord reads the record at body[off:]; it returns the next offset,
// or an error when the record runs past the body.
func nextRecord(body []byte, off int, r *record) (int, error) {
	if len(body)-off < recordHeaderSize {
		return 0, fmt.Errorf("record at %d: header cut short", off)
	}
	le := binary.LittleEndian
	b := body[off:]
	r.ts = int64(le.Uint64(b[0:]))
	r.key = le.Uint64(b[8:])
	r.wire = le.Uint32(b[16:])
	caplen := le.Uint32(b[20:])
	r.link, r.obs = le.Uint16(b[24:]), le.Uint16(b[26:])
	if uint64(caplen) > uint64(len(b)-recordHeaderSize) {
		return 0, fmt.Errorf("record at %d: %d bytes of frame run past the block", off, caplen)
	}
	r.captured = int(caplen)
	r.data = b[recordHeaderSize : recordHeaderSize+int(caplen)]
	return off + recordHeaderSize + int(caplen), nil
}

// appendRecord appends one record to a raw body.
func appendRecord(body []byte, ts int64, key uint64, wire int, link uint32, obs uint16, data []byte) []byte {
	var h [recordHeaderSize]byte
	le := binary.LittleEndian
	le.PutUint64(h[0:], uint64(ts))
	le.PutUint64(h[8:], key)
	le.PutUint32(h[16:], uint32(wire))
	le.PutUint32(h[20:], uint32(len(data)))
	le.PutUint16(h[24:], uint16(link))
	le.PutUint16(h[26:], obs)
	body = append(body, h[:]...)
	return append(body, data...)
}

// indexKey is the 32-bit key a block's index holds for a flow key.
func indexKey(key uint64) uint32 { return uint32(key >> 32) }
