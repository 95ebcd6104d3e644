package decoders

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/spanflow/spanflow/bench/ipfixgen"
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

// TestUnprovenForgotten: sources that sent a template and nothing else,
// forgotten once idle round after round (below the exporter limit), leave
// no entry in the list of unproven exporters, which kept each one's state
// reachable; one that stays is still listed.
func TestUnprovenForgotten(t *testing.T) {
	cfg := DefaultConfiguration()
	dec, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tpl := ipfixgen.New(1, 10).Template()
	now := time.Unix(1_800_000_000, 0)
	stay := netip.MustParseAddrPort("192.0.2.9:4739")
	for r := range 5 {
		for i := range 3000 {
			n := r*3000 + i
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}), 1)
			if _, _, err := dec.Decode(Datagram{Source: src, Payload: tpl, Received: now}, nil); err != nil {
				t.Fatal(err)
			}
		}
		// The one that stays sends a template just before the expiry.
		now = now.Add(cfg.ExporterIdleTimeout + time.Second)
		if _, _, err := dec.Decode(Datagram{Source: stay, Payload: tpl, Received: now}, nil); err != nil {
			t.Fatal(err)
		}
		dec.Expire(now)
		if len(dec.exporters) != 1 || len(dec.unproven) != 1 || dec.unproven[0].addr != stay.Addr() {
			t.Fatalf("round %d: %d exporters kept, %d listed unproven; want the one that stays, listed", r, len(dec.exporters), len(dec.unproven))
		}
	}
}
