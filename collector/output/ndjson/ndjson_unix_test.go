//go:build unix

package ndjson

import (
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

// TestNoRotationOfNonRegularFile: a file output whose path is not a
// regular file (here a FIFO; /dev/null in practice) is written past
// MaxBytes but never renamed: rotating would move the FIFO or the device
// away and put a regular file in its place.
func TestNoRotationOfNonRegularFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flows.fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	read := make(chan int64, 1)
	go func() {
		f, err := os.Open(path) // blocks until the output opens it for writing
		if err != nil {
			read <- -1
			return
		}
		defer f.Close()
		n, _ := io.Copy(io.Discard, f)
		read <- n
	}()
	cfg := DefaultConfiguration()
	cfg.Path, cfg.MaxBytes, cfg.MaxFiles = path, 4096, 5
	o, err := New(reporter.NewForTest(nil), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		r := flow.Record{SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"),
			Proto: 6, SrcPort: uint16(i), DstPort: 80, Bytes: uint64(i)}
		if err := o.Write([]flow.Record{r}); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	wrote := int64(testutil.ToFloat64(o.bytes))
	if wrote <= cfg.MaxBytes {
		t.Fatalf("wrote %d bytes, want more than MaxBytes %d", wrote, cfg.MaxBytes)
	}
	if n := <-read; n != wrote {
		t.Errorf("the FIFO's reader got %d bytes, want all %d written", n, wrote)
	}
	if st, err := os.Lstat(path); err != nil {
		t.Errorf("after writing past MaxBytes: %v, want the FIFO still there", err)
	} else if st.Mode().Type() != os.ModeNamedPipe {
		t.Errorf("after writing past MaxBytes %s is a %v, want the FIFO still there", path, st.Mode().Type())
	}
	if _, err := os.Lstat(path + ".1"); err == nil {
		t.Errorf("%s.1 exists: the FIFO was rotated", path)
	}
}
