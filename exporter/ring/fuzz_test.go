package ring_test

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/ring"
)

// FuzzSegment: any bytes as a segment file: the listing and every kind of
// query answer or warn, never panic, and never allocate past the bounds.
func FuzzSegment(f *testing.F) {
	dir := f.TempDir()
	in, _ := generated(5, 24, time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC))
	for i := range in {
		in[i].Data = in[i].Data[:min(len(in[i].Data), 120)] // small inputs fuzz faster
	}
	for _, codec := range []ring.Codec{ring.CodecZstd, ring.CodecNone} {
		cfg := config(filepath.Join(dir, codec.String()))
		cfg.Codec, cfg.BlockSize = codec, 1024
		fill(f, cfg, in)
		segs, _, err := ring.List(cfg.Dir, func(string) {})
		if err != nil || len(segs) != 1 {
			f.Fatalf("segments %v, %v", segs, err)
		}
		b, err := os.ReadFile(segs[0].Path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	key, _, _ := ring.ParseFlow("tcp 10.1.0.1:20001 10.9.0.10:5432")
	f.Fuzz(func(t *testing.T, data []byte) {
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, "0000000000000001.seg"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		ring.List(d, func(string) {})
		ring.Search(d, ring.Query{}, func(string) {})
		ring.Search(d, ring.Query{Key: key, From: 1}, func(string) {})
		pkts, _, _ := ring.Search(d, ring.Query{Key: key}, func(string) {})
		ring.WritePcap(io.Discard, pkts)
		ring.WritePcapng(io.Discard, pkts)
	})
}
