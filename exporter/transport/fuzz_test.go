package transport

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzRecordCounter: the TCP transport reads the sets of every message it
// queues (to count records and keep templates), and the narrower of
// compat=pmacct rewrites them; no message may make either panic or loop,
// the counter never counts more records than bytes and the narrower
// never makes a message longer.
func FuzzRecordCounter(f *testing.F) {
	// Seeds: the encoder's golden messages, and a few cut ones.
	files, _ := filepath.Glob(filepath.Join("..", "ipfix", "testdata", "*"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if strings.HasSuffix(p, ".hex") {
			b, err = hex.DecodeString(strings.Join(strings.Fields(string(b)), ""))
			if err != nil {
				continue
			}
		}
		if len(b) >= 16 {
			f.Add(b)
			f.Add(b[:len(b)/2])
		}
	}
	f.Add([]byte{0, 10, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 4})
	f.Add([]byte{0, 10, 0, 28, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 12, 1, 2, 0, 1, 0, 0, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, msg []byte) {
		n := newNarrower()
		// Twice: the second pass uses the templates of the first. A
		// message only gets shorter.
		for i := 0; i < 2; i++ {
			if out := n.rewrite(msg); len(out) > len(msg) {
				t.Fatalf("narrowed message of %d bytes from %d", len(out), len(msg))
			}
		}
		c := newRecordCounter()
		// Twice: the second pass uses the templates of the first.
		for i := 0; i < 2; i++ {
			n, _ := c.inspect(msg)
			if n > uint64(len(msg)) {
				t.Fatalf("%d records in %d bytes", n, len(msg))
			}
		}
	})
}
