package rollup

import (
	"math"
	"math/bits"

	"github.com/DataDog/sketches-go/ddsketch/mapping"
)

// binIndex is the RTT sketches' mapping's Index, the same bin for every
// value, without a logarithm for nearly all of them: the logarithm was a
// fifth of what the rollups cost a flow in BenchmarkFlows.
//
// Positive float64 values order as their bits do. The values of one binary
// exponent are cut into cells by the top mantissa bits, each narrower than
// half a bin, so that a cell holds at most one bin boundary. A cell, worked
// out from the mapping itself the first time a value of its exponent comes,
// keeps its lower bin and the bits of the first value of the next bin
// (found by bisection on Index); a value then only compares its bits with
// the boundary's. Values within a few units in the last place of a
// boundary, where the logarithm's rounding decides, and cells the check
// finds holding more than one boundary, ask the mapping.
type binIndex struct {
	m     mapping.IndexMapping
	shift uint   // 52 - mantissa bits a cell is cut by
	mask  uint64 // cells per exponent - 1
	exps  [2047]*[]binCell
}

type binCell struct {
	next int64 // bits of the cell's first value of bin lo+1; noBoundary: none
	lo   int32
	slow bool // ask the mapping
}

const (
	// noBoundary is above the bits of every positive value: all of a
	// cell's values are in bin lo.
	noBoundary = math.MaxInt64
	// nearBoundary: values this many units in the last place or fewer from
	// a boundary ask the mapping (the logarithm's error is below one).
	nearBoundary = 4
)

func newBinIndex(m mapping.IndexMapping) *binIndex {
	// Cells at most half a bin wide: 2^-k ≤ ln(gamma)/2, gamma the ratio
	// of a bin's bounds.
	gamma := m.LowerBound(1) / m.LowerBound(0)
	k := min(16, max(4, bits.Len(uint(math.Ceil(2/math.Log(gamma))))))
	return &binIndex{m: m, shift: uint(52 - k), mask: 1<<k - 1}
}

// index is m.Index(v), for v between the mapping's indexable bounds.
func (b *binIndex) index(v float64) int {
	x := math.Float64bits(v)
	e := x >> 52
	if e == 0 || e >= 2047 { // subnormal, or negative, infinite or NaN
		return b.m.Index(v)
	}
	cells := b.exps[e]
	if cells == nil {
		cells = b.build(e)
	}
	c := &(*cells)[x>>b.shift&b.mask]
	if c.slow {
		return b.m.Index(v)
	}
	switch d := int64(x) - c.next; {
	case d < -nearBoundary:
		return int(c.lo)
	case d > nearBoundary:
		return int(c.lo) + 1
	}
	return b.m.Index(v)
}

// build works out the cells of biased exponent e.
func (b *binIndex) build(e uint64) *[]binCell {
	cells := make([]binCell, b.mask+1)
	idx := func(x uint64) int { return b.m.Index(math.Float64frombits(x)) }
	least, most := b.m.MinIndexableValue(), b.m.MaxIndexableValue()
	for j := range cells {
		c := &cells[j]
		first := e<<52 | uint64(j)<<b.shift
		last := first + 1<<b.shift - 1
		if math.Float64frombits(first) <= least || math.Float64frombits(last) >= most {
			c.slow = true // the caller's bounds cut this cell; ask the mapping
			continue
		}
		lo, hi := idx(first), idx(last)
		switch {
		case hi == lo:
			c.lo, c.next = int32(lo), noBoundary
		case hi == lo+1:
			// The first value of bin hi: Index(a) = lo, Index(z) = hi.
			a, z := first, last
			for z-a > 1 {
				mid := a + (z-a)/2
				if idx(mid) == lo {
					a = mid
				} else {
					z = mid
				}
			}
			c.lo, c.next = int32(lo), int64(z)
		default:
			c.slow = true
		}
	}
	b.exps[e] = &cells
	return &cells
}
