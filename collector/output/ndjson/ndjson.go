// Package ndjson is the collector's NDJSON output: one flow document per
// line, exactly the document that would be indexed (flow.Encoder), to stdout
// or to a file rotated by size.
package ndjson

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/lifecycle"
	"github.com/spanflow/spanflow/internal/reporter"
)

// Configuration of the output.
type Configuration struct {
	// Path is the file to write; empty writes to the writer given to New
	// (stdout).
	Path string
	// MaxBytes rotates the file when the next write would make it larger
	// (Path → Path.1 → Path.2 ...); 0 never rotates. Only a regular file is
	// rotated: when Path is something else at open (/dev/null, a FIFO, a
	// terminal, or a symbolic link to one), it is written but never
	// renamed, whatever MaxBytes.
	MaxBytes int64
	// MaxFiles is how many rotated files are kept besides Path.
	MaxFiles int
	// FlushInterval bounds how long a document stays in the write buffer.
	FlushInterval time.Duration
}

// DefaultConfiguration writes to stdout, flushing every 200 ms.
func DefaultConfiguration() Configuration {
	return Configuration{MaxBytes: 256 << 20, MaxFiles: 5, FlushInterval: 200 * time.Millisecond}
}

// maxFiles bounds Configuration.MaxFiles.
const maxFiles = 1000

// Validate checks the configuration.
func (c Configuration) Validate() error {
	switch {
	case c.MaxBytes < 0:
		return errors.New("ndjson max bytes must not be negative")
	case c.MaxFiles < 0:
		return errors.New("ndjson max files must not be negative")
	case c.MaxFiles > maxFiles:
		// Rotation renames every kept file under the output's lock
		// (750 ms for 100,000, measured in an audit): keep fewer, larger.
		return fmt.Errorf("output-max-files: at most %d (rotation renames every kept file while writes wait); raise output-max-bytes instead", maxFiles)
	case c.FlushInterval <= 0:
		return errors.New("ndjson flush interval must be positive")
	}
	return nil
}

// Output writes NDJSON; it implements flow.Sink and lifecycle.Component and
// is safe for concurrent use.
type Output struct {
	r    *reporter.Reporter
	cfg  Configuration
	name string

	mu sync.Mutex
	w  io.Writer // stdout, or the file
	f  *os.File
	// buf holds whole documents (lines) not written yet, bufDocs of them;
	// nil until Start. A write that fails drops them, counted, and the
	// next writes try again: a full disk that gets space back, or a file
	// reopened after SIGHUP, takes documents again (a bufio.Writer kept
	// its first error for ever, and failed every write and reopen after).
	buf     []byte
	bufDocs int
	// torn: the last write stopped inside a line; the next write ends it
	// first, so that the documents after it are whole lines.
	torn bool
	// size is what the file holds: its size at open plus the bytes
	// written to it since, not the documents dropped on the way (they
	// rotated the file early).
	size int64
	// stopped: Stop closed the output. A late Write (outputs stop last,
	// a flush or a SIGHUP can still arrive) is dropped and counted, and
	// nothing opens the file again: before, it was opened again and
	// never closed.
	stopped bool
	// regular: the file open is a regular file, the only kind rotated
	// (renaming a device or a FIFO would move it away for every user).
	regular bool

	pool    sync.Pool
	tracker lifecycle.Tracker
	limited *reporter.Limited

	docs, dropped, bytes, rotations prometheus.Counter
}

// bufSize is the write buffer's size: a write when it is full, and every
// FlushInterval.
const bufSize = 256 << 10

// New returns an output writing to cfg.Path, or to stdout when it is empty.
func New(r *reporter.Reporter, cfg Configuration, stdout io.Writer) (*Output, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	name := "stdout"
	if cfg.Path != "" {
		name = "file:" + cfg.Path
	}
	counter := func(metric, help string) prometheus.Counter {
		// Several NDJSON outputs may run at once: one series each.
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "spanflow", Subsystem: "ndjson", Name: metric,
			Help: help, ConstLabels: prometheus.Labels{"output": name}})
		r.Registry.MustRegister(c)
		return c
	}
	o := &Output{r: r, cfg: cfg, w: stdout, name: name, limited: reporter.NewLimited(r.Log, 10*time.Second),
		docs:      counter("documents_total", "Documents written by the NDJSON output."),
		dropped:   counter("documents_dropped_total", "Documents the NDJSON output could not write (a full disk, a closed pipe), dropped."),
		bytes:     counter("bytes_total", "Bytes written by the NDJSON output."),
		rotations: counter("rotations_total", "Files rotated by the NDJSON output."),
	}
	o.pool.New = func() any { return &scratch{} }
	return o, nil
}

type scratch struct {
	enc flow.Encoder
	buf []byte
}

// Name is used in lifecycle errors and metrics.
func (o *Output) Name() string { return o.name }

// Start opens the file and starts the periodic flush.
func (o *Output) Start() error {
	if o.cfg.Path != "" {
		if err := o.open(); err != nil {
			return err
		}
	}
	o.mu.Lock()
	o.buf = make([]byte, 0, bufSize)
	o.mu.Unlock()
	o.tracker.Every(o.cfg.FlushInterval, func(time.Time) {
		o.mu.Lock()
		_ = o.flush() // logged and counted there
		o.mu.Unlock()
	})
	return nil
}

// dropWrite counts and logs (rate-limited) the n documents of a Write
// that cannot go to the file, and returns err.
func (o *Output) dropWrite(n int, err error) error {
	o.dropped.Add(float64(n))
	o.limited.WarnCount("write", "NDJSON output cannot write: flow documents dropped", "documents", int64(n),
		"output", o.name, "err", err)
	return fmt.Errorf("%w (%d documents dropped)", err, n)
}

// unlinked reports whether f's file has no name left: removed (rm, or
// its directory removed), it takes every write and keeps none.
func unlinked(f *os.File) bool {
	st, err := f.Stat()
	if err != nil {
		return false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && sys.Nlink == 0
}

// reopenUnlinked opens Path again in place of a file that was removed, so
// that documents go to a file someone can read: before, they went on into
// the removed file until the next rotation, counted as written. When Path
// cannot be opened (its directory is gone too) the file is closed, and
// the documents are dropped and counted until Write can open it. Called
// with mu held.
func (o *Output) reopenUnlinked() {
	old := o.f
	err := o.open()
	_ = old.Close()
	if err != nil {
		o.f, o.w = nil, nil
		o.limited.Warn("unlinked", "NDJSON output file was removed and cannot be created again: flow documents are dropped until it can",
			"output", o.name, "err", err)
		return
	}
	o.limited.Warn("unlinked", "NDJSON output file was removed: created it again", "output", o.name)
}

// flush writes the buffer. When the write fails, the documents not
// written are dropped, counted in documents_dropped_total and logged at
// most every 10 s (a failing file failed every FlushInterval, 5 lines a
// second without end): the buffer is bounded, and the next flush tries
// the file again. Called with mu held.
func (o *Output) flush() error {
	if len(o.buf) == 0 {
		return nil
	}
	if o.f != nil && o.regular && unlinked(o.f) {
		o.reopenUnlinked()
	}
	if o.w == nil { // a failed rotation closed the file; Write opens it again
		n := o.bufDocs
		o.buf, o.bufDocs = o.buf[:0], 0
		return o.dropWrite(n, fmt.Errorf("write %s: the file is not open", o.name))
	}
	start := 0
	if o.torn {
		// The torn line's end: it stays malformed, the rest parse.
		o.buf = append(o.buf, 0)
		copy(o.buf[1:], o.buf)
		o.buf[0], start = '\n', 1
	}
	n, err := o.w.Write(o.buf)
	o.bytes.Add(float64(n))
	o.size += int64(n)
	lost := 0
	if n > 0 {
		o.torn = o.buf[n-1] != '\n'
	}
	if err != nil {
		lost = bytes.Count(o.buf[max(n, start):], []byte{'\n'})
	}
	o.docs.Add(float64(o.bufDocs - lost))
	o.buf, o.bufDocs = o.buf[:0], 0
	if cap(o.buf) > 4*bufSize { // one large Write: do not keep its buffer
		o.buf = make([]byte, 0, bufSize)
	}
	if err != nil {
		return o.dropWrite(lost, fmt.Errorf("write %s: %w", o.name, err))
	}
	return nil
}

// fileMode is the most a file output may allow.
const fileMode = 0o640

func (o *Output) open() error {
	// Flows name every internal address: 0640 like the spool, and a file
	// that exists already loses what it gave to others.
	f, err := os.OpenFile(o.cfg.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, fileMode)
	if err != nil {
		return fmt.Errorf("open NDJSON output: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open NDJSON output: %w", err)
	}
	if perm := st.Mode().Perm(); st.Mode().IsRegular() && perm&^fileMode != 0 {
		if err := f.Chmod(perm & fileMode); err != nil {
			f.Close()
			return fmt.Errorf("open NDJSON output: make %s readable by its group at most: %w", o.cfg.Path, err)
		}
	}
	o.f, o.w, o.size, o.regular = f, f, st.Size(), st.Mode().IsRegular()
	o.torn = false
	return nil
}

// rotate moves Path to Path.1 (and older ones one further) and reopens Path.
// Called with mu held.
func (o *Output) rotate() error {
	if err := o.flush(); err != nil {
		return err
	}
	// Closed, the file is no longer written to: the next Write opens
	// Path again if this rotation fails, so that a removed directory
	// made again (or a SIGHUP) brings the output back.
	err := o.f.Close()
	o.f, o.w = nil, nil
	if err != nil {
		return err
	}
	if o.cfg.MaxFiles == 0 {
		if err := os.Remove(o.cfg.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	} else {
		// Only the files there are move up: PATH.1 to PATH.n-1, the
		// first missing being n (or the oldest kept goes).
		n := 1
		for n <= o.cfg.MaxFiles {
			if _, err := os.Lstat(fmt.Sprintf("%s.%d", o.cfg.Path, n)); err != nil {
				break
			}
			n++
		}
		if n > o.cfg.MaxFiles {
			os.Remove(fmt.Sprintf("%s.%d", o.cfg.Path, o.cfg.MaxFiles))
			n = o.cfg.MaxFiles
		}
		for i := n - 1; i >= 1; i-- {
			os.Rename(fmt.Sprintf("%s.%d", o.cfg.Path, i), fmt.Sprintf("%s.%d", o.cfg.Path, i+1))
		}
		if err := os.Rename(o.cfg.Path, o.cfg.Path+".1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err // Path gone (removed, or its directory): nothing to move
		}
	}
	o.rotations.Inc()
	return o.open()
}

// Write encodes the records (outside the lock) and appends them.
func (o *Output) Write(records []flow.Record) error {
	s := o.pool.Get().(*scratch)
	defer o.pool.Put(s)
	s.buf = s.buf[:0]
	for i := range records {
		s.buf = s.enc.AppendDocument(s.buf, &records[i])
		s.buf = append(s.buf, '\n')
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stopped {
		return o.dropWrite(len(records), fmt.Errorf("write %s: the output is stopped", o.name))
	}
	if o.buf == nil {
		return errors.New("NDJSON output not started")
	}
	if o.cfg.Path != "" && o.f == nil {
		// A rotation failed (its directory removed?): try again.
		if err := o.open(); err != nil {
			return o.dropWrite(len(records), err)
		}
	}
	// What the file holds and what is buffered for it.
	if held := o.size + int64(len(o.buf)); o.regular && o.cfg.MaxBytes > 0 && held > 0 && held+int64(len(s.buf)) > o.cfg.MaxBytes {
		if err := o.rotate(); err != nil {
			return o.dropWrite(len(records), fmt.Errorf("rotate %s: %w", o.cfg.Path, err))
		}
	}
	o.buf = append(o.buf, s.buf...)
	o.bufDocs += len(records)
	if len(o.buf) >= bufSize {
		return o.flush()
	}
	return nil
}

// Reopen writes what is buffered to the file and opens Path again: after
// logrotate (or an operator) moved the file away, documents go to a new
// file at Path. The file in use stays when Path cannot be opened. Nothing
// to do for stdout. Once stopped, it is refused: nothing opens the file
// again.
func (o *Output) Reopen() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stopped && o.cfg.Path != "" {
		return fmt.Errorf("reopen %s: the output is stopped", o.cfg.Path)
	}
	if o.buf == nil || o.cfg.Path == "" {
		return nil
	}
	// What the old file does not take is dropped and counted: the new
	// file is opened all the same (the old one may be in a removed
	// directory, or on a full disk).
	if o.f != nil {
		_ = o.flush()
	}
	old := o.f // after the flush, which opens Path again if the file was removed
	if err := o.open(); err != nil {
		return fmt.Errorf("reopen %s: %w", o.cfg.Path, err)
	}
	if old == nil {
		return nil
	}
	return old.Close()
}

// Flush writes what is buffered to the file (or stdout): when it returns
// nil, every document Write took is in the file (the kernel's page cache,
// not necessarily the disk). The indexer calls it before committing a
// batch's offsets.
func (o *Output) Flush() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stopped {
		return fmt.Errorf("flush %s: the output is stopped", o.name)
	}
	if o.buf == nil {
		return errors.New("NDJSON output not started")
	}
	return o.flush()
}

// Stop flushes and closes. Writes after it are dropped and counted.
func (o *Output) Stop() error {
	o.tracker.Stop()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.buf == nil || o.stopped {
		return nil
	}
	o.stopped = true
	err := o.flush()
	if o.f != nil {
		err = errors.Join(err, o.f.Close())
	}
	o.f, o.w = nil, nil
	return err
}

// Docs counts the documents written.
func (o *Output) Docs() prometheus.Counter { return o.docs }
