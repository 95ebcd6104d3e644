package ndjson

import (
	"bufio"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
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
