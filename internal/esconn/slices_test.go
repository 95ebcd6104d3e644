package esconn

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

// TestSlicesReader: read in pieces of random sizes, a SlicesReader gives
// its slices' bytes in order, then io.EOF; Len is what is left and Take
// hands over exactly that at any point; reading never changes the slices,
// so a second reader over them (a retry's body) gives the same bytes.
func TestSlicesReader(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	parts := [][]byte{[]byte("ab"), {}, []byte("cdefg"), []byte("h"), bytes.Repeat([]byte("i"), 100)}
	want := bytes.Join(parts, nil)
	for round := range 200 {
		r := NewSlicesReader(parts)
		var got []byte
		stop := rng.IntN(len(want) + 1) // read this much, then take the rest
		for len(got) < stop {
			buf := make([]byte, 1+rng.IntN(min(7, stop-len(got))))
			n, err := r.Read(buf)
			if err != nil {
				t.Fatalf("round %d: read after %d bytes: %v", round, len(got), err)
			}
			got = append(got, buf[:n]...)
		}
		if r.Len() != int64(len(want)-len(got)) {
			t.Fatalf("round %d: Len %d after %d of %d bytes", round, r.Len(), len(got), len(want))
		}
		if round%2 == 0 {
			got = append(got, bytes.Join(r.Take(), nil)...)
		} else {
			rest, _ := io.ReadAll(r)
			got = append(got, rest...)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: %q, want %q", round, got, want)
		}
		if n, err := r.Read(make([]byte, 4)); n != 0 || err != io.EOF || r.Len() != 0 {
			t.Fatalf("round %d: at the end: %d, %v, Len %d", round, n, err, r.Len())
		}
	}
	if again, _ := io.ReadAll(NewSlicesReader(parts)); !bytes.Equal(again, want) {
		t.Fatalf("the slices changed: a new reader gives %q", again)
	}
}
