package ring

import (
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/spanflow/spanflow/internal/reporter"
)

// Configuration of a ring.
type Configuration struct {
	Dir     string
	Size    int64 // bytes the directory's segments may take at most
	SnapLen int   // bytes kept of each frame; 0 keeps them whole
	Codec   Codec
	// MinFree is the free space (bytes) the ring leaves on its file
	// system: below it, the oldest segments go even when the ring is
	// under its size.
	MinFree int64
	// BlockSize is the raw bytes of frames per block (DefaultBlockSize).
	BlockSize int
	// FlushAfter sends a block that is not full once its first frame is
	// this old, so that a quiet link's frames can be queried soon.
	FlushAfter time.Duration
}

// Defaults.
const (
	DefaultBlockSize  = 1 << 20
	DefaultFlushAfter = 5 * time.Second
	// maxFrame is the most kept of a frame (a pcap file's snap length).
	maxFrame = 262144
	// MinSize is the smallest ring: a few blocks in each of a few segments.
	MinSize = 16 << 20
	// buffersPerAppender is how many blocks each capture worker fills
	// while the writer is behind; past them, frames are dropped.
	buffersPerAppender = 16
)

// Validate checks the configuration.
func (c Configuration) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("packet ring: no directory"))
	}
	if c.Size < MinSize {
		errs = append(errs, fmt.Errorf("packet ring size %d bytes: must be at least %d MiB", c.Size, MinSize>>20))
	}
	if c.SnapLen < 0 || c.SnapLen > 262144 {
		errs = append(errs, fmt.Errorf("packet ring snap length %d: must be from 0 (whole frames) to 262144", c.SnapLen))
	}
	if c.MinFree < 0 {
		errs = append(errs, errors.New("packet ring free-space floor: must not be negative"))
	}
	return errors.Join(errs...)
}

func (c Configuration) blockSize() int {
	if c.BlockSize > 0 {
		return c.BlockSize
	}
	return DefaultBlockSize
}

// segmentSize is where a segment is closed and a new one begun: an
// eighth of the ring, so that dropping the oldest frees an eighth.
func (c Configuration) segmentSize() int64 {
	return max(c.Size/8, int64(2*c.blockSize()))
}

// Stats are the ring's counters.
type Stats struct {
	Frames, Dropped            uint64 // frames kept; frames dropped (the writer was behind, or a block could not be written)
	Blocks                     uint64
	RawBytes, StoredBytes      uint64 // records before and after compression, written
	IndexBytes                 uint64 // block headers and keys written
	SegmentsRemoved            uint64 // oldest segments removed to stay within size or above the free-space floor (pinned ones stay)
	BytesRemoved               uint64
	WriteErrors                uint64
	DiskBytes                  int64 // what the ring's segments take now
	OldestTimestamp, Truncated int64 // first frame kept; newest frame removed (0: none)
}

// Ring writes frames to segment files under a directory. Each capture
// worker appends through an Appender of its own; one writer goroutine
// compresses and writes the blocks they fill.
type Ring struct {
	cfg  Configuration
	log  *reporter.Limited
	full chan *block

	// The writer goroutine's state.
	enc      *zstd.Encoder
	seq      uint64
	cur      *os.File
	curSeg   *segmentInfo
	segments []*segmentInfo // oldest first; the last is cur when open
	buf      []byte
	// pinsLockMissed: the last wait for the pins lock ran out. The next
	// removal only tries it, without waiting, until it is got again: a
	// holder that never lets go (a stopped spanflow pcap pin) otherwise
	// stopped the writer for pinsLockWait at every segment removed.
	pinsLockMissed bool
	pinsLockWaits  int // waits for the pins lock that ran out (tests)

	mu    sync.Mutex
	stats Stats
	drops atomic.Uint64
	done  chan struct{}
}

type segmentInfo struct {
	path        string
	seq         uint64
	size        int64
	first, last int64
}

type block struct {
	raw         []byte
	keys        []uint32
	packets     uint32
	first, last int64
	started     time.Time
	free        chan *block
}

func (b *block) reset() {
	b.raw, b.keys, b.packets, b.first, b.last = b.raw[:0], b.keys[:0], 0, 0, 0
}

// Open opens the ring's directory (creating it), takes stock of the
// segments already there (the oldest go first when they are over size) and
// starts the writer. Writing goes on in a new segment.
func Open(r *reporter.Reporter, cfg Configuration) (*Ring, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("packet ring: %w", err)
	}
	g := &Ring{cfg: cfg, log: reporter.NewLimited(r.Log, 10*time.Second), full: make(chan *block, 256), done: make(chan struct{})}
	segs, err := scanDir(cfg.Dir, func(string) {})
	if err != nil {
		return nil, err
	}
	for _, s := range segs {
		g.segments = append(g.segments, &segmentInfo{path: s.Path, seq: s.Seq, size: s.Size, first: s.First, last: s.Last})
		g.seq = max(g.seq, s.Seq)
	}
	g.stats.Truncated = readTruncated(cfg.Dir)
	if cfg.Codec == CodecZstd {
		g.enc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
		if err != nil {
			return nil, fmt.Errorf("packet ring: %w", err)
		}
	}
	g.updateDisk()
	g.metrics(r)
	go g.write()
	return g, nil
}

func (g *Ring) metrics(r *reporter.Reporter) {
	f := r.Factory("packet_ring")
	stat := func(get func(Stats) float64) func() float64 {
		return func() float64 { return get(g.Stats()) }
	}
	f.CounterFunc("frames_total", "Frames written to the packet ring.", stat(func(s Stats) float64 { return float64(s.Frames) }))
	f.CounterFunc("dropped_frames_total", "Frames not kept: the ring's writer was behind (disk slower than the traffic), or a block could not be written.", stat(func(s Stats) float64 { return float64(s.Dropped) }))
	f.CounterFunc("raw_bytes_total", "Bytes of frame records written, before compression.", stat(func(s Stats) float64 { return float64(s.RawBytes) }))
	f.CounterFunc("stored_bytes_total", "Bytes of frame records written, after compression.", stat(func(s Stats) float64 { return float64(s.StoredBytes) }))
	f.CounterFunc("index_bytes_total", "Bytes of block headers and flow keys written.", stat(func(s Stats) float64 { return float64(s.IndexBytes) }))
	f.CounterFunc("segments_removed_total", "Oldest segments removed to keep the ring within its size or the disk above its free-space floor.", stat(func(s Stats) float64 { return float64(s.SegmentsRemoved) }))
	f.CounterFunc("write_errors_total", "Blocks that could not be written (their frames are lost).", stat(func(s Stats) float64 { return float64(s.WriteErrors) }))
	f.GaugeFunc("disk_bytes", "Bytes the ring's segments take on disk.", stat(func(s Stats) float64 { return float64(s.DiskBytes) }))
}

// Stats returns the counters so far.
func (g *Ring) Stats() Stats {
	g.mu.Lock()
	s := g.stats
	g.mu.Unlock()
	s.Dropped = g.drops.Load()
	return s
}

// Appender is one capture worker's way into the ring; it is not safe for
// concurrent use. Append copies the frame and never blocks: when every
// block buffer waits for the writer, frames are dropped and counted.
type Appender struct {
	g    *Ring
	free chan *block
	cur  *block
	// Wait makes Append wait for the writer instead of dropping: for a
	// capture file, whose reading can wait (a live capture cannot).
	Wait bool
}

// NewAppender returns an appender with block buffers of its own.
func (g *Ring) NewAppender() *Appender {
	a := &Appender{g: g, free: make(chan *block, buffersPerAppender)}
	for range buffersPerAppender {
		a.free <- &block{raw: make([]byte, 0, g.cfg.blockSize()+recordHeaderSize+65536), free: a.free}
	}
	return a
}

// Append keeps one frame: its capture time, length on the wire, link type,
// observation point and flow key (0: none).
func (a *Appender) Append(ts int64, wire int, link uint32, obs uint16, key uint64, data []byte) {
	if a.cur == nil {
		select {
		case a.cur = <-a.free:
			a.cur.started = time.Now()
		default:
			if a.Wait {
				a.cur = <-a.free
				a.cur.started = time.Now()
				break
			}
			a.g.drops.Add(1)
			a.g.log.Warn("ring-drop", "packet ring: the disk is slower than the traffic, frames are dropped", "dropped", a.g.drops.Load())
			return
		}
	}
	if n := a.g.cfg.SnapLen; n > 0 && len(data) > n {
		data = data[:n]
	}
	if len(data) > maxFrame {
		data = data[:maxFrame]
	}
	b := a.cur
	if b.packets == 0 {
		b.first, b.last = ts, ts
	}
	b.first, b.last = min(b.first, ts), max(b.last, ts)
	b.raw = appendRecord(b.raw, ts, key, wire, link, obs, data)
	b.packets++
	if key != 0 {
		b.keys = append(b.keys, indexKey(key))
	}
	if len(b.raw) >= a.g.cfg.blockSize() {
		a.send()
	}
}

func (a *Appender) send() {
	a.g.full <- a.cur // never blocks while fewer than 64 appenders share the ring: each has buffersPerAppender blocks at most in flight
	a.cur = nil
}

// Tick sends a block that is not full once it is older than FlushAfter;
// a live capture calls it every second.
func (a *Appender) Tick(now time.Time) {
	after := a.g.cfg.FlushAfter
	if after == 0 {
		after = DefaultFlushAfter
	}
	if a.cur != nil && a.cur.packets > 0 && now.Sub(a.cur.started) >= after {
		a.send()
	}
}

// Flush sends the block being filled.
func (a *Appender) Flush() {
	if a.cur != nil && a.cur.packets > 0 {
		a.send()
	}
}

// Close waits until every block sent is written, and closes the segment.
// The appenders must be flushed and no longer used.
func (g *Ring) Close() error {
	close(g.full)
	<-g.done
	if g.enc != nil {
		g.enc.Close()
	}
	return nil
}

func (g *Ring) write() {
	defer close(g.done)
	for b := range g.full {
		if err := g.writeBlock(b); err != nil {
			g.mu.Lock()
			g.stats.WriteErrors++
			g.mu.Unlock()
			g.drops.Add(uint64(b.packets))
			g.log.Warn("ring-write", "packet ring: cannot write a block, its frames are lost", "frames", b.packets, "err", err)
		}
		b.reset()
		b.free <- b
	}
	if g.cur != nil {
		g.cur.Close()
	}
}

// writeBlock compresses a block and writes it, header, keys and body, with
// one write, after making room for it.
func (g *Ring) writeBlock(b *block) error {
	slices.Sort(b.keys)
	keys := slices.Compact(b.keys)
	h := blockHeader{codec: g.cfg.Codec, packets: b.packets, keys: uint32(len(keys)), raw: uint32(len(b.raw)), first: b.first, last: b.last}
	out := g.buf[:0]
	out = append(out, make([]byte, blockHeaderSize)...)
	out = appendIndex(out, keys)
	bodyAt := len(out)
	h.index = uint32(bodyAt - blockHeaderSize)
	if g.enc != nil {
		out = g.enc.EncodeAll(b.raw, out)
	} else {
		out = append(out, b.raw...)
	}
	h.stored = uint32(len(out) - bodyAt)
	h.crc = crc32.Checksum(out[blockHeaderSize:], castagnoli)
	h.put(out)
	g.buf = out
	if err := g.makeRoom(int64(len(out))); err != nil {
		return err
	}
	if _, err := g.cur.Write(out); err != nil {
		// A partial write leaves a torn block that readers skip; go on
		// in a new segment.
		g.cur.Close()
		g.cur = nil
		return err
	}
	s := g.curSeg
	if s.size == segmentHeaderSize {
		s.first, s.last = h.first, h.last
	}
	s.first, s.last = min(s.first, h.first), max(s.last, h.last)
	s.size += int64(len(out))
	g.mu.Lock()
	g.stats.Frames += uint64(b.packets)
	g.stats.Blocks++
	g.stats.RawBytes += uint64(len(b.raw))
	g.stats.StoredBytes += uint64(h.stored)
	g.stats.IndexBytes += uint64(blockHeaderSize) + uint64(h.index)
	g.mu.Unlock()
	g.updateDisk()
	return nil
}

// pinsLockWait is how long the writer waits for the pins lock before it
// removes segments without it.
var pinsLockWait = 2 * time.Second

// makeRoom removes the oldest segments until n more bytes fit within the
// size and above the free-space floor, and opens a new segment when there
// is none or the current one is full.
func (g *Ring) makeRoom(n int64) error {
	if g.cur != nil && g.curSeg.size+n > g.cfg.segmentSize() {
		g.cur.Close()
		g.cur = nil
	}
	extra := n
	if g.cur == nil {
		extra += segmentHeaderSize
	}
	// The pins are read only when a segment must go (once a segment's
	// worth of blocks on a full ring), not for every block: with 100,000
	// pins reading them took 32 ms a block.
	var pins []Pin
	read := false
	// The pins are read, and the segments removed, under the pins lock:
	// a pin set meanwhile is checked against what went (AddPin).
	unlock := func() {}
	defer func() { unlock() }()
	for g.disk()+extra > g.cfg.Size || g.lowOnSpace(extra) {
		if !read {
			read = true
			wait := pinsLockWait
			if g.pinsLockMissed {
				wait = 0
			}
			var ok bool
			unlock, ok = lockPinsWaiting(g.cfg.Dir, wait)
			if g.pinsLockMissed = !ok; !ok {
				if wait > 0 {
					g.pinsLockWaits++
				}
				g.log.Warn("ring-pins-lock", "packet ring: the pins lock is held too long (a stopped spanflow pcap pin?); removing segments without it: a pin set now may cover removed time")
			}
			var err error
			if pins, err = Pins(g.cfg.Dir); err != nil {
				g.log.Warn("ring-pins", "packet ring: cannot read the pins; every segment may go", "err", err)
			}
		}
		// The oldest segment that no pin holds goes first.
		i := slices.IndexFunc(g.segments, func(s *segmentInfo) bool {
			return s.size == segmentHeaderSize || !pinned(pins, s.first, s.last)
		})
		if i < 0 {
			return errors.New("every segment is pinned and the ring is full: unpin some (spanflow pcap unpin)")
		}
		old := g.segments[i]
		if old == g.curSeg && g.cur != nil {
			g.cur.Close()
			g.cur = nil
			extra = n + segmentHeaderSize
		}
		if err := os.Remove(old.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove oldest segment: %w", err)
		}
		g.segments = slices.Delete(g.segments, i, i+1)
		g.mu.Lock()
		g.stats.SegmentsRemoved++
		g.stats.BytesRemoved += uint64(old.size)
		g.stats.Truncated = max(g.stats.Truncated, old.last)
		truncated := g.stats.Truncated
		g.mu.Unlock()
		if err := writeTruncated(g.cfg.Dir, truncated); err != nil {
			g.log.Warn("ring-truncated", "packet ring: cannot record what was removed", "err", err)
		}
	}
	unlock()
	unlock = func() {}
	if g.cur == nil {
		g.seq++
		path := filepath.Join(g.cfg.Dir, fmt.Sprintf("%016d%s", g.seq, segmentSuffix))
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
		if err != nil {
			return fmt.Errorf("new segment: %w", err)
		}
		var hdr [segmentHeaderSize]byte
		copy(hdr[:], segmentMagic)
		putInt64(hdr[8:], time.Now().UnixNano())
		if _, err := f.Write(hdr[:]); err != nil {
			f.Close()
			os.Remove(path)
			return fmt.Errorf("new segment: %w", err)
		}
		g.cur = f
		g.curSeg = &segmentInfo{path: path, seq: g.seq, size: segmentHeaderSize}
		g.segments = append(g.segments, g.curSeg)
	}
	return nil
}

func (g *Ring) disk() int64 {
	var n int64
	for _, s := range g.segments {
		n += s.size
	}
	return n
}

func (g *Ring) updateDisk() {
	d := g.disk()
	var oldest int64
	for _, s := range g.segments {
		if s.size > segmentHeaderSize {
			oldest = s.first
			break
		}
	}
	g.mu.Lock()
	g.stats.DiskBytes, g.stats.OldestTimestamp = d, oldest
	g.mu.Unlock()
}

func putInt64(b []byte, v int64) {
	for i := range 8 {
		b[i] = byte(uint64(v) >> (8 * i))
	}
}
