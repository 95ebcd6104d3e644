package demo

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spanflow/spanflow/internal/lifecycle"
)

// progress prints one line a second while the traffic runs: packets
// mirrored, flow records the collector received, and their rates. On a
// terminal the line is redrawn in place.
type progress struct {
	w        io.Writer
	tty      bool
	duration time.Duration
	start    time.Time
	packets  func() uint64
	records  *atomic.Uint64
	t        lifecycle.Tracker
	stopped  sync.Once
}

func (p *progress) Name() string { return "progress" }

func (p *progress) Start() error {
	p.start = time.Now()
	p.t.Go(func(ctx context.Context) error {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var lastPackets, lastRecords uint64
		last := p.start
		for {
			select {
			case <-ctx.Done():
				return nil
			case now := <-tick.C:
				pk, rec := p.packets(), p.records.Load()
				secs := now.Sub(last).Seconds()
				line := fmt.Sprintf("  %3.0fs/%s  packets %s (%s/s)  flows %s (%s records/s)",
					now.Sub(p.start).Seconds(), p.duration, Group(pk), Group(uint64(float64(pk-lastPackets)/secs)),
					Group(rec), Group(uint64(float64(rec-lastRecords)/secs)))
				if p.tty {
					fmt.Fprintf(p.w, "\r\033[K%s", line)
				} else {
					fmt.Fprintln(p.w, line)
				}
				lastPackets, lastRecords, last = pk, rec, now
			}
		}
	})
	return nil
}

func (p *progress) Stop() error {
	err := p.t.Stop()
	p.stopped.Do(func() {
		if p.tty {
			fmt.Fprintln(p.w)
		}
	})
	return err
}
