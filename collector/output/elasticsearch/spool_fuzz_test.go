package elasticsearch

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzSpoolRead feeds arbitrary segment contents (what a crash, a full disk
// or a hand edit may leave) to the spool reader: it must not panic, must
// return only well-formed documents, and must account for every line.
func FuzzSpoolRead(f *testing.F) {
	f.Add([]byte("spanflow-flows-2001.01.01\tid1\t{\"a\":1}\n"))
	f.Add([]byte("spanflow-flows-2001.01.01\tid1\t{\"a\":1}\nspanflow-flows-2001.01.01\tid2\t{\"a\""))
	f.Add([]byte("\t\t\n\n{}\n"))
	f.Add([]byte("x\ty\t{\t}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "00000000000000000001"+segmentSuffix), data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := openSpool(dir, 1<<30, func(dropReason, int) {})
		if err != nil {
			t.Fatal(err)
		}
		seg := s.Take()
		if seg == nil {
			t.Fatal("segment not found")
		}
		items, bad, err := s.Read(seg)
		if err != nil {
			t.Fatal(err)
		}
		lines := bytes.Count(data, []byte{'\n'})
		if !bytes.HasSuffix(data, []byte{'\n'}) && len(data) > 0 {
			lines++ // the torn last line
		}
		if len(items)+bad != lines {
			t.Errorf("%d documents + %d bad != %d lines", len(items), bad, lines)
		}
		for _, it := range items {
			if it.index == "" || len(it.id) == 0 || len(it.doc) < 2 || it.doc[0] != '{' ||
				bytes.ContainsAny([]byte(it.index+string(it.id)), "\t\n") || bytes.IndexByte(it.doc, '\n') >= 0 {
				t.Errorf("malformed document %+v", it)
			}
		}
		if err := s.Done(seg, nil); err != nil {
			t.Fatal(err)
		}
	})
}
