package rollup

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/flow"
)

// TestProvisionalFresh: a second is on the provisional read lag after its
// end, while the engine's own tick shows it only Delay after.
func TestProvisionalFresh(t *testing.T) {
	e := newTestEngine(t, nil) // delay 5 s
	e.Tick(at(1040))
	r := lineRecord(at(1040.3), 0, 1000)
	e.Write([]flow.Record{r})
	var got *Row
	var when time.Time
	e.Provisional(at(1041.5), 500*time.Millisecond, func(s *Snapshot) {
		when = s.Time
		if x := row(s, ScopeLine, "10.0.0.1 eth0"); x != nil {
			c := *x
			got = &c
		}
	})
	if got == nil || got.Values.Of(BytesPerSecond) != 1000 || !when.Equal(at(1041)) {
		t.Fatalf("provisional read at 1041.5: %v at %v, want 1000 bytes/s at 1041", got, when)
	}
	if s := e.Tick(at(1041.5)); !s.Time.Equal(at(1036)) || row(s, ScopeLine, "10.0.0.1 eth0").Values.Of(BytesPerSecond) != 0 {
		t.Errorf("the engine's tick at 1041.5 ends at %v (want 1036) and shows the record already", s.Time)
	}
	called := false
	e.Provisional(at(1041.9), 500*time.Millisecond, func(*Snapshot) { called = true })
	if called {
		t.Error("a second read twice")
	}
	e.Provisional(at(1050), 5*time.Second, func(*Snapshot) { called = true })
	if called {
		t.Error("read with a lag as long as the delay")
	}
}

// TestProvisionalAddsUp: records arriving at random times with random
// spans, some for seconds already read; the provisional reads, one per
// second, add up to every byte the engine counted, and the engine's own
// ticks are those of an engine nobody reads provisionally.
func TestProvisionalAddsUp(t *testing.T) {
	e, ref := newTestEngine(t, nil), newTestEngine(t, nil)
	e.Tick(at(1000))
	ref.Tick(at(1000))
	rng := rand.New(rand.NewPCG(1, 2))
	const key = "10.0.0.1 eth0"
	var written, provBytes, refBytes float64
	var prevProv time.Time
	read := func(now time.Time) {
		e.Provisional(now, 400*time.Millisecond, func(s *Snapshot) {
			secs := s.Time.Sub(prevProv).Seconds()
			if prevProv.IsZero() {
				secs = 1
			}
			prevProv = s.Time
			if r := row(s, ScopeLine, key); r != nil {
				provBytes += r.Values.Of(BytesPerSecond) * secs
			}
		})
	}
	for step := range 400 { // 100 s in quarter seconds
		now := at(1000 + float64(step)/4)
		var recs []flow.Record
		for range rng.IntN(4) {
			b := uint64(1 + rng.IntN(5000))
			r := lineRecord(now, time.Duration(rng.IntN(9000))*time.Millisecond, b)
			if rng.IntN(3) == 0 { // ended earlier, within the delay: its own clock
				end := now.Add(-time.Duration(rng.IntN(4500)) * time.Millisecond)
				r.End, r.Start = end, end.Add(-time.Duration(rng.IntN(3000))*time.Millisecond)
			}
			written += float64(b)
			recs = append(recs, r)
		}
		e.Write(recs)
		ref.Write(recs)
		if step%4 == 2 {
			read(now)
		}
		if step%4 == 0 {
			a, b := e.Tick(now), ref.Tick(now)
			if !a.Time.Equal(b.Time) || len(a.Rows) != len(b.Rows) {
				t.Fatalf("tick at %v: %v with %d rows, reference %v with %d", now, a.Time, len(a.Rows), b.Time, len(b.Rows))
			}
			for i := range a.Rows {
				for k, v := range b.Rows[i].Values.Map() {
					if math.Abs(a.Rows[i].Values.Of(k)-v) > 1e-9*math.Abs(v) { // folded at other times: summed in another order
						t.Fatalf("tick at %v, %s %s %s: %v, reference %v", now, a.Rows[i].Scope, a.Rows[i].Key, k, a.Rows[i].Values.Of(k), v)
					}
				}
			}
			if r := row(b, ScopeLine, key); r != nil {
				refBytes += r.Values.Of(BytesPerSecond)
			}
		}
	}
	// Close every second, then one more read takes what closed unread.
	for sec := 1100.0; sec <= 1110; sec++ {
		e.Tick(at(sec))
		if r := row(ref.Tick(at(sec)), ScopeLine, key); r != nil {
			refBytes += r.Values.Of(BytesPerSecond)
		}
	}
	read(at(1111.5))
	counted := written - e.stats.lateBytes - e.stats.futureBytes
	if e.stats.lateBytes == 0 || counted <= 0 {
		t.Fatalf("the traffic had no late bytes (%v) or nothing counted: not a test", e.stats.lateBytes)
	}
	if math.Abs(refBytes-counted) > 1e-6*counted {
		t.Fatalf("the engine's ticks count %.1f bytes, it counted %.1f: the reference is off", refBytes, counted)
	}
	if math.Abs(provBytes-counted) > 1e-6*counted {
		t.Errorf("provisional reads add up to %.1f bytes, the engine counted %.1f", provBytes, counted)
	}
}
