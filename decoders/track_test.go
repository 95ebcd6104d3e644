package decoders

import (
	"math/rand/v2"
	"testing"
)

// TestTrackAsOneMap: the exporter's sequence tracking (its first space
// inline, the others in a map) reports the losses that one map of every
// space reports, with as many spaces allowed, on random streams of
// messages in up to six spaces, in order, skipping ahead and going back.
func TestTrackAsOneMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 4))
	for round := range 2000 {
		maxSeq := rng.IntN(5)
		e := &exporter{seq: map[uint64]uint32{}, maxSeq: maxSeq}
		ref := map[uint64]uint32{}
		next := map[uint64]uint32{}
		for i := range 300 {
			space := uint64(rng.IntN(6)) << 32
			seq := next[space]
			switch rng.IntN(6) {
			case 0:
				seq += uint32(rng.IntN(50)) // lost messages
			case 1:
				seq -= uint32(rng.IntN(50)) // a restart or reordering
			}
			count := uint32(1 + rng.IntN(30))
			next[space] = seq + count
			// The single map, as track kept it before.
			want := uint64(0)
			n, seen := ref[space]
			if len(ref) < maxSeq || seen {
				ref[space] = seq + count
			}
			if gap := seq - n; seen && gap != 0 && gap <= 1<<30 {
				want = uint64(gap)
			}
			if got := e.track(space, seq, count); got != want {
				t.Fatalf("round %d, message %d (space %d of at most %d, seq %d): lost %d, want %d", round, i, space>>32, maxSeq, seq, got, want)
			}
			if e.spaces() != len(ref) {
				t.Fatalf("round %d: %d spaces tracked, want %d", round, e.spaces(), len(ref))
			}
		}
	}
}
