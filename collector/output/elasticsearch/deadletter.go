package elasticsearch

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// deadLetter appends documents the cluster refused for their content, one
// JSON line each: when, where it was going, why, and the document itself, so
// an operator can fix the mapping and re-send them.
type deadLetter struct {
	mu sync.Mutex
	f  *os.File
}

func openDeadLetter(path string) (*deadLetter, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create dead-letter directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open dead-letter file: %w", err)
	}
	return &deadLetter{f: f}, nil
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
	if _, err := d.f.Write(b); err != nil {
		return fmt.Errorf("write dead-letter file: %w", err)
	}
	return nil
}

func (d *deadLetter) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.f.Close()
}
