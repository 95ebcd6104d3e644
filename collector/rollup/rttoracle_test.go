package rollup

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"

	"github.com/spanflow/spanflow/internal/flow"
)

// TestRTTMatchesOracle writes batches of records ending anywhere around
// the open buckets (late ones, future ones) through an engine with tiny
// tables (folds and RTT table flushes mid-batch, compaction of the held
// lists), ticks by random steps (none, one second, several, past the
// ring), and compares every row's RTT quantiles with a sketch fed each
// record's RTT once the bucket it ends in (or the last open one) closes.
func TestRTTMatchesOracle(t *testing.T) {
	for seed := range uint64(6) {
		for _, window := range []int{7, 3600} {
			t.Run(fmt.Sprint(seed, "/", window), func(t *testing.T) { testRTTOracle(t, seed, window) })
		}
	}
}

// rttOracle is a series' RTT sketches as the engine documents them: the
// current window's and the one before, rotated every window.
type rttOracle struct{ cur, prev *ddsketch.DDSketch }

func testRTTOracle(t *testing.T, seed uint64, window int) {
	const delay = 3
	e := newTestEngine(t, func(c *Configuration) {
		c.Delay, c.RTTWindow = delay*time.Second, time.Duration(window)*time.Second
	})
	e.pre.max = 4
	e.pre.slots = make([]uint64, 8)
	e.pre.rtt = newCountTable(16, 16)
	e.pre.talkers = newTalkerTable(16, 16)
	e.rttCompactFrom = 8
	rng := rand.New(rand.NewPCG(seed, 99))
	rl := int64(e.ringLen)

	pending := map[int64]map[string][]float64{} // bucket -> key -> RTTs (ms)
	sketches := map[string]*rttOracle{}
	rttTick := 0
	closeOne := func(b int64) {
		for k, ms := range pending[b] {
			if sketches[k] == nil {
				sketches[k] = &rttOracle{newRTTState(e.cfg.RTTAccuracy).cur, newRTTState(e.cfg.RTTAccuracy).cur}
			}
			for _, v := range ms {
				_ = sketches[k].cur.Add(v)
			}
		}
		delete(pending, b)
		if rttTick++; rttTick >= window {
			rttTick = 0
			for _, o := range sketches {
				o.prev, o.cur = o.cur, o.prev
				o.cur.Clear()
			}
		}
	}
	now := 100.0
	e.Tick(at(now))
	closed := int64(100-delay) - 1
	exps := []netip.Addr{exp1, netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")}
	for step := range 60 {
		var recs []flow.Record
		for range rng.IntN(400) {
			// Ends from one second before the open buckets to two after.
			end := float64(closed) + rng.Float64()*float64(rl+3)
			dur := 0.0
			if rng.IntN(2) == 0 {
				dur = rng.Float64() * 6
			}
			r := flow.Record{ObserverIP: exps[rng.IntN(len(exps))], Received: at(end), End: at(end), Start: at(end - dur),
				SrcAddr: addrN(uint32(rng.IntN(50))), DstAddr: addrN(1000), InIf: uint32(1 + rng.IntN(4)),
				Proto: 6, SrcPort: uint16(1000 + rng.IntN(3)), DstPort: uint16(443 + rng.IntN(2)), TCPFlags: 0x1b,
				Bytes: 1000, Packets: 10, TCP: flow.TCPPerf{RTTServer: time.Duration(1000 + rng.IntN(80_000_000))}}
			recs = append(recs, r)
			eIdx := floorDiv(at(end).UnixNano(), 1e9)
			if sIdx := floorDiv(at(end-dur).UnixNano(), 1e9); eIdx < closed+1 || sIdx > closed+rl {
				continue // late, or all in the future
			}
			b := min(eIdx, closed+rl)
			if pending[b] == nil {
				pending[b] = map[string][]float64{}
			}
			for _, k := range oracleKeys(&r) {
				pending[b][k] = append(pending[b][k], float64(r.TCP.RTTServer)/1e6)
			}
		}
		if err := e.Write(recs); err != nil {
			t.Fatal(err)
		}
		switch x := rng.IntN(10); {
		case x == 0:
			now += 0.3
		case x < 6:
			now++
		case x < 9:
			now += float64(2 + rng.IntN(int(rl)))
		default:
			now += float64(int(rl) + 1 + rng.IntN(20)) // past the ring
		}
		s := e.Tick(at(now))
		if target := floorDiv(at(now).UnixNano()-delay*1e9, 1e9) - 1; target > closed {
			// As Tick closes them: one by one up to the ring's length,
			// then at most a ring's length more, the rest skipped.
			steps := target - closed
			k1 := min(steps-1, rl)
			k2 := min(steps-k1, rl)
			for range k1 + k2 {
				closed++
				closeOne(closed)
			}
			if rest := steps - k1 - k2; rest > 0 {
				closed += rest
				if rest >= int64(window) {
					for _, o := range sketches {
						o.cur.Clear()
						o.prev.Clear()
					}
				}
			}
		}
		for i := range s.Rows {
			row := &s.Rows[i]
			k := row.Scope + "|" + row.Key
			got := []float64{row.Values.Of(RTTp50), row.Values.Of(RTTp95), row.Values.Of(RTTp99)}
			sk := sketches[k]
			if sk == nil {
				if _, ok := row.Values.Get(RTTp50); ok {
					t.Errorf("step %d %s: RTT quantiles %v, want none", step, k, got)
				}
				continue
			}
			m := newRTTState(e.cfg.RTTAccuracy).cur
			if err := m.MergeWith(sk.cur); err != nil {
				t.Fatal(err)
			}
			if err := m.MergeWith(sk.prev); err != nil {
				t.Fatal(err)
			}
			if m.IsEmpty() {
				if _, ok := row.Values.Get(RTTp50); ok {
					t.Errorf("step %d %s: RTT quantiles %v, want none", step, k, got)
				}
				continue
			}
			q, err := m.GetValuesAtQuantiles(quantiles)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(q) {
				t.Errorf("step %d %s: RTT quantiles %v, want %v (of %v handshakes)", step, k, got, q, m.GetCount())
			}
		}
	}
}
