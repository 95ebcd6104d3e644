package ring

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestIndex: every key put in the index is found; keys not put in it are
// found about once in 2^riceBits; the index takes about riceBits+1.5 bits
// per key.
func TestIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 2, 100, 5000} {
		set := map[uint32]bool{}
		for len(set) < n {
			set[rng.Uint32()] = true
		}
		keys := make([]uint32, 0, n)
		for k := range set {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		idx := appendIndex(nil, keys)
		for _, k := range keys {
			if !indexHas(idx, uint32(n), k) {
				t.Fatalf("n=%d: key %#x not found", n, k)
			}
		}
		if n == 0 {
			continue
		}
		if bits := float64(8*len(idx)) / float64(n); n >= 100 && bits > riceBits+2.5 {
			t.Errorf("n=%d: %.1f bits per key", n, bits)
		}
		var fp int
		tries := 2_000_000 / n // keep the decoding work bounded
		if tries < 10_000 {
			continue // too few to tell a rate
		}
		for range tries {
			k := rng.Uint32()
			if !set[k] && indexHas(idx, uint32(n), k) {
				fp++
			}
		}
		if rate := float64(fp) / float64(tries); rate > 3.0/(1<<riceBits) {
			t.Errorf("n=%d: false positives %.5f, want about %.5f", n, rate, 1.0/(1<<riceBits))
		}
	}
}

// FuzzIndex: any bytes as an index, any count and key: no panic, and a
// valid index finds its keys.
func FuzzIndex(f *testing.F) {
	f.Add(appendIndex(nil, []uint32{1, 5, 1 << 31, 1<<32 - 1}), uint32(4), uint32(5))
	f.Add([]byte{0xff, 0xff, 0xff}, uint32(1000), uint32(7))
	f.Fuzz(func(t *testing.T, idx []byte, n, key uint32) {
		n %= 1 << 16
		indexHas(idx, n, key)
		keys := []uint32{key, key ^ 0x5a5a5a5a, key / 3}
		slices.Sort(keys)
		keys = slices.Compact(keys)
		enc := appendIndex(nil, keys)
		for _, k := range keys {
			if !indexHas(enc, uint32(len(keys)), k) {
				t.Fatalf("keys %x: %#x not found", keys, k)
			}
		}
	})
}
