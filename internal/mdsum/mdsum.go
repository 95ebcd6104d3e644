// Package mdsum sums short inputs with the standard library's SHA-1 and
// SHA-256 digests without their per-call copies: the caller pads the
// message in its own buffer (Pad), the digest takes the whole blocks from
// it, and the sum is read from the digest's marshaled state. sha1.Sum and
// sha256.Sum256 copy the input into the digest, pad it through a second
// write and copy the digest to sum it, a third of their time on one block.
// The collector hashes every flow document's community id (SHA-1) and
// Elasticsearch id (SHA-256) this way.
package mdsum

import (
	"encoding"
	"encoding/binary"
	"hash"
	"slices"
)

// Digest is a SHA-1 or SHA-256 digest whose state can be read.
type Digest interface {
	hash.Hash
	encoding.BinaryAppender
}

// Magic prefixes of the digests' marshaled states, before the state words.
const (
	MagicSHA1   = "sha\x01"
	MagicSHA256 = "sha\x03"
)

// Pad appends to b, which holds a message from its start, the padding
// SHA-1 and SHA-256 put after it: 0x80, zeros up to 8 bytes short of a
// 64-byte block, and the message's length in bits.
func Pad(b []byte) []byte {
	n := len(b)
	total := (n + 9 + 63) &^ 63
	b = slices.Grow(b, total-n)[:total]
	b[n] = 0x80
	clear(b[n+1 : total-8])
	binary.BigEndian.PutUint64(b[total-8:], uint64(n)*8)
	return b
}

// PadBlock pads, in place, a message of n bytes (at most 55) at the start
// of a block whose other bytes are zero: Pad for one block, at fixed
// places.
func PadBlock(blk *[64]byte, n int) {
	blk[n] = 0x80
	binary.BigEndian.PutUint64(blk[56:], uint64(n)*8)
}

// Sum has d take padded (a message and its padding from Pad) and copies
// the first len(sum) bytes of the digest into sum, from d's marshaled
// state: magic, then the state words big endian. It reports false, and
// leaves sum alone, when the state is not in that form (the caller then
// sums the message the standard way). st is scratch space kept between
// calls.
func Sum(d Digest, magic string, padded []byte, st *[]byte, sum []byte) bool {
	d.Reset()
	d.Write(padded)
	s, err := d.AppendBinary((*st)[:0])
	*st = s
	if err != nil || len(s) < len(magic)+len(sum) || string(s[:len(magic)]) != magic {
		return false
	}
	copy(sum, s[len(magic):])
	return true
}
