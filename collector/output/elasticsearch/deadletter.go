package elasticsearch

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
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
	mu      sync.Mutex
	path    string
	f       *os.File
	max     int64
	size    int64
	checked time.Time // when a full file was last looked at
}

var errDeadLetterFull = errors.New("dead-letter file full")

func openDeadLetter(path string, max int64) (*deadLetter, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create dead-letter directory: %w", err)
	}
	d := &deadLetter{path: path, max: max}
	if err := d.open(); err != nil {
		return nil, err
	}
	return d, nil
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
	return d.f.Close()
}
