package rollup

import (
	"net/netip"

	"github.com/spanflow/spanflow/internal/addrhash"
)

// spaceSaving is the Space-Saving heavy-hitter sketch (Metwally, Agrawal and
// El Abbadi, 2005) with k counters: a talker whose weight is more than
// 1/k of the total is always held, and a held talker's count exceeds its
// true weight by at most its err (the count of the counter it took over).
// Memory is k counters whatever the number of distinct addresses.
//
// Counts decay (older bytes weigh less, see Engine.talkerScale) without
// touching every counter each tick: they are stored divided by the decay
// so far, and multiplied back when read. A uniform factor keeps the order,
// so the min-heap stays valid.
type spaceSaving struct {
	k     int
	index addrIndex       // address -> slot; changes only on takeover
	slots []talkerCounter // counters; a slot never moves
	heap  []int32         // slots, a min-heap by count
	hc    []float64       // hc[i] is the count of slot heap[i]: the heap's comparisons read one array

	// The batch being added (addBatch): its number, and the smallest
	// count when it began (0 while the sketch is not full).
	batch uint64
	floor float64
	cands []talkerCand // the k heaviest addresses not held, until endBatch
}

type talkerCounter struct {
	addr  netip.Addr
	h     uint64 // addrHash(addr), kept for the takeover
	count float64
	err   float64 // overestimate bound: the count inherited on takeover
	hpos  int32   // position in heap
}

func newSpaceSaving(k int) *spaceSaving {
	return &spaceSaving{k: k, index: newAddrIndex(k)}
}

// add adds weight w (already divided by the decay) to addr.
func (s *spaceSaving) add(addr netip.Addr, w float64) {
	h := addrHash(addr)
	if i, ok := s.held(addr, h); ok {
		c := &s.slots[i]
		c.count += w
		s.hc[c.hpos] = c.count
		s.down(int(c.hpos))
		return
	}
	if len(s.slots) < s.k {
		s.insert(addr, h, w)
		return
	}
	// Take over the smallest counter.
	i := s.heap[0]
	min := &s.slots[i]
	s.index.remove(min.h, i)
	min.addr, min.h, min.err = addr, h, min.count
	min.count += w
	s.hc[0] = min.count
	s.index.put(h, i)
	s.down(0)
}

func (s *spaceSaving) insert(addr netip.Addr, h uint64, w float64) {
	i := int32(len(s.slots))
	s.slots = append(s.slots, talkerCounter{addr: addr, h: h, count: w, hpos: int32(len(s.heap))})
	s.heap = append(s.heap, i)
	s.hc = append(s.hc, w)
	s.index.put(h, i)
	s.up(len(s.heap) - 1)
}

// addBatch adds weight w to addr as part of batch, in which each address
// comes at most once: the sums of the records between two folds (see
// preagg.go); endBatch ends it. It reports whether it was the first of
// the batch. A held address adds w at once; one not held waits for
// endBatch, as a candidate weighing at most floor+w (floor, the smallest
// count when the batch began, bounds what any address outside the sketch
// weighed then).
func (s *spaceSaving) addBatch(addr netip.Addr, h uint64, w float64, batch uint64) bool {
	first := s.batch != batch
	if first {
		s.batch, s.floor = batch, 0
		s.cands = s.cands[:0]
		if len(s.slots) == s.k {
			s.floor = s.hc[0]
		}
	}
	if i, ok := s.held(addr, h); ok {
		c := &s.slots[i]
		c.count += w
		s.hc[c.hpos] = c.count
		s.down(int(c.hpos))
		return first
	}
	if len(s.slots) < s.k {
		s.insert(addr, h, w)
		return first
	}
	// Keep the k heaviest candidates (a min-heap by weight): no more can
	// enter, since after k takeovers the smallest counter is floor plus
	// the k-th heaviest weight. A candidate that cannot beat the smallest
	// counter now never will (counts only grow within a batch).
	if s.floor+w <= s.hc[0] {
		return first
	}
	if len(s.cands) < s.k {
		s.cands = append(s.cands, talkerCand{addr: addr, h: h, w: w})
		for i := len(s.cands) - 1; i > 0; {
			p := (i - 1) / 2
			if s.cands[p].w <= s.cands[i].w {
				break
			}
			s.cands[p], s.cands[i] = s.cands[i], s.cands[p]
			i = p
		}
		return first
	}
	if w <= s.cands[0].w {
		return first
	}
	s.cands[0] = talkerCand{addr: addr, h: h, w: w}
	siftCands(s.cands)
	return first
}

// siftCands restores the min-heap c after its root changed.
func siftCands(c []talkerCand) {
	for i, n := 0, len(c); ; {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && c[r].w < c[l].w {
			m = r
		}
		if c[i].w <= c[m].w {
			return
		}
		c[i], c[m] = c[m], c[i]
		i = m
	}
}

type talkerCand struct {
	addr netip.Addr
	h    uint64
	w    float64
}

// endBatch admits the batch's candidates, heaviest first: each takes over
// the smallest counter, with floor+w as its count and floor as its error,
// while floor+w exceeds that counter. The sketch's promises stay: every
// count bounds its address's weight from above, by at most its err, and an
// address outside the sketch weighs at most the smallest count. A tail of
// light addresses costs a lookup and a comparison each, not a takeover.
func (s *spaceSaving) endBatch() {
	if len(s.cands) == 0 {
		return
	}
	// The candidates are a min-heap by weight: heapsort them, heaviest
	// first (no comparison function called per step).
	c := s.cands
	for n := len(c) - 1; n > 0; n-- {
		c[0], c[n] = c[n], c[0]
		siftCands(c[:n])
	}
	for _, x := range c {
		i := s.heap[0]
		min := &s.slots[i]
		if s.floor+x.w <= s.hc[0] {
			break
		}
		s.index.remove(min.h, i)
		min.addr, min.h, min.count, min.err = x.addr, x.h, s.floor+x.w, s.floor
		s.hc[0] = min.count
		s.index.put(x.h, i)
		s.down(0)
	}
	s.cands = s.cands[:0]
}

func (s *spaceSaving) less(i, j int) bool { return s.hc[i] < s.hc[j] }

func (s *spaceSaving) swap(i, j int) {
	s.heap[i], s.heap[j] = s.heap[j], s.heap[i]
	s.hc[i], s.hc[j] = s.hc[j], s.hc[i]
	s.slots[s.heap[i]].hpos = int32(i)
	s.slots[s.heap[j]].hpos = int32(j)
}

func (s *spaceSaving) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !s.less(i, p) {
			return
		}
		s.swap(i, p)
		i = p
	}
}

func (s *spaceSaving) down(i int) {
	n := len(s.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && s.less(r, l) {
			m = r
		}
		if !s.less(m, i) {
			return
		}
		s.swap(i, m)
		i = m
	}
}

// scale multiplies every count by f (renormalising the decay).
func (s *spaceSaving) scale(f float64) {
	for i := range s.slots {
		s.slots[i].count *= f
		s.slots[i].err *= f
	}
	for i := range s.hc {
		s.hc[i] *= f
	}
}

// top returns the n heaviest counters, heaviest first (equal counts by
// address), into dst. A row lists a few of a sketch's counters: they are
// picked in one pass with an insertion into the few kept, not by sorting
// all k (a tick of a thousand lines sorted 128 counters each).
func (s *spaceSaving) top(dst []talkerCounter, n int) []talkerCounter {
	dst = dst[:0]
	if n <= 0 {
		return dst
	}
	for i := range s.slots {
		c := &s.slots[i]
		if len(dst) == n && !heavierTalker(c, &dst[n-1]) {
			continue
		}
		if len(dst) < n {
			dst = append(dst, *c)
		}
		j := len(dst) - 1
		for ; j > 0 && heavierTalker(c, &dst[j-1]); j-- {
			dst[j] = dst[j-1]
		}
		dst[j] = *c
	}
	return dst
}

// heavierTalker orders talkers: the larger count first, then the lower address.
func heavierTalker(a, b *talkerCounter) bool {
	if a.count != b.count {
		return a.count > b.count
	}
	return a.addr.Less(b.addr)
}

// reset forgets every talker (the memory is kept).
func (s *spaceSaving) reset() {
	s.index.reset()
	s.cands, s.batch = s.cands[:0], 0
	s.slots, s.heap, s.hc = s.slots[:0], s.heap[:0], s.hc[:0]
}

// addrHash hashes a source address for the talker tables and sketches,
// keyed (addrhash.Words): with a public hash a sender of spoofed traffic
// could pick thousands of sources whose hashes share their low bits, which
// the open-addressing tables probe (TestAddrHashNeedsTheSeed).
func addrHash(a netip.Addr) uint64 {
	return addrhash.Words(addrWords(a))
}

// addrIndex maps the addresses of a sketch's counters to their slots: open
// addressing with linear probing in twice as many places as counters, one
// word a place: the high half of the address's hash, which also picks its
// home place, above slot+1 (0: empty). A probe compares the hash halves,
// then the counter's own address; a removal knows its slot and reads no
// address; moving entries back finds their home in the word. Under a flood
// every batch takes over counters of a thousand sketches out of the
// caches: three arrays (addresses, hashes, slots) were three misses a
// place, 12 % of BenchmarkRollup/flood-1000lines in the removal alone.
type addrIndex struct {
	places []uint64
	n      int
}

func newAddrIndex(k int) addrIndex {
	return addrIndex{places: make([]uint64, pow2(2*k))}
}

func placeOf(h uint64, slot int32) uint64 { return h&^0xffffffff | uint64(uint32(slot+1)) }

func (x *addrIndex) len() int { return x.n }

// get finds a (hash h) among the counters cs the index maps.
func (x *addrIndex) get(a netip.Addr, h uint64, cs []talkerCounter) (int32, bool) {
	mask := len(x.places) - 1
	hi := h >> 32
	for i := int(hi) & mask; ; i = (i + 1) & mask {
		v := x.places[i]
		if v == 0 {
			return 0, false
		}
		if v>>32 == hi {
			if s := int32(uint32(v)) - 1; cs[s].addr == a {
				return s, true
			}
		}
	}
}

// put adds slot, whose address (hash h) is not in the index.
func (x *addrIndex) put(h uint64, slot int32) {
	mask := len(x.places) - 1
	i := int(h>>32) & mask
	for x.places[i] != 0 {
		i = (i + 1) & mask
	}
	x.places[i] = placeOf(h, slot)
	x.n++
}

// remove deletes slot, whose address has hash h, shifting back the
// entries after it so that no probe sequence breaks.
func (x *addrIndex) remove(h uint64, slot int32) {
	mask := len(x.places) - 1
	want := placeOf(h, slot)
	i := int(h>>32) & mask
	for x.places[i] != want {
		i = (i + 1) & mask
	}
	for j := (i + 1) & mask; x.places[j] != 0; j = (j + 1) & mask {
		home := int(x.places[j]>>32) & mask
		// Move j back to i when i lies on j's probe path (home..j).
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			x.places[i] = x.places[j]
			i = j
		}
	}
	x.places[i] = 0
	x.n--
}

func (x *addrIndex) reset() {
	clear(x.places)
	x.n = 0
}

// held finds the counter of addr (hash h).
func (s *spaceSaving) held(addr netip.Addr, h uint64) (int32, bool) {
	return s.index.get(addr, h, s.slots)
}

// holds says whether addr has a counter.
func (s *spaceSaving) holds(addr netip.Addr) bool {
	_, ok := s.held(addr, addrHash(addr))
	return ok
}
