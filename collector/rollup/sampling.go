package rollup

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
// budget. The heavy talkers, which send most of a row's bytes, are fed
// nearly in full; the tail, which is what a flood is made of, is what gets
// sampled.
type talkerSampling struct {
	budget  float64 // records a tick fed one by one; 0: no sampling
	z       float64 // threshold (bytes); 0: feed every record
	rng     uint64  // xorshift64* state
	offered float64 // records offered since the last tick
	bytes   float64 // their bytes
	kept    float64 // records fed since the last tick
	guard   float64 // kept at which z rises within the tick
	skipped uint64  // records not fed, in all
}

func newTalkerSampling(perSecond int, tickSeconds float64) talkerSampling {
	b := float64(perSecond) * tickSeconds
	if perSecond > 0 {
		b = max(b, 1)
	}
	return talkerSampling{budget: b, guard: b, rng: 0x9e3779b97f4a7c15}
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
		t.z = max(2*t.z, t.bytes/t.budget)
		t.guard += t.budget
	}
	return b
}

// tick sets the threshold for the next tick from the records offered over
// the last n ticks, and starts counting afresh.
func (t *talkerSampling) tick(n int64) {
	if t.budget == 0 || n <= 0 {
		return
	}
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
