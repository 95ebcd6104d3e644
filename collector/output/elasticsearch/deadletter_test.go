package elasticsearch

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func linesOf(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for sc := bufio.NewScanner(f); sc.Scan(); n++ {
	}
	return n
}

// TestDeadLetterBounded: past its bound the dead-letter file refuses
// entries whole (errDeadLetterFull, which the output counts as dropped),
// and once an operator moves it away a new one takes them again.
func TestDeadLetterBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dead-letter.ndjson")
	d, err := openDeadLetter(path, 2000)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	entry := deadLetterEntry{Time: time.Unix(1e9, 0).UTC(), Index: "spanflow-flows-2026.12.07", ID: "x", Status: 400,
		Type: "mapper_parsing_exception", Reason: "failed to parse", Document: []byte(`{"a":1}`)}
	written, full := 0, 0
	for range 100 {
		switch err := d.Write(entry); {
		case errors.Is(err, errDeadLetterFull):
			full++
		case err != nil:
			t.Fatal(err)
		default:
			written++
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if written == 0 || full != 100-written || st.Size() > 2000 || linesOf(t, path) != written {
		t.Fatalf("%d written, %d refused, file of %d bytes and %d lines: want whole lines up to 2000 bytes, the rest refused",
			written, full, st.Size(), linesOf(t, path))
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // a full file is looked at once a second
	if err := d.Write(entry); err != nil {
		t.Fatalf("after the file was moved away: %v", err)
	}
	if n := linesOf(t, path); n != 1 {
		t.Errorf("the new file has %d lines, want 1", n)
	}
	if n := linesOf(t, path+".1"); n != written {
		t.Errorf("the moved file has %d lines, want %d", n, written)
	}
}
