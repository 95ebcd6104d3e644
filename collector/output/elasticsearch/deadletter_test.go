package elasticsearch

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spanflow/spanflow/internal/reporter"
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

// TestDeadLetterFileLocked: two outputs (each with its own spool
// directory) given the same dead-letter file, once by a symbolic link: the
// second is refused with ErrDeadLetterInUse naming the file, this process
// and --es-dead-letter-file, and starts once the first has stopped.
// Before, both appended to the file without any lock.
func TestDeadLetterFileLocked(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "refused.ndjson")
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	cfg := func(dead string) Configuration {
		c := DefaultConfiguration()
		c.Connection.URLs = []string{"http://127.0.0.1:1"} // never contacted: not started
		c.SpoolDir, c.DeadLetterFile = t.TempDir(), dead
		return c
	}
	first, err := New(reporter.NewForTest(nil), cfg(path))
	if err != nil {
		t.Fatal(err)
	}
	for _, other := range []string{path, filepath.Join(link, "refused.ndjson")} {
		_, err = New(reporter.NewForTest(nil), cfg(other))
		if !errors.Is(err, ErrDeadLetterInUse) || !strings.Contains(err.Error(), other) ||
			!strings.Contains(err.Error(), fmt.Sprintf("process %d", os.Getpid())) ||
			!strings.Contains(err.Error(), "--es-dead-letter-file") {
			t.Errorf("second output on %s: %v; want ErrDeadLetterInUse naming the file, pid %d and --es-dead-letter-file",
				other, err, os.Getpid())
		}
	}
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	second, err := New(reporter.NewForTest(nil), cfg(path))
	if err != nil {
		t.Fatalf("output on %s after the first stopped: %v", path, err)
	}
	second.Stop()
}

// TestDeadLetterDeviceShared: a dead-letter file that is not a regular file
// (/dev/null to drop refused documents, /dev/stderr, a FIFO) is not
// locked: two outputs (a collector and an indexer on one host, both told
// --es-dead-letter-file /dev/null) both start and write to it, and no
// lock file is made beside it. Before, the second was refused as if the
// first owned the device, and the first made DEVICE.lock, in /dev for
// /dev/null (where only root may create a file: the others did not start).
func TestDeadLetterDeviceShared(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making a device node (a null device outside /dev) needs root")
	}
	dir := t.TempDir()
	null := filepath.Join(dir, "null")
	if err := unix.Mknod(null, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Skipf("cannot make a null device: %v", err)
	}
	cfg := func() Configuration {
		c := DefaultConfiguration()
		c.Connection.URLs = []string{"http://127.0.0.1:1"} // never contacted: not started
		c.SpoolDir, c.DeadLetterFile = t.TempDir(), null
		return c
	}
	var outs []*Output
	for i := range 2 {
		o, err := New(reporter.NewForTest(nil), cfg())
		if err != nil {
			t.Fatalf("output %d on a null device: %v", i+1, err)
		}
		outs = append(outs, o)
	}
	entry := deadLetterEntry{Time: time.Unix(1e9, 0).UTC(), Index: "i", ID: "x", Status: 400, Document: []byte(`{"a":1}`)}
	for i, o := range outs {
		if err := o.dead.Write(entry); err != nil {
			t.Errorf("output %d: writing to the null device: %v", i+1, err)
		}
		if err := o.Stop(); err != nil {
			t.Errorf("output %d: stop: %v", i+1, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files beside the device, want none", len(entries)-1)
	}
}

// TestDeadLetterLinkToNewFile: a dead-letter path that is a symbolic link
// to a file not made yet (the first start) takes the lock of the file it
// names, as a process given the file's own name does. Before, the link
// was locked under its own name (PATH.lock beside the link), and a second
// output given the file's name started too: both wrote the file.
func TestDeadLetterLinkToNewFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "refused.ndjson")
	link := filepath.Join(t.TempDir(), "dead-letter.ndjson")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	first, err := openDeadLetter(link, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("the link's file was not made: %v", err)
	}
	second, err := openDeadLetter(file, 0)
	if err == nil {
		second.Close()
	}
	if !errors.Is(err, ErrDeadLetterInUse) {
		t.Errorf("second output on %s, which %s links to: %v; want ErrDeadLetterInUse", file, link, err)
	}
}
