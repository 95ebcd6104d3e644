package ndjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// metric is the value of the output's series of a spanflow_ndjson metric
// (0 when there is none).
func metric(t *testing.T, r *reporter.Reporter, name string) float64 {
	t.Helper()
	mfs, err := r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

// TestFileOutputDiskFull: a file output on a full filesystem (a real
// 128 KiB tmpfs) drops what it cannot write, counts it in
// spanflow_ndjson_documents_dropped_total (documents_total counts only
// what the file took), warns a few times, not once per flush, and takes
// documents again once the filesystem has space. Before, the bufio.Writer
// kept its first error: every flush warned (5 lines a second), every
// document was counted as written, and none was written again after the
// space came back.
func TestFileOutputDiskFull(t *testing.T) {
	dir, filler := smallTmpfs(t, 64<<10)
	var logs testutil.SyncBuffer
	r := reporter.NewForTest(&logs)
	cfg := DefaultConfiguration()
	cfg.Path, cfg.MaxBytes = filepath.Join(dir, "flows.ndjson"), 0
	o := startOutput(t, r, cfg)
	taken, failures := 0, 0
	write := func(n int) error { return writeFlushed(o, &taken, n) }
	for range 40 {
		if err := write(50); err != nil {
			failures++
		}
	}
	docs := metric(t, r, "spanflow_ndjson_documents_total")
	dropped := metric(t, r, "spanflow_ndjson_documents_dropped_total")
	if failures < 10 || dropped == 0 || docs+dropped != float64(taken) {
		t.Errorf("full disk: %d of 40 writes failed, %.0f documents written and %.0f dropped of %d; want most failing, "+
			"and every document counted as written or dropped", failures, docs, dropped, taken)
	}
	if lines := strings.Count(logs.String(), "NDJSON output cannot write"); lines == 0 || lines > failures/4 {
		t.Errorf("%d failed writes logged %d warnings; want a few (rate-limited), not one each", failures, lines)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := write(20); err != nil {
		t.Fatalf("after the filesystem got space back: %v", err)
	}
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	after := metric(t, r, "spanflow_ndjson_documents_total")
	if after != docs+20 {
		t.Errorf("after the filesystem got space back %.0f documents written, want %.0f", after, docs+20)
	}
	b, err := os.ReadFile(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	whole, torn := 0, 0
	for _, l := range bytes.Split(bytes.TrimSuffix(b, []byte{'\n'}), []byte{'\n'}) {
		if json.Valid(l) {
			whole++
		} else {
			torn++
		}
	}
	if float64(whole) != after || torn > 1 {
		t.Errorf("the file holds %d documents and %d torn lines; documents_total says %.0f, and at most one line may be torn",
			whole, torn, after)
	}
}

// TestFileOutputDirectoryRemoved: the directory of a rotated file output
// is removed while it runs. The documents that cannot go anywhere are
// counted as dropped, and once the directory is made again the output
// writes to PATH again. Before, the failed rotation left the file closed:
// every later write failed ("file already closed") for as long as the
// process ran, and the documents were counted only as failed write calls.
func TestFileOutputDirectoryRemoved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	r := reporter.NewForTest(nil)
	cfg := DefaultConfiguration()
	cfg.Path, cfg.MaxBytes = filepath.Join(dir, "flows.ndjson"), 8192
	o := startOutput(t, r, cfg)
	taken := 0
	write := func(n int) error { return writeFlushed(o, &taken, n) }
	for range 5 {
		if err := write(10); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	failed := 0
	for range 20 {
		if write(10) != nil {
			failed++
		}
	}
	dropped := metric(t, r, "spanflow_ndjson_documents_dropped_total")
	if failed == 0 || dropped == 0 {
		t.Errorf("with the directory removed %d of 20 writes failed and %.0f documents were counted as dropped; want failures, counted", failed, dropped)
	}
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	before := metric(t, r, "spanflow_ndjson_documents_total")
	if err := write(10); err != nil {
		t.Fatalf("after the directory was made again: %v", err)
	}
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	written := metric(t, r, "spanflow_ndjson_documents_total")
	if written != before+10 || written+metric(t, r, "spanflow_ndjson_documents_dropped_total") != float64(taken) {
		t.Errorf("%.0f documents written (%.0f before the directory was back), %.0f dropped, of %d taken; want the last 10 written and every one counted",
			written, before, metric(t, r, "spanflow_ndjson_documents_dropped_total"), taken)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "flows.ndjson*"))
	lines := 0
	for _, f := range files {
		b, _ := os.ReadFile(f)
		lines += bytes.Count(b, []byte{'\n'})
	}
	if lines != 10 {
		t.Errorf("the directory made again holds %d documents in %v, want the 10 written since", lines, files)
	}
}

// TestFileOutputFileRemoved: the output's file is removed (rm, without a
// SIGHUP). The next flush notices that the file has no name left and
// creates PATH again, so the documents after it are in a file someone can
// read. Before, they went on into the removed file, counted as written,
// until the next rotation.
func TestFileOutputFileRemoved(t *testing.T) {
	var logs testutil.SyncBuffer
	r := reporter.NewForTest(&logs)
	cfg := DefaultConfiguration()
	cfg.Path = filepath.Join(t.TempDir(), "flows.ndjson")
	o := startOutput(t, r, cfg)
	defer o.Stop()
	write := func(from, n int) {
		t.Helper()
		recs := make([]flow.Record, n)
		for i := range recs {
			recs[i] = flow.Record{SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"),
				Proto: 6, SrcPort: uint16(from + i), DstPort: 80, Bytes: uint64(from + i)}
		}
		if err := o.Write(recs); err != nil {
			t.Fatal(err)
		}
		if err := o.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	write(0, 10)
	if err := os.Remove(cfg.Path); err != nil {
		t.Fatal(err)
	}
	write(10, 7)
	b, err := os.ReadFile(cfg.Path)
	if err != nil {
		t.Fatalf("after the file was removed and 7 documents written: %v; want %s created again", err, cfg.Path)
	}
	if n := bytes.Count(b, []byte{'\n'}); n != 7 {
		t.Errorf("%s holds %d documents, want the 7 written since it was removed", cfg.Path, n)
	}
	if !strings.Contains(logs.String(), "NDJSON output file was removed: created it again") {
		t.Errorf("no warning that the file was removed; logs:\n%s", logs.String())
	}
}

// TestReopenAfterFileRemoved: SIGHUP (Reopen) with documents buffered for
// a file that was removed: the flush creates PATH again, and Reopen then
// opens it once more and closes what it replaces. Before, Reopen closed
// the file the flush had already closed ("file already closed") and left
// the one the flush opened open.
func TestReopenAfterFileRemoved(t *testing.T) {
	cfg := DefaultConfiguration()
	cfg.Path = filepath.Join(t.TempDir(), "flows.ndjson")
	o, err := New(reporter.NewForTest(nil), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	defer o.Stop()
	r := flow.Record{SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"), Proto: 6, DstPort: 80}
	if err := o.Write([]flow.Record{r}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(cfg.Path); err != nil {
		t.Fatal(err)
	}
	if err := o.Reopen(); err != nil {
		t.Errorf("reopen after the file was removed: %v", err)
	}
	b, err := os.ReadFile(cfg.Path)
	if err != nil || bytes.Count(b, []byte{'\n'}) != 1 {
		t.Errorf("%s after the reopen: %d documents (%v), want the one buffered", cfg.Path, bytes.Count(b, []byte{'\n'}), err)
	}
}

// writeFlushed writes n records, numbered from *taken on, and flushes them.
func writeFlushed(o *Output, taken *int, n int) error {
	recs := make([]flow.Record, n)
	for i := range recs {
		recs[i] = flow.Record{SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"),
			Proto: 6, SrcPort: uint16(*taken + i), DstPort: 80, Bytes: uint64(*taken + i)}
	}
	*taken += n
	if err := o.Write(recs); err != nil {
		return err
	}
	return o.Flush()
}

// openFDs lists this process's descriptors open on path.
func openFDs(t *testing.T, path string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil &&
			strings.TrimSuffix(target, " (deleted)") == path {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestWriteAndReopenAfterStop: outputs stop last, so a Write (or a SIGHUP's
// Reopen) can still arrive after Stop. It is refused, its documents are
// counted in documents_dropped_total, and the file is not opened again.
// Before, Write and Reopen opened PATH again (created it when it had been
// moved away) and left the descriptor open for the rest of the process,
// and stdout's late documents stayed in the buffer, counted nowhere.
func TestWriteAndReopenAfterStop(t *testing.T) {
	r := reporter.NewForTest(nil)
	cfg := DefaultConfiguration()
	cfg.Path = filepath.Join(t.TempDir(), "flows.ndjson")
	o := startOutput(t, r, cfg)
	taken := 0
	if err := writeFlushed(o, &taken, 5); err != nil {
		t.Fatal(err)
	}
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(cfg.Path, cfg.Path+".rotated"); err != nil { // logrotate, as the process stops
		t.Fatal(err)
	}
	rec := flow.Record{SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"), Proto: 6, DstPort: 80}
	if err := o.Write([]flow.Record{rec, rec, rec}); err == nil {
		t.Error("Write after Stop: no error")
	}
	if err := o.Reopen(); err == nil {
		t.Error("Reopen after Stop: no error")
	}
	if err := o.Write([]flow.Record{rec}); err == nil {
		t.Error("Write after a Reopen after Stop: no error")
	}
	if fds := openFDs(t, cfg.Path); len(fds) > 0 {
		t.Errorf("after Stop, descriptors %v are open on %s", fds, cfg.Path)
	}
	if _, err := os.Lstat(cfg.Path); err == nil {
		t.Errorf("%s was opened again after Stop", cfg.Path)
	}
	if d := metric(t, r, "spanflow_ndjson_documents_dropped_total"); d != 4 {
		t.Errorf("%.0f documents counted as dropped after Stop, want the 4 written late", d)
	}
	if w := metric(t, r, "spanflow_ndjson_documents_total"); w != 5 {
		t.Errorf("%.0f documents counted as written, want the 5 before Stop", w)
	}

	var stdout bytes.Buffer
	r = reporter.NewForTest(nil)
	o, err := New(r, DefaultConfiguration(), &stdout)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := o.Write([]flow.Record{rec, rec}); err == nil {
		t.Error("Write to stdout after Stop: no error")
	}
	if err := o.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if d := metric(t, r, "spanflow_ndjson_documents_dropped_total"); d != 2 || stdout.Len() != 0 {
		t.Errorf("stdout after Stop: %.0f documents counted as dropped and %d bytes written, want 2 and none", d, stdout.Len())
	}
}

// TestRotationCountsWrittenBytes: documents a full disk dropped do not
// count towards the rotation size. On a 128 KiB tmpfs with 8 KiB free, a
// file output with a 32 KiB limit drops most of 300 documents; after the
// disk has space again the file has not reached 32 KiB, so nothing is
// rotated and every document written is in PATH. Before, the size counted
// the dropped documents too: the file was rotated while far under the
// limit, once per 32 KiB dropped.
func TestRotationCountsWrittenBytes(t *testing.T) {
	dir, filler := smallTmpfs(t, 120<<10)
	r := reporter.NewForTest(nil)
	cfg := DefaultConfiguration()
	cfg.Path, cfg.MaxBytes, cfg.MaxFiles = filepath.Join(dir, "flows.ndjson"), 32<<10, 5
	o := startOutput(t, r, cfg)
	taken := 0
	for range 30 {
		_ = writeFlushed(o, &taken, 10) // most fail: counted as dropped
	}
	dropped := metric(t, r, "spanflow_ndjson_documents_dropped_total")
	if dropped < 150 {
		t.Fatalf("%.0f of %d documents dropped on the full disk, want most", dropped, taken)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := writeFlushed(o, &taken, 10); err != nil {
		t.Fatalf("after the disk got space back: %v", err)
	}
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	written := metric(t, r, "spanflow_ndjson_documents_total")
	b, err := os.ReadFile(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if rot := metric(t, r, "spanflow_ndjson_rotations_total"); rot != 0 || int64(len(b)) > cfg.MaxBytes {
		t.Errorf("%.0f rotations; %s holds %d bytes (limit %d) after %.0f documents written and %.0f dropped; "+
			"want no rotation of a file under the limit", rot, cfg.Path, len(b), cfg.MaxBytes, written, dropped)
	}
	if n := bytes.Count(b, []byte{'\n'}); float64(n) < written {
		t.Errorf("%s holds %d lines, want the %.0f documents written", cfg.Path, n, written)
	}
}

// smallTmpfs mounts a 128 KiB tmpfs (root only: skipped otherwise, failed
// under CI) and takes fill bytes of it with the file filler.
func smallTmpfs(t *testing.T, fill int) (dir, filler string) {
	t.Helper()
	dir = t.TempDir()
	reason := ""
	if os.Geteuid() != 0 {
		reason = "mounting a small tmpfs needs root"
	} else if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=131072"); err != nil {
		reason = fmt.Sprintf("mount a tmpfs on %s: %v", dir, err)
	} else {
		t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	}
	testutil.NeedService(t, "a small tmpfs", reason)
	filler = filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, fill), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, filler
}

// startOutput makes and starts a file output of cfg.
func startOutput(t *testing.T, r *reporter.Reporter, cfg Configuration) *Output {
	t.Helper()
	o, err := New(r, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	return o
}
