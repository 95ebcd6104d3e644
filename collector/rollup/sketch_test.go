package rollup

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

func addrN(n uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
}

// TestRTTQuantiles compares the rows' RTT quantiles with the exact
// quantiles of the generated RTTs: DDSketch promises a relative error of
// at most its accuracy (1 %).
func TestRTTQuantiles(t *testing.T) {
	e := newTestEngine(t, func(c *Configuration) { c.Delay = 0 })
	e.Tick(at(100))
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 50000
	rtts := make([]float64, n)
	recs := make([]flow.Record, n)
	for i := range recs {
		// Log-normal around 2 ms with a long tail, in whole nanoseconds.
		d := time.Duration(math.Exp(rng.NormFloat64()*0.8) * 2e6)
		rtts[i] = float64(d) / 1e6
		recs[i] = flow.Record{ObserverIP: exp1, Received: at(100.5), Proto: 6, SrcPort: 50000, DstPort: 443,
			Bytes: 100, Packets: 1, TCP: flow.TCPPerf{RTTServer: d}}
	}
	e.Write(recs)
	s := e.Tick(at(101))
	r := row(s, ScopeService, "tcp/443")
	slices.Sort(rtts)
	for _, c := range []struct {
		q    float64
		name string
	}{{0.5, RTTp50}, {0.95, RTTp95}, {0.99, RTTp99}} {
		got := r.Values.Of(c.name)
		// Either neighbour of the quantile's rank is a right answer.
		lo, hi := rtts[int(math.Floor(c.q*(n-1)))], rtts[int(math.Ceil(c.q*(n-1)))]
		if got < lo*(1-0.01) || got > hi*(1+0.01) {
			t.Errorf("%s = %v ms, exact %v..%v: off by more than 1%%", c.name, got, lo, hi)
		}
	}
}

// TestSpaceSavingBounds checks the sketch's guarantees on a Zipf stream:
// every count bounds the true weight from above, by at most its err, and
// every talker heavier than total/k is held.
func TestSpaceSavingBounds(t *testing.T) {
	const k = 32
	s := newSpaceSaving(k)
	exact := map[netip.Addr]float64{}
	rng := rand.New(rand.NewPCG(3, 4))
	z := rand.NewZipf(rng, 1.2, 1, 99999)
	total := 0.0
	for range 200000 {
		a := addrN(uint32(z.Uint64()))
		w := float64(100 + rng.IntN(1400))
		s.add(a, w)
		exact[a] += w
		total += w
	}
	if len(s.slots) != k || s.index.len() != k {
		t.Fatalf("%d counters, %d indexed; want %d", len(s.heap), s.index.len(), k)
	}
	for _, c := range s.slots {
		truth := exact[c.addr]
		if c.count < truth-1e-6 || c.count-c.err > truth+1e-6 {
			t.Errorf("%v: count %v err %v, true %v", c.addr, c.count, c.err, truth)
		}
	}
	for a, w := range exact {
		if held := s.holds(a); w > total/k && !held {
			t.Errorf("%v weighs %v > total/k = %v but is not held", a, w, total/k)
		}
	}
}

// TestTopTalkersZipf compares a line's top talkers with the exact top 10
// of a Zipf mix of 100,000 addresses.
func TestTopTalkersZipf(t *testing.T) {
	// 200,000 records in a tick: the sketch alone, without sampling
	// (TestTalkerSampling).
	e := newTestEngine(t, func(c *Configuration) { c.Delay = 0; c.TalkerBudget = 0 })
	e.Tick(at(100))
	rng := rand.New(rand.NewPCG(5, 6))
	z := rand.NewZipf(rng, 1.2, 1, 99999)
	exact := map[netip.Addr]float64{}
	recs := make([]flow.Record, 0, 1000)
	for range 200 {
		recs = recs[:0]
		for range 1000 {
			r := lineRecord(at(100.5), 0, uint64(100+rng.IntN(1400)))
			r.SrcAddr = addrN(uint32(z.Uint64()))
			exact[r.SrcAddr] += float64(r.Bytes)
			recs = append(recs, r)
		}
		e.Write(recs)
	}
	s := e.Tick(at(101))
	r := row(s, ScopeLine, "10.0.0.1 eth0")
	type kv struct {
		a netip.Addr
		w float64
	}
	var all []kv
	for a, w := range exact {
		all = append(all, kv{a, w})
	}
	slices.SortFunc(all, func(x, y kv) int { return cmp.Compare(y.w, x.w) })
	if len(r.Top) != 10 {
		t.Fatalf("%d talkers, want 10", len(r.Top))
	}
	// All bytes fell in one tick: the estimate is bytes x (1-d) for the
	// decay d of one tick (see fillRow). Space-Saving overestimates
	// by at most total/k.
	d := math.Exp(-1.0 / 10)
	total := 0.0
	for _, x := range all {
		total += x.w
	}
	bound := total / float64(e.cfg.TalkerCounters)
	want := map[netip.Addr]bool{}
	for _, x := range all[:10] {
		want[x.a] = true
	}
	for i, tk := range r.Top {
		if !want[tk.Addr] {
			t.Errorf("talker %d: %v is not in the exact top 10 %v", i, tk.Addr, all[:10])
		}
		est := tk.BytesPerSecond / (1 - d)
		if w := exact[tk.Addr]; est < w-1e-6 || est > w+bound {
			t.Errorf("talker %d %v: estimated %v bytes, exact %v (bound +%v)", i, tk.Addr, est, w, bound)
		}
	}
}

// TestMemoryBound sends a million distinct source addresses through one
// line and project, and more VM names than MaxSeries: what the engine
// holds stays within its bounds, and the overflow is counted.
func TestMemoryBound(t *testing.T) {
	e := newTestEngine(t, func(c *Configuration) { c.Delay = 0; c.MaxSeries = 1000 })
	e.Tick(at(100))
	recs := make([]flow.Record, 1000)
	for batch := range 1000 {
		for i := range recs {
			n := uint32(batch*1000 + i)
			r := lineRecord(at(100.5), 0, 1000)
			r.SrcAddr = addrN(n)
			r.Src.VSphere = &flow.VSphere{VMName: fmt.Sprintf("vm-%d", n%20000), Project: "payments"}
			recs[i] = r
		}
		e.Write(recs)
	}
	e.Tick(at(101))
	st := e.State()
	want := map[string]int{ScopeLine: 1, ScopeProject: 1, ScopeVM: 1001, ScopeService: 1, ScopeExporter: 1}
	if fmt.Sprint(st.Series) != fmt.Sprint(want) {
		t.Errorf("series %v, want %v", st.Series, want)
	}
	if k := e.cfg.TalkerCounters; st.TalkerCounters != 2*k {
		t.Errorf("%d talker counters held, want %d (k = %d for one line and one project)", st.TalkerCounters, 2*k, k)
	}
	// vm-0 .. vm-999 have series: 50 records each of the 20,000 names.
	if got := e.stats.overflow[scopeVM]; got != 1_000_000-50*1000 {
		t.Errorf("%d records counted in the VM overflow, want %d", got, 1_000_000-50*1000)
	}
	s := e.Tick(at(102))
	if r := row(s, ScopeVM, OtherKey); r == nil || r.Labels["overflow"] != "true" {
		t.Errorf("no overflow row: %+v", r)
	}
}

// TestMetricsBound checks that only the MetricSeries heaviest keys of a
// scope get Prometheus series, and that the metrics pass promlint.
func TestMetricsBound(t *testing.T) {
	rep := reporter.NewForTest(nil)
	cfg := DefaultConfiguration()
	cfg.Delay, cfg.MetricSeries = 0, 5
	e, err := New(rep, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.Tick(at(100))
	var recs []flow.Record
	for p := range 50 {
		r := lineRecord(at(100.5), 0, uint64(1000*(p+1)))
		r.Src.Network = &flow.NetworkInfo{Project: fmt.Sprintf("p%02d", p)}
		recs = append(recs, r)
	}
	e.Write(recs)
	e.Tick(at(101))
	mfs, err := rep.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, mf := range mfs {
		if mf.GetName() != "spanflow_rollup_bytes_per_second" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["scope"] == ScopeProject {
				keys = append(keys, labels["key"])
			}
		}
	}
	slices.Sort(keys)
	if want := []string{"p45", "p46", "p47", "p48", "p49"}; fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Errorf("project series %v, want the 5 heaviest %v", keys, want)
	}
	testutil.LintMetrics(t, prometheus.Gatherer(rep.Registry), "spanflow_rollup")
}

// TestRTTReadStores checks that reading prev and cur together gives the
// very values of the library's own read of the two merged (rttState.read
// before readStores), over windows of every shape: empty, one side, both,
// disjoint and overlapping ranges, a single handshake, values at zero.
func TestRTTReadStores(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	scratch := make([]float64, rttReadSpan)
	r := newRTTState(0.01)
	for round := range 400 {
		if round%3 == 0 {
			r.rotate()
		}
		n := rng.IntN(40)
		if round%17 == 0 {
			n = 1
		}
		scale := math.Exp(rng.Float64() * 12) // 1 to 160,000 ms
		for range n {
			v := scale * (0.01 + rng.ExpFloat64())
			if round%41 == 5 {
				v = 0 // the zero count: readStores refuses, read merges
			}
			if err := r.cur.Add(v); err != nil {
				t.Fatal(err)
			}
		}
		r.dirty = true
		got, gotOK := r.read(scratch)
		r.merged.Clear()
		if err := r.merged.MergeWith(r.prev); err != nil {
			t.Fatal(err)
		}
		if err := r.merged.MergeWith(r.cur); err != nil {
			t.Fatal(err)
		}
		if r.merged.IsEmpty() {
			if gotOK {
				t.Fatalf("round %d: quantiles %v of no handshake", round, got)
			}
			continue
		}
		want, err := r.merged.GetValuesAtQuantiles(quantiles)
		if err != nil {
			t.Fatal(err)
		}
		if !gotOK || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("round %d (%v and %v handshakes): %v, %v; merged sketch: %v", round,
				r.prev.GetCount(), r.cur.GetCount(), got, gotOK, want)
		}
	}
}

// TestTopAsSorted: top picks the same counters, in the same order, as
// sorting every counter by count (heaviest first) then address, for every
// n, on sketches with many equal counts and with none.
func TestTopAsSorted(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 300 {
		k := 1 + rng.IntN(200)
		s := newSpaceSaving(k)
		distinct := 1 + rng.IntN(3*k)
		for range rng.IntN(5 * k) {
			w := float64(1 + rng.IntN(4)) // few weights: many ties
			if trial%2 == 0 {
				w = rng.Float64() * 1000
			}
			s.add(addrN(uint32(rng.IntN(distinct))), w)
		}
		want := slices.Clone(s.slots)
		slices.SortFunc(want, func(a, b talkerCounter) int {
			if c := cmp.Compare(b.count, a.count); c != 0 {
				return c
			}
			return a.addr.Compare(b.addr)
		})
		var got []talkerCounter
		for _, n := range []int{0, 1, 2, 10, k - 1, k, k + 5} {
			got = s.top(got, n)
			w := want[:max(0, min(n, len(want)))]
			if !slices.Equal(got, w) {
				t.Fatalf("trial %d, k %d, n %d: top %v, want %v", trial, k, n, got, w)
			}
		}
	}
}

// TestSpaceSavingHeap: after adds, batches and rescaling, the heap is a
// min-heap whose counts (hc) are those of its slots, each slot knowing its
// place, and the index finds every held address.
func TestSpaceSavingHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for trial := range 200 {
		k := 1 + rng.IntN(150)
		s := newSpaceSaving(k)
		distinct := 1 + rng.IntN(4*k)
		batch := uint64(0)
		for op := range 20 {
			switch op % 3 {
			case 0:
				for range rng.IntN(3 * k) {
					s.add(addrN(uint32(rng.IntN(distinct))), 1+rng.Float64()*100)
				}
			case 1:
				batch++
				seen := map[uint32]bool{}
				for range rng.IntN(3 * k) {
					n := uint32(rng.IntN(distinct))
					if seen[n] { // a batch adds an address once
						continue
					}
					seen[n] = true
					a := addrN(n)
					s.addBatch(a, addrHash(a), 1+rng.Float64()*100, batch)
				}
				s.endBatch()
			case 2:
				s.scale(0.5 + rng.Float64())
			}
			if len(s.hc) != len(s.heap) || len(s.heap) != len(s.slots) {
				t.Fatalf("trial %d: %d counts, %d heap places, %d slots", trial, len(s.hc), len(s.heap), len(s.slots))
			}
			for i, slot := range s.heap {
				c := &s.slots[slot]
				if s.hc[i] != c.count || int(c.hpos) != i {
					t.Fatalf("trial %d op %d: heap place %d: count %v, slot's %v, slot's place %d", trial, op, i, s.hc[i], c.count, c.hpos)
				}
				if i > 0 && s.hc[(i-1)/2] > s.hc[i] {
					t.Fatalf("trial %d op %d: heap order broken at %d", trial, op, i)
				}
				if got, ok := s.held(c.addr, c.h); !ok || got != slot {
					t.Fatalf("trial %d op %d: index finds %s at %d (%v), want %d", trial, op, c.addr, got, ok, slot)
				}
			}
		}
	}
}

// TestAddrIndexHashCollision: the index keeps only the high half of an
// address's hash; two addresses whose halves are equal must still be two
// counters, each found with its own weight, and removing one must leave
// the other.
func TestAddrIndexHashCollision(t *testing.T) {
	seen := map[uint64]netip.Addr{}
	var a, b netip.Addr
	for n := uint32(0); !b.IsValid(); n++ {
		x := addrN(n)
		hi := addrHash(x) >> 32
		if y, ok := seen[hi]; ok {
			a, b = y, x
		}
		seen[hi] = x
	}
	s := newSpaceSaving(4)
	s.add(a, 10)
	s.add(b, 1)
	for _, c := range []struct {
		addr netip.Addr
		w    float64
	}{{a, 10}, {b, 1}} {
		i, ok := s.held(c.addr, addrHash(c.addr))
		if !ok || s.slots[i].addr != c.addr || s.slots[i].count != c.w {
			t.Fatalf("%v (hash half shared with another address): held %v, slot %+v; want count %v", c.addr, ok, s.slots[i], c.w)
		}
	}
	// Fill the sketch so that b, the lightest, is taken over.
	for n := range 3 {
		s.add(addrN(1<<31+uint32(n)), 5)
	}
	s.add(addrN(1<<30), 5)
	if s.holds(b) {
		t.Fatalf("%v still held after its counter was taken over", b)
	}
	if i, ok := s.held(a, addrHash(a)); !ok || s.slots[i].count != 10 {
		t.Fatalf("%v lost when %v, whose hash half it shares, left", a, b)
	}
}

// TestTopTalkersSteady: a sender steady at 3,000 bytes a second reads
// 3,000 bytes per second among the talkers, as its line does, and one at
// 1,000 reads 1,000 (docs/rollups.md: "a steady sender reads its rate").
// They read e^(-1/10) of it, 10 % low: the tick's decay was applied to
// the bytes of the tick just fed before they were read.
func TestTopTalkersSteady(t *testing.T) {
	e := newTestEngine(t, func(c *Configuration) { c.Delay = 0 })
	e.Tick(at(100))
	heavy, light := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11")
	var s *Snapshot
	for sec := 100; sec < 300; sec++ {
		a, b := lineRecord(at(float64(sec)+0.5), 0, 3000), lineRecord(at(float64(sec)+0.5), 0, 1000)
		a.SrcAddr, b.SrcAddr = heavy, light
		if err := e.Write([]flow.Record{a, b}); err != nil {
			t.Fatal(err)
		}
		s = e.Tick(at(float64(sec + 1)))
	}
	r := row(s, ScopeLine, "10.0.0.1 eth0")
	if got := r.Values.Of(BytesPerSecond); got != 4000 {
		t.Fatalf("line: %v bytes/s, want 4000", got)
	}
	want := map[netip.Addr]float64{heavy: 3000, light: 1000}
	if len(r.Top) != 2 {
		t.Fatalf("talkers %v, want 2", r.Top)
	}
	for _, tk := range r.Top {
		if w := want[tk.Addr]; math.Abs(tk.BytesPerSecond-w) > 1e-3*w {
			t.Errorf("talker %v: %.1f bytes/s, sends %v", tk.Addr, tk.BytesPerSecond, w)
		}
	}
}
