package rollup

import "github.com/spanflow/spanflow/internal/addrhash"

// rttPending holds the handshake RTTs folded for one open bucket until it
// closes: then they join each series' current sketch with the bytes and
// handshake counts of the same records (else the quantiles ran Delay ahead
// of them).
//
// It keeps them as the pre-aggregates had them: the series a
// pre-aggregate touched, once, and its bins pointing at them; a bucket's
// closing adds each bin to each of those series. A slice of held entries
// per series, appended for every series a bin touched, was 40 % of the
// rollups' allocated bytes (BenchmarkRollup/mix+100rules), and a table
// per (series, bin) cost more in cache misses than it saved in merging.
// Tables are reused: an open bucket with handshakes takes one from the
// engine's free list and gives it back when it closes, so only the
// buckets between a record's end and its close (about Delay) hold one.
//
// Those lists grow with the records a bucket takes, so with the rate: past
// Engine.rttCompactFrom bins, a fold's end sums them per (series, bin) in
// a table (bounded by the series and the sketch's bins, not by the rate)
// and empties them.
type rttPending struct {
	series []*series         // the touched series of each pre-aggregate with handshakes, one after the other
	bins   []rttHeldBin      // their handshakes per sketch bin
	other  []rttOutsideRange // RTTs outside the sketch mapping's range (rare), per series
	sums   rttSums           // bins summed per (series, bin) by compact
}

// rttCompactFrom is how many held bins a bucket keeps as lists before a
// fold sums them (rttPending.compact): about 3 MiB with their series, some
// 70,000 handshakes at most. BenchmarkRollup/mix+100rules holds about
// 60,000 a bucket.
const rttCompactFrom = 1 << 16

// rttHeldBin is n handshakes of a sketch bin, for the series
// series[from : from+count].
type rttHeldBin struct {
	from, count int32
	bin         int32
	n           uint32
}

type rttOutsideRange struct {
	s  *series
	ms float64
}

// heldSeries returns the pending table of a's bucket and where a's
// touched series are in it, adding them the first time.
func (e *Engine) heldSeries(a *preAgg) (*rttPending, int32, int32) {
	pos := int(a.key.last % int64(e.ringLen))
	t := e.rttPend[pos]
	if t == nil {
		if n := len(e.rttFree); n > 0 {
			t, e.rttFree = e.rttFree[n-1], e.rttFree[:n-1]
		} else {
			t = &rttPending{}
		}
		e.rttPend[pos] = t
	}
	if a.held == 0 {
		t.series = append(t.series, a.touched[:a.n]...)
		a.held = int32(len(t.series) - a.n + 1)
	}
	return t, a.held - 1, int32(a.n)
}

// holdRTT keeps n handshakes of bin, seen by a's records, for a's bucket.
func (e *Engine) holdRTT(a *preAgg, bin int32, n uint32) {
	t, from, count := e.heldSeries(a)
	t.bins = append(t.bins, rttHeldBin{from: from, count: count, bin: bin, n: n})
}

// holdRTTOutside keeps one RTT of ms outside the mapping's range.
func (e *Engine) holdRTTOutside(a *preAgg, ms float64) {
	t, from, count := e.heldSeries(a)
	for _, s := range t.series[from : from+count] {
		t.other = append(t.other, rttOutsideRange{s: s, ms: ms})
	}
}

// compactRTT sums the held lists of every bucket past e.rttCompactFrom
// bins. Called at a fold's end, when no pre-aggregate points into them.
func (e *Engine) compactRTT() {
	for _, t := range e.rttPend {
		if t == nil || len(t.bins) < e.rttCompactFrom {
			continue
		}
		for _, h := range t.bins {
			for _, s := range t.series[h.from : h.from+h.count] {
				t.sums.add(s, h.bin, h.n)
			}
		}
		clear(t.series)
		t.series, t.bins = t.series[:0], t.bins[:0]
	}
}

// releaseRTT adds the handshakes held for the bucket at ring position pos
// into their series' current sketches.
func (e *Engine) releaseRTT(pos int) {
	t := e.rttPend[pos]
	if t == nil {
		return
	}
	for _, h := range t.bins {
		for _, s := range t.series[h.from : h.from+h.count] {
			s.rttFor(e).cur.GetPositiveValueStore().AddWithCount(int(h.bin), float64(h.n))
		}
	}
	t.sums.each(func(s *series, bin int32, n uint32) {
		s.rttFor(e).cur.GetPositiveValueStore().AddWithCount(int(bin), float64(n))
	})
	for _, o := range t.other {
		_ = o.s.rttFor(e).cur.Add(o.ms)
	}
	clear(t.series)
	clear(t.other)
	t.series, t.bins, t.other = t.series[:0], t.bins[:0], t.other[:0]
	e.rttPend[pos] = nil
	e.rttFree = append(e.rttFree, t)
}

// rttFor returns s's RTT state, made on first use, marked changed.
func (s *series) rttFor(e *Engine) *rttState {
	if s.rtt == nil {
		s.rtt = newRTTState(e.cfg.RTTAccuracy)
	}
	s.rtt.dirty = true
	return s.rtt
}

// rttSums counts handshakes per (series, bin): open addressing, growing.
type rttSums struct {
	slots []rttSum // a power of two long; n 0 is empty
	used  int
}

type rttSum struct {
	s   *series
	bin int32
	n   uint32
}

func (t *rttSums) add(s *series, bin int32, n uint32) {
	if t.used >= len(t.slots)>>1 {
		t.grow()
	}
	mask := len(t.slots) - 1
	i := int(addrhash.Fmix(s.id<<32^uint64(uint32(bin)))) & mask
	for {
		sl := &t.slots[i]
		switch {
		case sl.n == 0:
			*sl = rttSum{s: s, bin: bin, n: n}
			t.used++
			return
		case sl.s == s && sl.bin == bin:
			sl.n += n
			return
		}
		i = (i + 1) & mask
	}
}

func (t *rttSums) grow() {
	old := t.slots
	t.slots = make([]rttSum, max(1024, 2*len(old)))
	t.used = 0
	for _, sl := range old {
		if sl.n != 0 {
			t.add(sl.s, sl.bin, sl.n)
		}
	}
}

// each calls fn on every sum and empties the table.
func (t *rttSums) each(fn func(s *series, bin int32, n uint32)) {
	if t.used == 0 {
		return
	}
	for i := range t.slots {
		if sl := &t.slots[i]; sl.n != 0 {
			fn(sl.s, sl.bin, sl.n)
			*sl = rttSum{}
		}
	}
	t.used = 0
}
