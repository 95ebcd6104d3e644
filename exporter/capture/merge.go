package capture

import (
	"errors"
	"sync"
	"time"
)

// LiveSource is a live capture: its kernel counters can be read while
// another goroutine reads frames.
type LiveSource interface {
	Source
	Stats() LiveStats
}

// Merged reads several live sources (one per interface), each in its own
// goroutine, and yields their frames as one stream, in batches of copies.
// Each frame keeps the observation point of its source.
type Merged struct {
	srcs  []LiveSource
	ch    chan *batch
	free  chan *batch
	done  chan struct{}
	wg    sync.WaitGroup
	cur   *batch
	i     int
	errMu sync.Mutex
	err   error
}

type batch struct {
	frames []Frame
	buf    []byte
}

const (
	batchFrames = 256
	batchBytes  = 1 << 20
)

// Merge starts reading srcs. Close stops the readers, then closes srcs.
func Merge(srcs ...LiveSource) *Merged {
	m := &Merged{srcs: srcs, ch: make(chan *batch, 4*len(srcs)), free: make(chan *batch, 8*len(srcs)), done: make(chan struct{})}
	for _, s := range srcs {
		m.wg.Add(1)
		go m.read(s)
	}
	return m
}

func (m *Merged) read(s LiveSource) {
	defer m.wg.Done()
	var b *batch
	send := func() bool {
		select {
		case m.ch <- b:
			b = nil
			return true
		case <-m.done:
			return false
		}
	}
	var f Frame
	for {
		select {
		case <-m.done:
			return
		default:
		}
		if b == nil {
			select {
			case b = <-m.free:
				b.frames, b.buf = b.frames[:0], b.buf[:0]
			default:
				b = &batch{frames: make([]Frame, 0, batchFrames), buf: make([]byte, 0, batchBytes)}
			}
		}
		err := s.Next(&f)
		if err != nil {
			if errors.Is(err, ErrIdle) {
				if len(b.frames) > 0 && !send() {
					return
				}
				continue
			}
			if !errors.Is(err, ErrClosed) {
				m.errMu.Lock()
				m.err = errors.Join(m.err, err)
				m.errMu.Unlock()
			}
			if len(b.frames) > 0 {
				send()
			}
			return
		}
		if len(b.buf)+len(f.Data) > cap(b.buf) {
			if !send() {
				return
			}
			b = &batch{frames: make([]Frame, 0, batchFrames), buf: make([]byte, 0, max(batchBytes, len(f.Data)))}
		}
		start := len(b.buf)
		b.buf = append(b.buf, f.Data...)
		g := f
		g.Data = b.buf[start:len(b.buf):len(b.buf)]
		b.frames = append(b.frames, g)
		if len(b.frames) == cap(b.frames) && !send() {
			return
		}
	}
}

// Next returns the next frame of any source; ErrIdle when none came for the
// poll interval; a reader's error once it failed.
func (m *Merged) Next(f *Frame) error {
	for m.cur == nil || m.i >= len(m.cur.frames) {
		if m.cur != nil {
			select {
			case m.free <- m.cur:
			default:
			}
			m.cur = nil
		}
		select {
		case b := <-m.ch:
			m.cur, m.i = b, 0
		case <-time.After(pollInterval):
			m.errMu.Lock()
			err := m.err
			m.errMu.Unlock()
			if err != nil {
				return err
			}
			return ErrIdle
		}
	}
	*f = m.cur.frames[m.i]
	m.i++
	return nil
}

// Stats sums the sources' kernel counters.
func (m *Merged) Stats() LiveStats {
	var s LiveStats
	for _, src := range m.srcs {
		x := src.Stats()
		s.Received += x.Received
		s.Dropped += x.Dropped
		s.LinkDowns += x.LinkDowns
	}
	return s
}

// Close stops the readers (within the poll interval) and closes the sources.
func (m *Merged) Close() error {
	select {
	case <-m.done:
		return nil
	default:
	}
	close(m.done)
	m.wg.Wait()
	var errs []error
	for _, s := range m.srcs {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}
