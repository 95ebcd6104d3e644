package networks

import (
	"encoding/binary"
	"github.com/spanflow/spanflow/internal/flow"
	"net/netip"
	"sort"
)

// u128 is an address as a number (IPv4 mapped into IPv6).
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

func (a u128) add1() (u128, bool) {
	lo := a.lo + 1
	hi := a.hi
	if lo == 0 {
		hi++
		if hi == 0 {
			return u128{}, false // past the last address
		}
	}
	return u128{hi, lo}, true
}

func (a u128) sub1() u128 {
	if a.lo == 0 {
		return u128{a.hi - 1, ^uint64(0)}
	}
	return u128{a.hi, a.lo - 1}
}

func toU128(a netip.Addr) u128 {
	if a.Is4() { // ::ffff:a.b.c.d, without As16's 16-byte copy
		b := a.As4()
		return u128{0, 0xffff<<32 | uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// interval is a run of addresses whose longest matching prefix is net.
type interval struct {
	start, end u128
	net        int32
}

// Table answers longest-prefix-match lookups by binary search over disjoint
// address intervals: CIDR prefixes are either nested or disjoint, so they
// flatten into runs that each belong to one most-specific prefix. It is
// immutable and safe for concurrent use.
type Table struct {
	starts []u128 // starts[i] == ivs[i].start, kept apart for a tight search
	ivs    []interval
	nets   []Network
}

// NewTable builds a table; prefixes must be distinct (Parse checks).
func NewTable(nets []Network) *Table {
	type pfx struct {
		start, end u128
		bits       int
		idx        int32
	}
	ps := make([]pfx, 0, len(nets))
	for i, n := range nets {
		p := canonical(n.Prefix)
		start := toU128(p.Addr())
		hostBits := 128 - p.Bits()
		end := start
		switch {
		case hostBits >= 64:
			end.lo = ^uint64(0)
			if hostBits == 128 {
				end.hi = ^uint64(0)
			} else {
				end.hi |= (uint64(1) << (hostBits - 64)) - 1
			}
		case hostBits > 0:
			end.lo |= (uint64(1) << hostBits) - 1
		}
		ps = append(ps, pfx{start, end, p.Bits(), int32(i)})
	}
	// Outer prefixes first at the same start, so inner ones nest on the stack.
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].start != ps[j].start {
			return ps[i].start.less(ps[j].start)
		}
		return ps[i].bits < ps[j].bits
	})
	nets = append([]Network(nil), nets...)
	for i := range nets {
		n := &nets[i]
		if n.Name != "" || n.Site != "" || n.Role != "" || n.Project != "" {
			n.Info = &flow.NetworkInfo{Name: n.Name, Site: n.Site, Role: n.Role, Project: n.Project}
		}
	}
	t := &Table{nets: nets}
	emit := func(from, to u128, idx int32) {
		if to.less(from) {
			return
		}
		t.ivs = append(t.ivs, interval{from, to, idx})
	}
	var stack []pfx
	var cur u128
	done := false // cur went past the last address
	for _, p := range ps {
		for len(stack) > 0 && stack[len(stack)-1].end.less(p.start) {
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if !done {
				emit(cur, top.end, top.idx)
			}
			var ok bool
			if cur, ok = top.end.add1(); !ok {
				done = true
			}
		}
		if len(stack) > 0 && cur.less(p.start) {
			emit(cur, p.start.sub1(), stack[len(stack)-1].idx)
		}
		cur = p.start
		stack = append(stack, p)
	}
	for len(stack) > 0 && !done {
		top := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		emit(cur, top.end, top.idx)
		var ok bool
		if cur, ok = top.end.add1(); !ok {
			done = true
		}
	}
	t.starts = make([]u128, len(t.ivs))
	for i, iv := range t.ivs {
		t.starts[i] = iv.start
	}
	return t
}

// Lookup returns the most specific network holding addr.
func (t *Table) Lookup(addr netip.Addr) (*Network, bool) {
	if t == nil || len(t.ivs) == 0 || !addr.IsValid() {
		return nil, false
	}
	a := toU128(addr) // As16 maps IPv4 as the table does
	// Last interval starting at or before a.
	lo, hi := 0, len(t.starts)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if a.less(t.starts[m]) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	if lo == 0 {
		return nil, false
	}
	iv := &t.ivs[lo-1]
	if iv.end.less(a) {
		return nil, false
	}
	return &t.nets[iv.net], true
}

// Networks lists the table's networks.
func (t *Table) Networks() []Network { return t.nets }
