package ndjson

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

// TestFileRotation writes more than MaxBytes and checks that every document
// is in exactly one of the files, each file under the limit.
func TestFileRotation(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfiguration()
	cfg.Path, cfg.MaxBytes, cfg.MaxFiles = filepath.Join(dir, "flows.ndjson"), 4096, 50
	o, err := New(reporter.NewForTest(nil), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := range n {
		r := flow.Record{SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"),
			Proto: 6, SrcPort: uint16(i), DstPort: 80, Bytes: uint64(i)}
		if err := o.Write([]flow.Record{r}); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(cfg.Path + "*")
	if len(files) < 3 {
		t.Fatalf("expected rotation, files: %v", files)
	}
	seen := map[float64]bool{}
	for _, f := range files {
		st, _ := os.Stat(f)
		if st.Mode().Perm() != 0o640 {
			t.Errorf("%s has mode %v, want 0640", f, st.Mode().Perm())
		}
		if st.Size() > cfg.MaxBytes {
			t.Errorf("%s is %d bytes, limit %d", f, st.Size(), cfg.MaxBytes)
		}
		fh, _ := os.Open(f)
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			var doc struct {
				Source struct{ Port float64 }
			}
			if err := json.Unmarshal(sc.Bytes(), &doc); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if seen[doc.Source.Port] {
				t.Errorf("document %v twice", doc.Source.Port)
			}
			seen[doc.Source.Port] = true
		}
		fh.Close()
	}
	if len(seen) != n {
		t.Errorf("%d documents in the files, want %d", len(seen), n)
	}
}

// TestFileModeNarrowed: a file output that exists with a mode open to
// others is narrowed to 0640 when it is opened; flows name every internal
// address.
func TestFileModeNarrowed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flows.ndjson")
	if err := os.WriteFile(path, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o666) // whatever the umask
	cfg := DefaultConfiguration()
	cfg.Path = path
	o, err := New(reporter.NewForTest(nil), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
}

// TestRotationKeepsOrder: rotated files run from the newest (PATH.1) to
// the oldest (PATH.N), while fewer than N exist and once N do; no more
// than N are kept; and more than 1,000 kept files are refused.
func TestRotationKeepsOrder(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfiguration()
	cfg.Path, cfg.MaxBytes, cfg.MaxFiles = filepath.Join(dir, "flows.ndjson"), 100, 3
	o, err := New(reporter.NewForTest(nil), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	port := func(path string) int {
		b, err := os.ReadFile(path)
		if err != nil {
			return -1
		}
		var doc struct{ Source struct{ Port int } }
		if err := json.Unmarshal(bytes.SplitN(b, []byte("\n"), 2)[0], &doc); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return doc.Source.Port
	}
	for i := range 8 { // every document a file of its own (each is past 100 bytes)
		r := flow.Record{SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"),
			Proto: 6, SrcPort: uint16(100 + i), DstPort: 80}
		if err := o.Write([]flow.Record{r}); err != nil {
			t.Fatal(err)
		}
		if err := o.Flush(); err != nil {
			t.Fatal(err)
		}
		for k := 0; k <= min(i, cfg.MaxFiles); k++ {
			name := cfg.Path
			if k > 0 {
				name = fmt.Sprintf("%s.%d", cfg.Path, k)
			}
			if got := port(name); got != 100+i-k {
				t.Fatalf("after document %d: %s holds document %d, want %d", i, name, got-100, i-k)
			}
		}
		if _, err := os.Stat(fmt.Sprintf("%s.%d", cfg.Path, cfg.MaxFiles+1)); err == nil {
			t.Fatalf("after document %d: more than %d rotated files", i, cfg.MaxFiles)
		}
	}
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	cfg.MaxFiles = 1001
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "output-max-files") {
		t.Errorf("1,001 kept files: %v, want an error naming output-max-files", err)
	}
}

// TestReopen moves the file away, as logrotate does, and reopens: the
// documents before are in the moved file, those after in a new file at
// the path. A path that cannot be opened keeps the file in use.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfiguration()
	cfg.Path = filepath.Join(dir, "flows.ndjson")
	o, err := New(reporter.NewForTest(nil), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	write := func(from, n int) {
		for i := from; i < from+n; i++ {
			r := flow.Record{SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"),
				Proto: 6, SrcPort: uint16(i), DstPort: 80}
			if err := o.Write([]flow.Record{r}); err != nil {
				t.Fatal(err)
			}
		}
	}
	ports := func(path string) []int {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var out []int
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var doc struct{ Source struct{ Port int } }
			if err := json.Unmarshal([]byte(line), &doc); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			out = append(out, doc.Source.Port)
		}
		return out
	}
	write(0, 10)
	if err := os.Rename(cfg.Path, cfg.Path+".rotated"); err != nil {
		t.Fatal(err)
	}
	if err := o.Reopen(); err != nil {
		t.Fatal(err)
	}
	write(10, 5)
	// The path cannot be opened now (a directory stands there): the
	// output keeps its file.
	if err := os.Rename(cfg.Path, cfg.Path+".second"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(cfg.Path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := o.Reopen(); err == nil {
		t.Fatal("Reopen with a directory at the path: no error")
	}
	write(15, 5)
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := ports(cfg.Path + ".rotated"); fmt.Sprint(got) != "[0 1 2 3 4 5 6 7 8 9]" {
		t.Errorf("moved file holds %v, want 0-9", got)
	}
	if got := ports(cfg.Path + ".second"); fmt.Sprint(got) != "[10 11 12 13 14 15 16 17 18 19]" {
		t.Errorf("reopened file holds %v, want 10-19", got)
	}
}
