package rollup

import (
	"net/netip"
	"sort"
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
	index map[netip.Addr]int32 // address -> slot; changes only on takeover
	slots []talkerCounter      // counters; a slot never moves
	heap  []int32              // slots, a min-heap by count
}

type talkerCounter struct {
	addr  netip.Addr
	count float64
	err   float64 // overestimate bound: the count inherited on takeover
	hpos  int32   // position in heap
}

func newSpaceSaving(k int) *spaceSaving {
	return &spaceSaving{k: k, index: make(map[netip.Addr]int32, k)}
}

// add adds weight w (already divided by the decay) to addr.
func (s *spaceSaving) add(addr netip.Addr, w float64) {
	if i, ok := s.index[addr]; ok {
		c := &s.slots[i]
		c.count += w
		s.down(int(c.hpos))
		return
	}
	if len(s.slots) < s.k {
		i := int32(len(s.slots))
		s.slots = append(s.slots, talkerCounter{addr: addr, count: w, hpos: int32(len(s.heap))})
		s.heap = append(s.heap, i)
		s.index[addr] = i
		s.up(len(s.heap) - 1)
		return
	}
	// Take over the smallest counter.
	i := s.heap[0]
	min := &s.slots[i]
	delete(s.index, min.addr)
	min.addr, min.err = addr, min.count
	min.count += w
	s.index[addr] = i
	s.down(0)
}

func (s *spaceSaving) less(i, j int) bool { return s.slots[s.heap[i]].count < s.slots[s.heap[j]].count }

func (s *spaceSaving) swap(i, j int) {
	s.heap[i], s.heap[j] = s.heap[j], s.heap[i]
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
}

// top returns the n heaviest counters, heaviest first, into dst.
func (s *spaceSaving) top(dst []talkerCounter, n int) []talkerCounter {
	dst = append(dst[:0], s.slots...)
	sort.Slice(dst, func(i, j int) bool {
		if dst[i].count != dst[j].count {
			return dst[i].count > dst[j].count
		}
		return dst[i].addr.Less(dst[j].addr)
	})
	if len(dst) > n {
		dst = dst[:n]
	}
	return dst
}

// reset forgets every talker (the memory is kept).
func (s *spaceSaving) reset() {
	clear(s.index)
	s.slots, s.heap = s.slots[:0], s.heap[:0]
}
