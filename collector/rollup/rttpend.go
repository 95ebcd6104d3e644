package rollup

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
type rttPending struct {
	series []*series      // the touched series of each pre-aggregate with handshakes, one after the other
	bins   []rttHeldBin   // their handshakes per sketch bin
	other  []rttHeldOther // RTTs outside the sketch mapping's range
}

// rttHeldBin is n handshakes of a sketch bin, for the series
// series[from : from+count].
type rttHeldBin struct {
	from, count int32
	bin         int32
	n           uint32
}

type rttHeldOther struct {
	from, count int32
	ms          float64
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
	t.other = append(t.other, rttHeldOther{from: from, count: count, ms: ms})
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
	for _, h := range t.other {
		for _, s := range t.series[h.from : h.from+h.count] {
			_ = s.rttFor(e).cur.Add(h.ms)
		}
	}
	clear(t.series)
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
