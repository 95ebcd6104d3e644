package elasticsearch

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// dropReason says why flow documents were lost: each lost document is
// counted under exactly one reason, once.
type dropReason string

const (
	dropSpoolFull       dropReason = "spool_full"        // the spool reached its byte bound
	dropDiskFull        dropReason = "disk_full"         // the spool's filesystem is full (ENOSPC, EDQUOT)
	dropSpoolWrite      dropReason = "spool_write"       // any other error writing the spool
	dropSpoolCorrupt    dropReason = "spool_corrupt"     // a torn or malformed spool line
	dropDeadLetterWrite dropReason = "dead_letter_write" // the dead-letter file could not be written
	dropDeadLetterFull  dropReason = "dead_letter_full"  // the dead-letter file reached its byte bound
)

var dropReasons = []dropReason{dropSpoolFull, dropDiskFull, dropSpoolWrite, dropSpoolCorrupt, dropDeadLetterWrite}

// item is one document on its way to the cluster.
type item struct {
	index string
	id    []byte // in Write's chunk or the spool's read buffer, as doc
	doc   []byte
}

// spool keeps documents the cluster could not take yet, on disk, in segment
// files replayed oldest first. Each line of a segment is
// "index<TAB>id<TAB>document"; documents are single-line JSON and neither
// the index nor the id holds a tab. Writes go straight to the file (no
// user-space buffer), so a process killed with -9 loses nothing it already
// spooled; a torn last line is skipped and counted when read.
type spool struct {
	dir      string
	lock     *os.File // held open: the directory is this process's (spoollock.go)
	maxBytes int64
	segBytes int64
	onDrop   func(reason dropReason, docs int) // documents lost, counted once each

	mu   sync.Mutex
	segs []*segment // oldest first; only the last may be open
	// nsegs is len(segs), for Empty without the lock: every flow
	// document the output writes asks, and the lock can be held across
	// disk writes (a partly replayed segment rewritten: 70-206 ms for
	// 109,000 documents, measured in an audit).
	nsegs  atomic.Int64
	open   *os.File
	next   uint64
	bytes  int64
	docs   int64
	notify chan struct{}

	// Sealed segments are synced to disk on goroutines of their own, at
	// most maxSyncs at a time, so that Append (the pipeline's worker,
	// during an outage) does not wait for a 16 MiB fsync at every
	// rotation (11-15 ms, measured in an audit). Past maxSyncs a seal
	// syncs in place, which slows the writers to the disk's pace.
	syncs       chan struct{}
	syncing     sync.WaitGroup
	syncFile    func(*os.File) error // (*os.File).Sync; tests replace it
	onSyncError func(error)          // a sealed segment could not be synced or closed
}

// maxSyncs bounds the seals syncing at once.
const maxSyncs = 2

type segment struct {
	path   string
	size   int64
	docs   int
	busy   bool // being replayed: not dropped, not appended to
	sealed bool
}

const segmentSuffix = ".spool"

func openSpool(dir string, maxBytes int64, onDrop func(dropReason, int)) (*spool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create spool directory %s: %w", dir, err)
	}
	// An unwritable spool would surface only at the first outage, as lost
	// documents: find out now.
	probe, err := os.CreateTemp(dir, ".writable-*")
	if err != nil {
		return nil, fmt.Errorf("spool directory %s is not writable: %w", dir, err)
	}
	probe.Close()
	_ = os.Remove(probe.Name())
	lock, err := lockSpoolDir(dir)
	if err != nil {
		return nil, err
	}
	s := &spool{dir: dir, lock: lock, maxBytes: maxBytes, segBytes: min(max(maxBytes/8, 64<<10), 16<<20),
		onDrop: onDrop, notify: make(chan struct{}, 1), syncs: make(chan struct{}, maxSyncs),
		syncFile: (*os.File).Sync}
	entries, err := os.ReadDir(dir)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("read spool directory: %w", err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), segmentSuffix+".tmp") {
			// A rewrite a crash interrupted: its segment is intact, and on a
			// full disk the space is needed.
			_ = os.Remove(filepath.Join(dir, e.Name()))
			continue
		}
		name, ok := strings.CutSuffix(e.Name(), segmentSuffix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		n, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		path := filepath.Join(dir, e.Name())
		size, docs, err := countLines(path)
		if err != nil {
			lock.Close()
			return nil, fmt.Errorf("read spool segment: %w", err)
		}
		s.segs = append(s.segs, &segment{path: path, size: size, docs: docs, sealed: true})
		s.nsegs.Store(int64(len(s.segs)))
		s.bytes += size
		s.docs += int64(docs)
		s.next = max(s.next, n+1)
	}
	// ReadDir sorts by name and names are zero-padded: oldest first.
	if len(s.segs) > 0 {
		s.signal()
	}
	return s, nil
}

func countLines(path string) (int64, int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	return int64(len(b)), bytes.Count(b, []byte{'\n'}), nil
}

func (s *spool) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Empty reports whether nothing waits in the spool.
func (s *spool) Empty() bool { return s.nsegs.Load() == 0 }

// Stats returns the documents and bytes in the spool.
func (s *spool) Stats() (docs, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.docs, s.bytes
}

// Append writes items at the end of the spool. When the spool would grow
// past its bound, or its filesystem is full, the oldest segments are
// dropped (and counted) until the items fit; when nothing is left to drop,
// or writing fails for another reason, the items themselves are dropped
// and counted, and the error says why.
func (s *spool) Append(items []item) error {
	if len(items) == 0 {
		return nil
	}
	buf := encodeLines(items)
	s.mu.Lock()
	defer s.mu.Unlock()
	need := int64(len(buf))
	for s.bytes+need > s.maxBytes {
		if !s.dropOldest(dropSpoolFull) {
			s.onDrop(dropSpoolFull, len(items))
			return fmt.Errorf("spool full: %d documents dropped", len(items))
		}
	}
	for {
		stored, err := s.write(buf, len(items))
		if err == nil {
			s.signal()
			return nil
		}
		if stored > 0 {
			// Rare: a partial write that could not be cut off stays.
			s.signal()
			if items = items[stored:]; len(items) == 0 {
				return nil
			}
			buf = encodeLines(items)
		}
		if !diskFull(err) {
			s.onDrop(dropSpoolWrite, len(items))
			return fmt.Errorf("%w: %d documents dropped", err, len(items))
		}
		// The filesystem filled up before the bound: the same policy,
		// the oldest documents go first.
		if !s.dropOldest(dropDiskFull) {
			s.onDrop(dropDiskFull, len(items))
			return fmt.Errorf("%w: nothing older left to drop, %d documents dropped", err, len(items))
		}
	}
}

// diskFull tells a full filesystem (or quota) from other write errors.
func diskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// write appends buf, the lines of docs documents, to the open segment,
// opening one when needed. On an error none of them is in the spool: a
// partial write (what a full disk leaves) is cut off again, so no torn line
// stays for the next write to follow. Only when that cut fails does the
// partial write stay; stored then says how many documents it holds (a
// torn last one included: reading counts it as spool_corrupt) and the
// segment is sealed.
func (s *spool) write(buf []byte, docs int) (stored int, err error) {
	need := int64(len(buf))
	last := s.last()
	if last == nil || last.sealed || last.busy || last.size+need > s.segBytes {
		if err := s.rotate(); err != nil {
			return 0, err
		}
		last = s.last()
	}
	n, err := s.open.Write(buf)
	if err == nil {
		last.size += need
		last.docs += docs
		s.bytes += need
		s.docs += int64(docs)
		return docs, nil
	}
	err = fmt.Errorf("write spool segment: %w", err)
	if n == 0 {
		return 0, err
	}
	if terr := s.open.Truncate(last.size); terr == nil {
		return 0, err
	}
	stored = bytes.Count(buf[:n], []byte{'\n'})
	if buf[n-1] != '\n' {
		stored++
	}
	last.size += int64(n)
	last.docs += stored
	s.bytes += int64(n)
	s.docs += int64(stored)
	s.seal()
	return stored, err
}

// encodeLines writes items as segment lines, "index<TAB>id<TAB>document\n"
// each; Read parses them back.
func encodeLines(items []item) []byte {
	var buf []byte
	for _, it := range items {
		buf = append(buf, it.index...)
		buf = append(buf, '\t')
		buf = append(buf, it.id...)
		buf = append(buf, '\t')
		buf = append(buf, it.doc...)
		buf = append(buf, '\n')
	}
	return buf
}

func (s *spool) last() *segment {
	if len(s.segs) == 0 {
		return nil
	}
	return s.segs[len(s.segs)-1]
}

// rotate seals the open segment and opens a new one.
func (s *spool) rotate() error {
	s.seal()
	path := filepath.Join(s.dir, fmt.Sprintf("%020d%s", s.next, segmentSuffix))
	s.next++
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("create spool segment: %w", err)
	}
	s.open = f
	s.segs = append(s.segs, &segment{path: path})
	s.nsegs.Store(int64(len(s.segs)))
	return nil
}

// seal ends writes to the open segment and syncs it (so that a sealed
// segment also survives a power loss) and closes it, on a goroutine of its
// own while fewer than maxSyncs are syncing, in place otherwise. Its
// documents are in the page cache from their write: replay reads them
// whether or not the sync is done.
func (s *spool) seal() {
	f := s.detach()
	if f == nil {
		return
	}
	select {
	case s.syncs <- struct{}{}:
		s.syncing.Add(1)
		go func() {
			defer s.syncing.Done()
			s.report(s.finish(f))
			<-s.syncs
		}()
	default:
		s.report(s.finish(f))
	}
}

// detach ends writes to the open segment, marks it sealed and returns its
// file, for the caller to sync and close; nil when none is open.
func (s *spool) detach() *os.File {
	f := s.open
	if f == nil {
		return nil
	}
	s.open = nil
	if last := s.last(); last != nil {
		last.sealed = true
	}
	return f
}

// report hands a sealed segment's sync or close error to onSyncError.
func (s *spool) report(err error) {
	if err != nil && s.onSyncError != nil {
		s.onSyncError(err)
	}
}

// finish syncs and closes a sealed segment's file. seal reports its error
// and goes on: the segment's documents stay in the spool and are replayed
// from the page cache; only a power loss before they are could lose them.
func (s *spool) finish(f *os.File) error {
	err := s.syncFile(f)
	if err != nil {
		err = fmt.Errorf("sync spool segment %s: %w", filepath.Base(f.Name()), err)
	}
	if cerr := f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close spool segment %s: %w", filepath.Base(f.Name()), cerr)
	}
	return err
}

// dropOldest removes the oldest segment not being replayed and counts its
// documents as dropped for reason. It reports whether that freed anything:
// an empty segment (just opened on a disk full of other files) is removed
// on the way but is no progress, or a full disk would loop for ever.
func (s *spool) dropOldest(reason dropReason) bool {
	for i := 0; i < len(s.segs); {
		seg := s.segs[i]
		if seg.busy {
			i++
			continue
		}
		if !seg.sealed {
			s.seal()
		}
		_ = os.Remove(seg.path)
		s.segs = slices.Delete(s.segs, i, i+1)
		s.nsegs.Store(int64(len(s.segs)))
		if seg.size == 0 {
			continue
		}
		s.bytes -= seg.size
		s.docs -= int64(seg.docs)
		s.onDrop(reason, seg.docs)
		return true
	}
	return false
}

// Take marks the oldest segment busy and returns it for replay (sealing it
// first when it is the one being written); nil when the spool is empty or its
// oldest segment is already being replayed.
func (s *spool) Take() *segment {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.segs) == 0 || s.segs[0].busy {
		return nil
	}
	seg := s.segs[0]
	if !seg.sealed {
		s.seal()
	}
	seg.busy = true
	return seg
}

// Read returns the documents of a segment taken for replay, and how many
// lines were torn or malformed.
func (s *spool) Read(seg *segment) ([]item, int, error) {
	f, err := os.Open(seg.path)
	if err != nil {
		return nil, 0, fmt.Errorf("open spool segment: %w", err)
	}
	defer f.Close()
	var items []item
	bad := 0
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			parts := bytes.SplitN(line[:len(line)-1], []byte{'\t'}, 3)
			if len(parts) == 3 && len(parts[0]) > 0 && len(parts[1]) > 0 && len(parts[2]) > 1 && parts[2][0] == '{' {
				items = append(items, item{index: string(parts[0]), id: parts[1], doc: parts[2]})
			} else {
				bad++
			}
		} else if len(line) > 0 {
			bad++ // torn last line: the process died while writing it
		}
		if err != nil {
			break
		}
	}
	return items, bad, nil
}

// Done ends the replay of a segment: remaining holds the documents that
// still could not be indexed (they stay, in order, at the head of the
// spool); when none remain the segment is removed. When the filesystem is
// too full to rewrite the segment, the remaining documents — the oldest
// in the spool — are dropped and counted as disk_full, as the policy says.
func (s *spool) Done(seg *segment, remaining []item) error {
	// The segment is busy (being replayed): nothing else writes, drops or
	// appends to it, so its rewrite happens outside the lock, which every
	// Append takes (a rewrite of 109,000 documents took 70-206 ms).
	var buf []byte
	var err error
	if len(remaining) > 0 {
		buf = encodeLines(remaining)
		tmp := seg.path + ".tmp"
		err = os.WriteFile(tmp, buf, 0o640)
		if err == nil {
			err = os.Rename(tmp, seg.path)
		}
		if err != nil {
			_ = os.Remove(tmp)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.Index(s.segs, seg)
	seg.busy = false
	if i < 0 {
		return nil
	}
	remove := func() error {
		s.segs = slices.Delete(s.segs, i, i+1)
		s.nsegs.Store(int64(len(s.segs)))
		s.bytes -= seg.size
		s.docs -= int64(seg.docs)
		if err := os.Remove(seg.path); err != nil {
			return fmt.Errorf("remove replayed spool segment: %w", err)
		}
		return nil
	}
	if len(remaining) == 0 {
		return remove()
	}
	if err != nil {
		if diskFull(err) {
			s.onDrop(dropDiskFull, len(remaining))
			return errors.Join(fmt.Errorf("rewrite spool segment: %w: %d documents dropped", err, len(remaining)), remove())
		}
		return fmt.Errorf("rewrite spool segment: %w", err)
	}
	s.bytes += int64(len(buf)) - seg.size
	s.docs += int64(len(remaining) - seg.docs)
	seg.size, seg.docs = int64(len(buf)), len(remaining)
	return nil
}

// Release ends a replay that did not happen: the segment stays as it was.
func (s *spool) Release(seg *segment) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seg.busy = false
}

// Close seals the segment being written and waits until every sealed
// segment is synced; the spool's files stay for the next start to replay.
// Then it lets the directory go to another process. It returns the first
// sync or close error of its own segment.
func (s *spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if f := s.detach(); f != nil {
		err = s.finish(f)
	}
	s.syncing.Wait()
	if s.lock != nil {
		_ = s.lock.Close()
		s.lock = nil
	}
	return err
}
