package exporter

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spanflow/spanflow/exporter/capture"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/reporter"
)

// cutting is a capture file that cuts itself down to a page after a number
// of frames, as another process truncating it would.
type cutting struct {
	*capture.File
	path  string
	after int
	n     int
}

func (c *cutting) Next(f *capture.Frame) error {
	if c.n == c.after {
		if err := os.Truncate(c.path, 4096); err != nil {
			return err
		}
	}
	c.n++
	return c.File.Next(f)
}

// TestFileCutWhileRead: a capture file cut while the exporter reads it out
// of its mapping ends the run with a read error, not a crash (a SIGBUS),
// and the flows metered so far are exported.
func TestFileCutWhileRead(t *testing.T) {
	const packets = 20000 // about 3.5 MB
	path := filepath.Join(t.TempDir(), "plain.pcap")
	if err := synth.WritePlainFile(path, base, packets); err != nil {
		t.Fatal(err)
	}
	after := packets / 2
	f, err := capture.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	src := &cutting{File: f, path: path, after: after}
	mem := &memory{}
	x, err := New(reporter.NewForTest(nil), testConfiguration(path), mem)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := x.Run(context.Background(), src)
	if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "cut") {
		t.Fatalf("run: %v, want an error saying the file was cut", err)
	}
	if sum.Frames < uint64(after) || sum.Frames >= uint64(packets) || sum.Flows == 0 || len(mem.msgs) == 0 {
		t.Errorf("%d of %d frames read, %d flows exported in %d messages", sum.Frames, packets, sum.Flows, len(mem.msgs))
	}
	t.Logf("%v; %d of %d frames read, %d flows exported", err, sum.Frames, packets, sum.Flows)
}
