package elasticsearch

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/flow"
)

func testItems(from, n int) []item {
	out := make([]item, n)
	for i := range out {
		out[i] = item{index: "spanflow-flows-2001.01.01", id: fmt.Appendf(nil, "id%06d", from+i),
			doc: []byte(fmt.Sprintf(`{"n":%d,"pad":"%0100d"}`, from+i, 0))}
	}
	return out
}

func ids(items []item) []string {
	var out []string
	for _, it := range items {
		out = append(out, string(it.id))
	}
	return out
}

// TestSpoolOrderAndPersistence appends, replays oldest first across
// segments, keeps what failed, and finds everything again after a reopen.
func TestSpoolOrderAndPersistence(t *testing.T) {
	dir := t.TempDir()
	dropped := 0
	s, err := openSpool(dir, 1<<20, func(_ dropReason, n int) { dropped += n })
	if err != nil {
		t.Fatal(err)
	}
	s.segBytes = 4096 // several segments
	var want []string
	for i := 0; i < 100; i += 10 {
		its := testItems(i, 10)
		if err := s.Append(its); err != nil {
			t.Fatal(err)
		}
		want = append(want, ids(its)...)
	}
	if docs, _ := s.Stats(); docs != 100 {
		t.Fatalf("spool holds %d documents, want 100", docs)
	}
	// Replay the first segment, failing its last two documents.
	seg := s.Take()
	items, bad, err := s.Read(seg)
	if err != nil || bad != 0 {
		t.Fatalf("read: %v, %d bad", err, bad)
	}
	if err := s.Done(seg, items[len(items)-2:]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen: the failed two come first, then the rest, in order.
	s, err = openSpool(dir, 1<<20, func(_ dropReason, n int) { dropped += n })
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for seg := s.Take(); seg != nil; seg = s.Take() {
		items, _, err := s.Read(seg)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ids(items)...)
		if err := s.Done(seg, nil); err != nil {
			t.Fatal(err)
		}
	}
	wantAfter := append(append([]string{}, want[len(items)-2:len(items)]...), want[len(items):]...)
	if fmt.Sprint(got) != fmt.Sprint(wantAfter) {
		t.Errorf("replay order:\n got %v\nwant %v", got, wantAfter)
	}
	if !s.Empty() || dropped != 0 {
		t.Errorf("after replay: empty=%t dropped=%d", s.Empty(), dropped)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"+segmentSuffix))
	if len(left) != 0 {
		t.Errorf("segment files left: %v", left)
	}
}

// TestSpoolBoundDropsOldestAndCounts fills a spool past its bound: the
// oldest documents go, each counted, and the newest stay.
func TestSpoolBoundDropsOldestAndCounts(t *testing.T) {
	dropped := 0
	s, err := openSpool(t.TempDir(), 1<<20, func(_ dropReason, n int) { dropped += n })
	if err != nil {
		t.Fatal(err)
	}
	appended := 0
	for total := 0; total < 3<<20; appended += 100 {
		its := testItems(appended, 100)
		if err := s.Append(its); err != nil {
			t.Fatal(err)
		}
		total += 100 * (len(its[0].doc) + len(its[0].index) + len(its[0].id) + 3)
	}
	docs, bytes := s.Stats()
	if bytes > 1<<20 {
		t.Errorf("spool holds %d bytes, bound is %d", bytes, 1<<20)
	}
	if bytes < 1<<19 {
		t.Errorf("spool holds %d bytes: dropping more than needed to stay under %d", bytes, 1<<20)
	}
	if int(docs)+dropped != appended {
		t.Errorf("kept %d + dropped %d != appended %d: a document vanished uncounted", docs, dropped, appended)
	}
	if dropped == 0 {
		t.Error("nothing dropped from a spool written three times past its bound")
	}
	// The newest document is still there.
	var last string
	for seg := s.Take(); seg != nil; seg = s.Take() {
		items, _, _ := s.Read(seg)
		last = string(items[len(items)-1].id)
		_ = s.Done(seg, nil)
	}
	if want := fmt.Sprintf("id%06d", appended-1); last != want {
		t.Errorf("newest spooled document %s, want %s", last, want)
	}
}

// TestSpoolTornLine is what kill -9 in the middle of a write leaves: the
// torn line is skipped and counted, the rest replays.
func TestSpoolTornLine(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir, 1<<20, func(dropReason, int) {})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(testItems(0, 3)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*"+segmentSuffix))
	f, _ := os.OpenFile(segs[0], os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("spanflow-flows-2001.01.01\tidtorn\t{\"n\":")
	f.Close()
	s, err = openSpool(dir, 1<<20, func(dropReason, int) {})
	if err != nil {
		t.Fatal(err)
	}
	seg := s.Take()
	items, bad, err := s.Read(seg)
	if err != nil || len(items) != 3 || bad != 1 {
		t.Errorf("read torn segment: %d items, %d bad, %v; want 3, 1", len(items), bad, err)
	}
}

// TestDocumentID: the same flow gets the same id whenever it arrives; any
// identifying difference changes it.
func TestDocumentID(t *testing.T) {
	end := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	base := flow.Record{Kind: flow.KindIPFIX, ObserverIP: netip.MustParseAddr("192.0.2.1"), ObservationDomain: 7,
		Start: end.Add(-time.Second), End: end, Received: end.Add(time.Second),
		SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"),
		SrcPort: 1234, DstPort: 443, Proto: 6, Bytes: 1500, Packets: 3}
	id := DocumentID(&base)
	if len(id) != 22 {
		t.Errorf("id %q: want 22 base64url characters (128 bits)", id)
	}
	again := base
	again.Received = end.Add(time.Hour) // resent later
	again.Src.VSphere = &flow.VSphere{VMName: "vm"}
	if DocumentID(&again) != id {
		t.Error("receive time or enrichment changed the id of the same flow")
	}
	// Interface counter documents of one sFlow datagram differ only by
	// their interface and counters.
	c1, c2 := base, base
	c1.Counters = &flow.IfCounters{Index: 1, InOctets: 10}
	c2.Counters = &flow.IfCounters{Index: 2, InOctets: 10}
	if DocumentID(&c1) == DocumentID(&c2) || DocumentID(&c1) == id {
		t.Error("interface counter documents of two interfaces share an id")
	}
	e1, e2 := base, base
	e1.Exporter = &flow.ExporterStats{Datagrams: 1}
	e2.Exporter = &flow.ExporterStats{Datagrams: 2}
	if DocumentID(&e1) == DocumentID(&e2) {
		t.Error("two different exporter statistics documents share an id")
	}
	for name, mod := range map[string]func(*flow.Record){
		"bytes":    func(r *flow.Record) { r.Bytes++ },
		"packets":  func(r *flow.Record) { r.Packets++ },
		"end":      func(r *flow.Record) { r.End = r.End.Add(time.Millisecond) },
		"src port": func(r *flow.Record) { r.SrcPort++ },
		"exporter": func(r *flow.Record) { r.ObserverIP = netip.MustParseAddr("192.0.2.2") },
		"domain":   func(r *flow.Record) { r.ObservationDomain++ },
		"dst":      func(r *flow.Record) { r.DstAddr = netip.MustParseAddr("::1") },
		"in if":    func(r *flow.Record) { r.InIf = 3 },
	} {
		r := base
		mod(&r)
		if DocumentID(&r) == id {
			t.Errorf("changing %s kept the id", name)
		}
	}
}

// TestSpoolEmptyWithoutTheLock: whether the spool is empty is known
// while the spool's lock is held (a partly replayed segment being
// rewritten, a segment fsynced), so that the documents the pipeline
// writes meanwhile do not wait for the disk; and it follows the segments.
func TestSpoolEmptyWithoutTheLock(t *testing.T) {
	s, err := openSpool(t.TempDir(), 1<<20, func(dropReason, int) {})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Empty() {
		t.Fatal("a new spool is not empty")
	}
	if err := s.Append(testItems(0, 10)); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock() // as a long disk write holds it
	answered := make(chan bool, 1)
	go func() { answered <- s.Empty() }()
	select {
	case empty := <-answered:
		if empty {
			t.Error("the spool holding 10 documents says it is empty")
		}
	case <-time.After(5 * time.Second):
		t.Error("Empty waited for the spool's lock")
	}
	s.mu.Unlock()
	seg := s.Take()
	if seg == nil {
		t.Fatal("nothing to replay")
	}
	if err := s.Done(seg, nil); err != nil {
		t.Fatal(err)
	}
	if !s.Empty() {
		t.Error("the spool is not empty once its one segment was replayed")
	}
}

// TestSpoolSealsWithoutWaiting holds segments' syncs: Append still
// rotates through maxSyncs segments without waiting, the next rotation
// waits for its sync (the bound), replay reads segments whose sync is not
// done, and Close waits for every sync.
func TestSpoolSealsWithoutWaiting(t *testing.T) {
	s, err := openSpool(t.TempDir(), 1<<20, func(dropReason, int) { t.Error("dropped") })
	if err != nil {
		t.Fatal(err)
	}
	s.segBytes = 4096
	// The first maxSyncs syncs wait for held, the next one for third.
	held, third := make(chan struct{}), make(chan struct{})
	var calls, synced atomic.Int32
	s.syncFile = func(f *os.File) error {
		switch n := calls.Add(1); {
		case n <= maxSyncs:
			<-held
		case n == maxSyncs+1:
			<-third
		}
		synced.Add(1)
		return f.Sync()
	}
	var syncErrs atomic.Int32
	s.onSyncError = func(error) { syncErrs.Add(1) }
	appendN := func(from int) <-chan error {
		done := make(chan error, 1)
		go func() { done <- s.Append(testItems(from, 30)) }() // over 4 KiB: a segment each
		return done
	}
	defer close(held)
	// The first Append opens a segment; the next maxSyncs each seal one.
	for i := range maxSyncs + 1 {
		select {
		case err := <-appendN(30 * i):
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			close(third)
			t.Fatalf("Append %d waited for a segment's sync", i)
		}
	}
	// Each seal's goroutine takes its place in syncFile before the next
	// rotation: a goroutine late to start would otherwise take the
	// maxSyncs+1th call, the in-place sync one of the held ones, and the
	// test would wait for ever (it once hung CI for 27 minutes).
	for deadline := time.Now().Add(10 * time.Second); calls.Load() < maxSyncs; {
		if time.Now().After(deadline) {
			close(third)
			t.Fatalf("%d of %d sealed segments' syncs started", calls.Load(), maxSyncs)
		}
		time.Sleep(time.Millisecond)
	}
	// Replay reads a sealed segment whose sync has not happened.
	seg := s.Take()
	items, bad, err := s.Read(seg)
	if err != nil || bad != 0 || len(items) != 30 || string(items[0].id) != "id000000" {
		t.Fatalf("read a segment being synced: %d items, %d bad, %v", len(items), bad, err)
	}
	s.Release(seg)
	// With maxSyncs syncs held, the next rotation syncs in place.
	blocked := appendN(30 * (maxSyncs + 1))
	select {
	case err := <-blocked:
		t.Fatalf("Append returned (%v) with %d syncs held: the syncs are not bounded", err, maxSyncs)
	case <-time.After(100 * time.Millisecond):
	}
	close(third)
	select {
	case err := <-blocked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Append still waits once the in-place sync is released")
	}
	// Close seals the last segment and waits for the held syncs.
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) with %d syncs held", err, maxSyncs)
	case <-time.After(100 * time.Millisecond):
	}
	held <- struct{}{}
	held <- struct{}{}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if n := synced.Load(); n != maxSyncs+2 {
		t.Fatalf("%d segments synced by Close's return, want %d", n, maxSyncs+2)
	}
	if n := syncErrs.Load(); n != 0 {
		t.Fatalf("%d sync errors", n)
	}
	if docs, _ := s.Stats(); docs != 30*(maxSyncs+2) {
		t.Fatalf("spool holds %d documents, want %d", docs, 30*(maxSyncs+2))
	}
}

// TestSpoolDirLocked: a spool directory is one spool's at a time; the
// second opening is refused with ErrSpoolInUse naming the directory and
// this process, and succeeds once the first is closed.
func TestSpoolDirLocked(t *testing.T) {
	dir := t.TempDir()
	first, err := openSpool(dir, 1<<20, func(dropReason, int) {})
	if err != nil {
		t.Fatal(err)
	}
	_, err = openSpool(dir, 1<<20, func(dropReason, int) {})
	if !errors.Is(err, ErrSpoolInUse) || !strings.Contains(err.Error(), dir) ||
		!strings.Contains(err.Error(), fmt.Sprintf("process %d", os.Getpid())) {
		t.Fatalf("second spool on %s: %v; want ErrSpoolInUse naming the directory and pid %d", dir, err, os.Getpid())
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second, err := openSpool(dir, 1<<20, func(dropReason, int) {})
	if err != nil {
		t.Fatalf("spool on %s after the first closed: %v", dir, err)
	}
	second.Close()
}
