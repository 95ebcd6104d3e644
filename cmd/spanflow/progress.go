package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// statusLine shows, on a terminal, that a long command is working: one
// line rewritten in place with a spinner, the time spent and a count, then
// erased when the work ends. Written only when stderr is a terminal, so
// logs, pipes and scripts see nothing of it.
type statusLine struct {
	w     io.Writer
	what  string
	count func() string
	stop  chan struct{}
	done  sync.WaitGroup
}

// statusEvery is how often the line is rewritten.
const statusEvery = 150 * time.Millisecond

// startStatus starts the line on w when w is a terminal; count, when not
// nil, says how far the work is ("1,234 objects received").
func startStatus(w io.Writer, what string, count func() string) *statusLine {
	s := &statusLine{w: w, what: what, count: count}
	if !isTerminal(w) {
		return s
	}
	s.stop = make(chan struct{})
	start := time.Now()
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		frames := []rune("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")
		t := time.NewTicker(statusEvery)
		defer t.Stop()
		for i := 0; ; i++ {
			line := fmt.Sprintf("%c %s… %ds", frames[i%len(frames)], s.what, int(time.Since(start).Seconds()))
			if s.count != nil {
				if n := s.count(); n != "" {
					line += ", " + n
				}
			}
			fmt.Fprintf(s.w, "\r\033[K%s", line)
			select {
			case <-s.stop:
				fmt.Fprint(s.w, "\r\033[K")
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Stop erases the line; what the command prints next starts on a clean one.
func (s *statusLine) Stop() {
	if s.stop == nil {
		return
	}
	close(s.stop)
	s.done.Wait()
	s.stop = nil
}

// counterValue reads the counter named name (without labels) from reg:
// the progress the components already count for their metrics.
func counterValue(reg prometheus.Gatherer, name string) (float64, bool) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, false
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			if c := mf.GetMetric()[0].GetCounter(); c != nil {
				return c.GetValue(), true
			}
		}
	}
	return 0, false
}
