package rollup

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/flow"
)

// TestTalkerSampling floods a line with 50,000 records a tick, nearly all
// from sources seen once, over a budget of 5,000: each tick after the
// first feeds the sketches about the budget, the first a few budgets, and
// the three heavy talkers (4, 2 and 1 % of the records) come out in order
// with rates within 10 % of the exact decayed rates worked out from the
// records.
func TestTalkerSampling(t *testing.T) {
	const budget, perTick, ticks = 5000, 50000, 20
	e := newTestEngine(t, func(c *Configuration) { c.Delay = 0; c.TalkerBudget = budget })
	e.Tick(at(100))
	heavy := []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("192.0.2.12")}
	var exact [3][ticks]float64
	var total [ticks]float64
	rng := rand.New(rand.NewPCG(7, 8))
	next := uint32(1 << 20)
	recs := make([]flow.Record, 0, 1000)
	var s *Snapshot
	for tk := range ticks {
		for range perTick / 1000 {
			recs = recs[:0]
			for range 1000 {
				r := lineRecord(at(100.5+float64(tk)), 0, uint64(64+rng.IntN(1437)))
				h := -1
				switch u := rng.Float64(); {
				case u < 0.04:
					h = 0
				case u < 0.06:
					h = 1
				case u < 0.07:
					h = 2
				}
				if h >= 0 {
					r.SrcAddr = heavy[h]
					exact[h][tk] += float64(r.Bytes)
				} else {
					r.SrcAddr = addrN(next)
					next++
				}
				total[tk] += float64(r.Bytes)
				recs = append(recs, r)
			}
			_ = e.Write(recs)
		}
		e.mu.Lock()
		kept, skipped := e.sampling.kept, e.sampling.skipped
		e.mu.Unlock()
		// Within the first tick the threshold doubles with each budget
		// fed: about log2(50,000 / 5,000) doublings.
		if limit := budget * (2 + math.Log2(perTick/budget)); tk == 0 && kept > limit {
			t.Errorf("first tick fed %v records to the sketches, want at most %.0f (the threshold rises within the tick)", kept, limit)
		}
		if tk > 0 && kept > 1.2*budget {
			t.Errorf("tick %d fed %v records to the sketches, budget %d", tk, kept, budget)
		}
		if skipped == 0 {
			t.Fatalf("tick %d: no record sampled out at %d records a tick over a budget of %d", tk, perTick, budget)
		}
		s = e.Tick(at(101 + float64(tk)))
	}
	r := row(s, ScopeLine, "10.0.0.1 eth0")
	if r == nil || len(r.Top) < 3 {
		t.Fatalf("line row %+v, want 3 talkers or more", r)
	}
	// The row's own rate is not sampled: the last tick's bytes exactly.
	if got, ok := r.Values.At(vBytes); !ok || math.Abs(got-total[ticks-1]) > 1e-9*total[ticks-1] {
		t.Errorf("line row: %v bytes/s, want the last tick's %v", got, total[ticks-1])
	}
	d := math.Exp(-1.0 / 10)
	for i, a := range heavy {
		if r.Top[i].Addr != a {
			t.Errorf("talker %d is %v, want %v (top %v)", i, r.Top[i].Addr, a, r.Top[:3])
			continue
		}
		// Bytes of tick tk weigh d^(ticks-1-tk) (1-d) at the last snapshot
		// (see TestTopTalkersZipf).
		want := 0.0
		for tk, b := range exact[i] {
			want += b * (1 - d) * math.Pow(d, float64(ticks-1-tk))
		}
		got := r.Top[i].BytesPerSecond
		if math.Abs(got-want) > 0.1*want {
			t.Errorf("talker %d %v: %.0f bytes/s, exact %.0f", i, a, got, want)
		}
		t.Logf("talker %d %v: %.0f bytes/s, exact %.0f (%+.1f %%)", i, a, got, want, 100*(got-want)/want)
	}
}

// TestTalkerSamplingUnderBudget: below the budget every record is fed,
// and the talkers are those of an engine that never samples.
func TestTalkerSamplingUnderBudget(t *testing.T) {
	run := func(budget int) (*Engine, []Talker) {
		e := newTestEngine(t, func(c *Configuration) { c.Delay = 0; c.TalkerBudget = budget })
		e.Tick(at(100))
		rng := rand.New(rand.NewPCG(9, 10))
		var s *Snapshot
		for tk := range 10 {
			recs := make([]flow.Record, 4000)
			for i := range recs {
				recs[i] = lineRecord(at(100.5+float64(tk)), 0, uint64(64+rng.IntN(1437)))
				recs[i].SrcAddr = addrN(uint32(rng.IntN(500)))
			}
			_ = e.Write(recs)
			s = e.Tick(at(101 + float64(tk)))
		}
		return e, append([]Talker(nil), row(s, ScopeLine, "10.0.0.1 eth0").Top...)
	}
	e, got := run(5000)
	_, want := run(0)
	if e.sampling.skipped != 0 {
		t.Errorf("%d records sampled out under the budget", e.sampling.skipped)
	}
	if len(got) != len(want) || len(got) == 0 {
		t.Fatalf("%d talkers, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("talker %d: %+v, without sampling %+v", i, got[i], want[i])
		}
	}
}

// TestTalkerSamplingFloodStart: on the wall clock, a flood of ten budgets
// that arrives in the first tenth of a tick (the first tick, with no
// threshold yet) feeds the sketches about two budgets, not the five the
// doubling alone allows; in event time (no clock) it still feeds more.
func TestTalkerSamplingFloodStart(t *testing.T) {
	const budget, flood = 5000, 50000
	const (
		wallClock = iota // Start's clock, here the test's
		eventTime        // a replay's: the records' own time
		noClock          // ticks driven by hand
	)
	run := func(mode int) float64 {
		e := newTestEngine(t, func(c *Configuration) {
			c.Delay, c.TalkerBudget, c.EventTime = 0, budget, mode == eventTime
		})
		e.Tick(at(100))
		base := time.Unix(1_800_000_000, 0)
		var now time.Time
		if mode == wallClock {
			e.sampling.clock, e.sampling.since = func() time.Time { return now }, base
		}
		rng := rand.New(rand.NewPCG(11, 12))
		next := uint32(1 << 20)
		for i := range flood / 1000 {
			step := time.Duration(i+1) * 100 * time.Millisecond / (flood / 1000) // within 0.1 s
			now = base.Add(step)
			recs := make([]flow.Record, 1000)
			for j := range recs {
				end := at(100.5)
				if mode == eventTime {
					end = at(100).Add(step)
				}
				recs[j] = lineRecord(end, 0, uint64(64+rng.IntN(1437)))
				recs[j].SrcAddr = addrN(next)
				next++
			}
			_ = e.Write(recs)
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.sampling.kept
	}
	wall, event, none := run(wallClock), run(eventTime), run(noClock)
	for _, c := range []struct {
		name string
		fed  float64
	}{{"wall clock", wall}, {"event time", event}} {
		if c.fed > 2.5*budget {
			t.Errorf("%s: the flood's first tick fed %.0f records, want at most %d (2.5 budgets)", c.name, c.fed, 5*budget/2)
		}
	}
	if none < 1.5*wall {
		t.Errorf("without a clock %.0f records were fed, on the wall clock %.0f: want the clock to save a third or more", none, wall)
	}
	t.Logf("first tick fed %.0f records on the wall clock, %.0f in event time, %.0f without a clock (budget %d, flood %d)", wall, event, none, budget, flood)
}
