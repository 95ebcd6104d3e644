package mdsum

import (
	"crypto/sha1"
	"crypto/sha256"
	"math/rand/v2"
	"testing"
)

// TestSumIsTheStandardSum: messages of every length from 0 to 300 bytes
// (one block to six, every remainder modulo the block size), random
// contents, summed through Pad and Sum with one digest of each kind, give
// crypto/sha1's and crypto/sha256's sums.
func TestSumIsTheStandardSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	d1, d256 := sha1.New().(Digest), sha256.New().(Digest)
	var st []byte
	var buf []byte
	for n := 0; n <= 300; n++ {
		for range 20 {
			msg := make([]byte, n)
			for i := range msg {
				msg[i] = byte(rng.Uint32())
			}
			buf = Pad(append(buf[:0], msg...))
			if len(buf)%64 != 0 || len(buf) < n+9 || len(buf) >= n+9+64 {
				t.Fatalf("%d bytes padded to %d", n, len(buf))
			}
			var s1 [sha1.Size]byte
			if !Sum(d1, MagicSHA1, buf, &st, s1[:]) || s1 != sha1.Sum(msg) {
				t.Fatalf("SHA-1 of %d bytes: %x, want %x", n, s1, sha1.Sum(msg))
			}
			var s256 [16]byte // a prefix, as the document ids take
			want := sha256.Sum256(msg)
			if !Sum(d256, MagicSHA256, buf, &st, s256[:]) || string(s256[:]) != string(want[:16]) {
				t.Fatalf("SHA-256 of %d bytes: %x, want %x", n, s256, want[:16])
			}
		}
	}
	// One block padded in place, as the community ids do.
	for n := 0; n <= 55; n++ {
		var blk [64]byte
		for i := range n {
			blk[i] = byte(rng.Uint32())
		}
		msg := append([]byte(nil), blk[:n]...)
		PadBlock(&blk, n)
		if string(blk[:]) != string(Pad(append([]byte(nil), msg...))) {
			t.Fatalf("%d bytes: block padded in place % x, want % x", n, blk, Pad(msg))
		}
	}
	// A state in another form: false, the sum left alone.
	var s [sha1.Size]byte
	if Sum(d1, MagicSHA256, Pad(nil), &st, s[:]) || s != [sha1.Size]byte{} {
		t.Error("a state of the wrong magic read as a sum")
	}
}
