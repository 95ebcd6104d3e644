package elasticsearch

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// deadLetter appends documents the cluster refused for their content, one
// JSON line each: when, where it was going, why, and the document itself, so
// an operator can fix the mapping and re-send them. Past max bytes (0: no
// bound) it refuses more (errDeadLetterFull: dropped and counted) until the
// file is moved or truncated, which it notices within a second: a cluster
// refusing every document filled 85 MiB with 100,000 of them in two
// seconds, on the spool's filesystem.
type deadLetter struct {
	mu   sync.Mutex
	path string
	f    *os.File
	// lock is PATH.lock, flocked while the file is open: one process (one
	// output) per dead-letter file; nil when PATH is not a regular file.
	lock    *os.File
	max     int64
	size    int64
	checked time.Time // when a full file was last looked at
}

var errDeadLetterFull = errors.New("dead-letter file full")

// ErrDeadLetterInUse is the error of a dead-letter file another process
// (or another output of this one) writes.
var ErrDeadLetterInUse = errors.New("dead-letter file in use")

// deadLetterInUseError names the file and the process holding it.
type deadLetterInUseError struct {
	path  string
	pid   int
	holds string
}

func (e *deadLetterInUseError) Error() string {
	return fmt.Sprintf("dead-letter file %s is in use by %s: give each collector and indexer on this host its own --es-dead-letter-file",
		e.path, holder(e.pid, e.holds))
}

func (e *deadLetterInUseError) Is(target error) bool { return target == ErrDeadLetterInUse }

// openDeadLetter locks PATH.lock, then opens PATH to append. Two
// processes given the same --es-dead-letter-file (each with its own spool
// directory, so the spool's lock did not stop them) appended to it at
// once; a rotation by one (the file moved away when full) went unseen by
// the other.
func openDeadLetter(path string, max int64) (*deadLetter, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create dead-letter directory: %w", err)
	}
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		// /dev/null (refused documents dropped), /dev/stderr, a FIFO: not
		// rotated, and as many writers as like may share it. Locked, it
		// kept a second process from starting, and its lock went to
		// /dev/null.lock, where only root may create a file.
		d := &deadLetter{path: path, max: max}
		if err := d.open(); err != nil {
			return nil, err
		}
		return d, nil
	}
	lock, pid, holds, err := lockFile(lockTarget(path) + ".lock")
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return nil, &deadLetterInUseError{path: path, pid: pid, holds: holds}
	}
	if err != nil {
		return nil, fmt.Errorf("lock dead-letter file %s: %w", path, err)
	}
	d := &deadLetter{path: path, max: max, lock: lock}
	if err := d.open(); err != nil {
		lock.Close()
		return nil, err
	}
	return d, nil
}

// lockTarget is the file path names, symbolic links followed, so that the
// same file under two names (a symbolic link, a relative path) takes the
// same lock. A link to a file not made yet is followed too: the file it
// names is made by opening the link, and was locked under the link's name
// while a process given the file's own name locked it under that one,
// both writing it.
func lockTarget(path string) string {
	for range 40 { // as the kernel, which gives up after 40 links
		if real, err := filepath.EvalSymlinks(path); err == nil {
			return real
		}
		to, err := os.Readlink(path)
		if err != nil {
			break // not a link: a file not made yet, or an unreadable directory
		}
		if !filepath.IsAbs(to) {
			to = filepath.Join(filepath.Dir(path), to)
		}
		path = to
	}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(path)); err == nil {
		return filepath.Join(dir, filepath.Base(path))
	}
	return path
}

func (d *deadLetter) open() error {
	f, err := os.OpenFile(d.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open dead-letter file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open dead-letter file: %w", err)
	}
	d.f, d.size = f, st.Size()
	return nil
}

// moved reports whether the file at the path is no longer the one open,
// or was truncated; d.mu is held.
func (d *deadLetter) moved() bool {
	at, err := os.Stat(d.path)
	if err != nil {
		return true
	}
	open, err := d.f.Stat()
	return err != nil || !os.SameFile(at, open) || at.Size() < d.size
}

// deadLetterEntry is one line of the dead-letter file.
type deadLetterEntry struct {
	Time     time.Time       `json:"time"`
	Index    string          `json:"index"`
	ID       string          `json:"id"`
	Status   int             `json:"status"`
	Type     string          `json:"error_type"`
	Reason   string          `json:"reason"`
	Document json.RawMessage `json:"document"`
}

func (d *deadLetter) Write(e deadLetterEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode dead-letter entry: %w", err)
	}
	b = append(b, '\n')
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.max > 0 && d.size+int64(len(b)) > d.max {
		if now := time.Now(); now.Sub(d.checked) < time.Second || !d.moved() {
			d.checked = now
			return errDeadLetterFull
		}
		d.f.Close()
		if err := d.open(); err != nil {
			return err
		}
	}
	n, err := d.f.Write(b)
	d.size += int64(n)
	if err != nil {
		return fmt.Errorf("write dead-letter file: %w", err)
	}
	return nil
}

func (d *deadLetter) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	err := d.f.Close()
	if d.lock != nil {
		err = errors.Join(err, d.lock.Close())
	}
	return err
}
