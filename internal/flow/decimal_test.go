package flow

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestAppendUint compares appendUint with strconv on every length's
// boundaries and on random numbers of every bit length.
func TestAppendUint(t *testing.T) {
	vals := []uint64{0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, math.MaxUint32, math.MaxUint64, math.MaxUint64 - 1}
	for p := uint64(10); p <= 1e19; p *= 10 {
		vals = append(vals, p-1, p, p+1)
		if p > math.MaxUint64/10 {
			break
		}
	}
	rng := rand.New(rand.NewPCG(9, 9))
	for range 100000 {
		vals = append(vals, rng.Uint64()>>rng.IntN(64))
	}
	for _, v := range vals {
		// In a buffer with room and in one without.
		for _, b := range [][]byte{make([]byte, 3, 64), make([]byte, 3)} {
			if got, want := string(appendUint(b, v)), string(strconv.AppendUint(b, v, 10)); got != want {
				t.Fatalf("appendUint(%d) = %q, want %q", v, got, want)
			}
		}
	}
}
