package testutil

import (
	"bytes"
	"strings"
	"sync"
)

// SyncBuffer is a buffer that one goroutine writes (a logger, an output)
// while the test reads it from another.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Lines is what was written so far, one element a line.
func (s *SyncBuffer) Lines() []string {
	return strings.Split(strings.TrimSpace(s.String()), "\n")
}
