package rollup

import "time"

// talkerSampling bounds how many records a second feed the talker
// sketches, whatever the traffic: each record fed costs a probe into the
// (row, source) table per row and its share of the sketches' folds, about
// 0.4 µs a record from one exporter and 0.9 µs from 500 when every source
// is new (a flood), most of what the rollups cost then.
//
// Under the budget every record is fed with its bytes, and the sketches
// are as exact as Space-Saving makes them. Over it, the engine uses
// threshold sampling (Duffield, Lund and Thorup, "Learn more, sample
// less", 2005): with a threshold z, a record of b ≥ z bytes is fed as it
// is, a lighter one with probability b/z as if it had z bytes, so that
// every talker's expected count is its true one, and the records fed are
// at most the bytes offered divided by z. z is set at each tick from the
// records of the ticks just past (their bytes over the budget: at most the
// budget is fed a tick, in expectation), and raised within a tick each
// time it has fed another budget's worth (a flood starting between two
// ticks): at least doubled, and to the bytes offered so far over the
// budget. On a clock (the wall clock live, the records' own time in a
// replay) it is raised further, to what the bytes offered so far come to
// over the whole tick at the rate they came at (over the budget): a flood
// of ten budgets a tick then feeds one to two budgets in its first tick
// instead of about four (TestTalkerSamplingFloodStart). The heavy talkers,
// which send most of a row's bytes, are fed nearly in full; the tail,
// which is what a flood is made of, is what gets sampled.
type talkerSampling struct {
	budget  float64 // records a tick fed one by one; 0: no sampling
	z       float64 // threshold (bytes); 0: feed every record
	rng     uint64  // xorshift64* state
	offered float64 // records offered since the last tick
	bytes   float64 // their bytes
	kept    float64 // records fed since the last tick
	guard   float64 // kept at which z rises within the tick
	skipped uint64  // records not fed, in all

	// The clock (nil: none) and when the tick began on it (set with the
	// clock by Engine.Start, then by every tick), and how long a tick is.
	// Live it is the wall clock; in event time (a replay) the latest
	// record's end, under the engine's lock.
	clock   func() time.Time
	since   time.Time
	tickDur time.Duration
}

func newTalkerSampling(perSecond int, tick time.Duration) talkerSampling {
	b := float64(perSecond) * tick.Seconds()
	if perSecond > 0 {
		b = max(b, 1)
	}
	return talkerSampling{budget: b, guard: b, rng: 0x9e3779b97f4a7c15, tickDur: tick}
}

// weight decides for a record whose part in the open ticks has b bytes
// (b > 0): it returns the bytes to feed, b or z, or 0 when the record is
// not fed.
func (t *talkerSampling) weight(b float64) float64 {
	if t.budget == 0 {
		return b
	}
	t.offered++
	t.bytes += b
	if z := t.z; b < z {
		if t.uniform()*z >= b {
			t.skipped++
			return 0
		}
		b = z
	}
	if t.kept++; t.kept >= t.guard {
		z := max(2*t.z, t.bytes/t.budget)
		if t.clock != nil {
			// f of the tick has gone by; the bytes so far over f are the
			// tick's at this rate. A tick time that is not the clock's
			// (a test's ticks by hand) gives f out of (0, 1): ignored.
			if f := float64(t.clock().Sub(t.since)) / float64(t.tickDur); f > 0 && f < 1 {
				z = max(z, t.bytes/(max(f, 0.01)*t.budget))
			}
		}
		t.z = z
		t.guard += t.budget
	}
	return b
}

// tick sets the threshold for the next tick from the records offered over
// the last n ticks, and starts counting afresh; now is the tick's time.
func (t *talkerSampling) tick(n int64, now time.Time) {
	if t.budget == 0 || n <= 0 {
		return
	}
	t.since = now
	b := t.budget * float64(n)
	t.z = 0
	if t.offered > b {
		t.z = t.bytes / b
	}
	t.offered, t.bytes, t.kept, t.guard = 0, 0, 0, t.budget
}

// uniform returns a pseudo-random number in [0, 1) (xorshift64*). It is
// called for nearly every record over the budget: math/rand/v2's PCG in
// its place made BenchmarkRollup/mix 3-9 % slower.
func (t *talkerSampling) uniform() float64 {
	x := t.rng
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	t.rng = x
	return float64((x*0x2545f4914f6cdd1d)>>11) / (1 << 53)
}
