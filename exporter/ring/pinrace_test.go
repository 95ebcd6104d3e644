package ring_test

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/ring"
	"github.com/spanflow/spanflow/internal/reporter"
)

// TestPinWhileRingRemoves: a ring is written without pause, so that its
// writer removes the oldest segment again and again, and the oldest
// segment's time is pinned a hundred times meanwhile (an alert's window
// at the edge of retention). Each pin set must keep what it says: its
// window (trimmed if it started in removed time) answers its packets,
// without a warning that some were removed; or AddPin says ErrGone.
// Before, the range was checked before the pins file was written, and
// the writer removed the segment in between (or had read the pins just
// before): about one pin in four then covered time already removed, and
// its window answered no packets and no error, a 200 instead of a 410.
func TestPinWhileRingRemoves(t *testing.T) {
	cfg := ring.Configuration{Dir: t.TempDir(), Size: ring.MinSize, Codec: ring.CodecNone, BlockSize: 64 << 10}
	rng := rand.New(rand.NewPCG(5, 5))
	pool := make([]byte, 1<<20)
	for i := range pool {
		pool[i] = byte(rng.Uint32())
	}
	g, err := ring.Open(reporter.NewForTest(io.Discard), cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := g.NewAppender()
	a.Wait = true
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		ts := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC).UnixNano()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ts += 1000
			off := (i * 7919) % (len(pool) - 1000)
			a.Append(ts, 1000, 1, 0, 42, pool[off:off+1000])
		}
	}()
	defer func() {
		close(stop)
		<-done
		a.Flush()
		g.Close()
	}()
	for { // until retention removes segments
		if _, truncated, _ := ring.List(cfg.Dir, func(string) {}); truncated != 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	set, gone, bad := 0, 0, 0
	for i := range 100 {
		segs, _, err := ring.List(cfg.Dir, func(string) {})
		if err != nil || len(segs) == 0 || segs[0].Blocks == 0 {
			continue
		}
		name := fmt.Sprintf("edge-%d", i)
		err = ring.AddPin(cfg.Dir, ring.Pin{From: segs[0].First, To: segs[0].Last + 1, Name: name})
		if errors.Is(err, ring.ErrGone) {
			gone++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		set++
		time.Sleep(10 * time.Millisecond) // the writer goes on removing
		pins, err := ring.Pins(cfg.Dir)
		if err != nil || len(pins) != 1 || pins[0].Name != name {
			t.Fatalf("pins %v (%v), want %s alone", pins, err, name)
		}
		p := pins[0]
		var removed []string
		pkts, _, err := ring.Search(cfg.Dir, ring.Query{From: p.From, To: p.To}, func(w string) {
			if strings.Contains(w, "removed") {
				removed = append(removed, w)
			}
		})
		if err != nil || len(pkts) == 0 || len(removed) > 0 {
			bad++
			if bad <= 3 {
				t.Errorf("pin [%d, %d): %d packets, error %v, warnings %q; want the packets of a kept window", p.From, p.To, len(pkts), err, removed)
			}
		}
		if err := ring.RemovePin(cfg.Dir, name); err != nil {
			t.Fatal(err)
		}
	}
	if bad > 0 || set == 0 {
		t.Errorf("%d of %d pins set at the ring's edge cover time removed before they held it (%d refused as gone)", bad, set, gone)
	}
}
