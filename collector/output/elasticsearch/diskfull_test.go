package elasticsearch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/spanflow/spanflow/internal/testutil"
)

// smallFilesystem mounts a tmpfs of size bytes and returns its directory:
// a disk that really fills up. It needs root; it skips otherwise (and
// fails under CI=true, where the tests run as root).
func smallFilesystem(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	reason := ""
	if os.Geteuid() != 0 {
		reason = "mounting a small tmpfs needs root"
	} else if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		reason = fmt.Sprintf("mount a %d-byte tmpfs on %s: %v", size, dir, err)
	} else {
		// Registered before NeedService, which skips under -short: the
		// mount must not outlive a skipped test. Runs before TempDir's
		// removal (cleanups run last first); detached, so a test that
		// failed with files still open does not keep it.
		t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	}
	testutil.NeedService(t, "a small tmpfs", reason)
	return dir
}

// segmentBytes is the size of the spool's segment files in dir.
func segmentBytes(t *testing.T, dir string) int64 {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*"+segmentSuffix))
	var n int64
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		n += st.Size()
	}
	return n
}

// TestSpoolDiskFull fills a real 1 MiB filesystem with a spool bounded at
// 1 GiB: the full disk gets the bound's policy (the oldest documents go,
// counted as disk_full, never as spool_full), the newest stay, in order,
// and no partial write is left in the files.
func TestSpoolDiskFull(t *testing.T) {
	dir := smallFilesystem(t, 1<<20)
	drops := map[dropReason]int{}
	s, err := openSpool(dir, 1<<30, func(r dropReason, n int) { drops[r] += n })
	if err != nil {
		t.Fatal(err)
	}
	s.segBytes = 64 << 10
	appended := 0
	for total := 0; total < 3<<20; appended += 100 {
		its := testItems(appended, 100)
		if err := s.Append(its); err != nil {
			t.Fatalf("append after %d documents: %v", appended, err)
		}
		total += 100 * (len(its[0].doc) + len(its[0].index) + len(its[0].id) + 3)
	}
	docs, bytes := s.Stats()
	if drops[dropDiskFull] == 0 || len(drops) != 1 {
		t.Errorf("drops %v: want only disk_full (the spool is far below its bound)", drops)
	}
	if int(docs)+drops[dropDiskFull] != appended {
		t.Errorf("kept %d + dropped %d != appended %d", docs, drops[dropDiskFull], appended)
	}
	if bytes < 1<<19 {
		t.Errorf("spool holds %d bytes of a 1 MiB disk: dropped more than needed", bytes)
	}
	if on := segmentBytes(t, dir); on != bytes {
		t.Errorf("segment files hold %d bytes, the spool counts %d: a partial write was left", on, bytes)
	}
	var got []string
	for seg := s.Take(); seg != nil; seg = s.Take() {
		items, bad, err := s.Read(seg)
		if err != nil || bad != 0 {
			t.Fatalf("read: %v, %d bad lines", err, bad)
		}
		got = append(got, ids(items)...)
		if err := s.Done(seg, nil); err != nil {
			t.Fatal(err)
		}
	}
	if want := ids(testItems(appended-len(got), len(got))); len(got) != int(docs) || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the spool holds %d documents, from %v to %v; want the newest %d, %v to %v",
			len(got), got[0], got[len(got)-1], docs, want[0], want[len(want)-1])
	}
}

// TestSpoolDiskFullOfOtherFiles: when other files fill the disk and the
// spool has nothing left to drop, the documents being written are dropped
// and counted as disk_full, and Append returns (it once went on dropping
// the empty segment it had just opened, for ever).
func TestSpoolDiskFullOfOtherFiles(t *testing.T) {
	dir := smallFilesystem(t, 1<<20)
	drops := map[dropReason]int{}
	s, err := openSpool(filepath.Join(dir, "spool"), 1<<30, func(r dropReason, n int) { drops[r] += n })
	if err != nil {
		t.Fatal(err)
	}
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer filler.Close()
	if _, err := filler.Write(make([]byte, 2<<20)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the disk: %v, want ENOSPC", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Append(testItems(0, 10)) }()
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatal("Append did not return on a disk full of other files")
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("append on a full disk: %v, want ENOSPC", err)
	}
	if fmt.Sprint(drops) != fmt.Sprint(map[dropReason]int{dropDiskFull: 10}) {
		t.Errorf("drops %v, want disk_full:10", drops)
	}
	if docs, bytes := s.Stats(); docs != 0 || bytes != 0 || segmentBytes(t, filepath.Join(dir, "spool")) != 0 {
		t.Errorf("spool holds %d documents, %d bytes after a failed append", docs, bytes)
	}
}

// TestSpoolWriteErrorIsNotSpoolFull: a write error other than a full disk
// drops the documents being written under spool_write; spool_full says only
// that the spool reached its bound.
func TestSpoolWriteErrorIsNotSpoolFull(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	drops := map[dropReason]int{}
	s, err := openSpool(dir, 1<<30, func(r dropReason, n int) { drops[r] += n })
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(testItems(0, 10)); err != nil {
		t.Fatal(err)
	}
	// The next append opens a segment in a directory that is gone.
	s.Close()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(testItems(10, 5)); err == nil {
		t.Fatal("append into a removed directory succeeded")
	}
	if fmt.Sprint(drops) != fmt.Sprint(map[dropReason]int{dropSpoolWrite: 5}) {
		t.Errorf("drops %v, want spool_write:5", drops)
	}
}

func droppedMetric(o *Output, reason dropReason) float64 {
	var m dto.Metric
	if err := o.metrics.dropped.WithLabelValues(string(reason)).Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// TestOutputDiskFull: while the cluster is down, the output spools to a 2
// MiB disk three times too small for what it is given. The oldest flows
// are dropped and counted as disk_full, the newest reach the cluster once
// it is back, and every flow written is accounted for exactly once:
// written = indexed + replayed + dropped; the outage line says the same.
func TestOutputDiskFull(t *testing.T) {
	target := testutil.Elasticsearch(t)
	disk := smallFilesystem(t, 2<<20)
	day := time.Date(2001, 4, 1, 0, 0, 0, 0, time.UTC)
	c, index := freshDayIndex(t, target, day)
	proxy, down := downProxy(t, target)
	recs, _ := genRecords(8000, day, 41)
	o, logs := newWatchedOutput(t, []string{proxy}, disk, func(c *Configuration) {
		c.ReplayBackoffMax = time.Second
	})
	o.spool.segBytes = 128 << 10 // the default bound's segments (16 MiB) would not fit this disk
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	defer o.Stop()
	defer func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs)
		}
	}()
	down.Store(true)
	// The first documents go through the queue; once they failed and sit in
	// the spool, every later one goes straight to its tail, in order.
	writeAll(t, o, recs[:100], 100)
	waitFor(t, "the first documents in the spool", 30*time.Second, func() bool {
		docs, _ := o.spool.Stats()
		return docs == 100
	})
	writeAll(t, o, recs[100:], 100)
	dropped := droppedMetric(o, dropDiskFull)
	if dropped == 0 {
		t.Fatalf("nothing dropped: the disk did not fill\n%s", logs)
	}
	for _, r := range dropReasons {
		if n := droppedMetric(o, r); r != dropDiskFull && n != 0 {
			t.Errorf("%v documents dropped as %s", n, r)
		}
	}
	if docs, _ := o.spool.Stats(); docs+int64(dropped) != int64(len(recs)) {
		t.Errorf("spool holds %d + dropped %v != %d written", docs, dropped, len(recs))
	}
	if !strings.Contains(logs.String(), "reason=disk_full") {
		t.Errorf("no log line about the full disk:\n%s", logs)
	}

	down.Store(false)
	line := waitLog(t, logs, "Elasticsearch outage over", time.Minute)
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	kept := len(recs) - int(dropped)
	if n := count(t, c, index, ""); n != kept {
		t.Errorf("index holds %d documents, want the %d kept", n, kept)
	}
	newest := fmt.Sprintf(`{"query":{"range":{"@timestamp":{"gte":%d}}}}`, recs[len(recs)-kept].End.UnixMilli())
	if n := count(t, c, index, newest); n != kept {
		t.Errorf("%d of the %d documents indexed are the newest %d written", n, kept, kept)
	}
	indexed, replayed := metric(o, "indexed"), metric(o, "replayed")
	if indexed+replayed+dropped != float64(len(recs)) {
		t.Errorf("indexed %v + replayed %v + dropped %v != %d written", indexed, replayed, dropped, len(recs))
	}
	if line["replayed"] != fmt.Sprint(replayed) || line["lost"] != fmt.Sprint(dropped) || line["spooled"] != fmt.Sprint(metric(o, "spooled")) {
		t.Errorf("outage line %v: want replayed=%v lost=%v spooled=%v", line, replayed, dropped, metric(o, "spooled"))
	}
}
