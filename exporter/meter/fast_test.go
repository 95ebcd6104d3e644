package meter

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

func udpFlowPacket(src, dst string, sport, dport uint16, length uint32) decode.Packet {
	p := decode.Packet{Proto: 17, SrcPort: sport, DstPort: dport, IPLength: length}
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(p.SrcAddr[:], s[:])
	copy(p.DstAddr[:], d[:])
	return p
}

// TestFastActiveTimeout: two long flows, one datagram every 250 ms for
// 120 s of flow time. The one a selector picks is exported every 5 s (its
// fast active timeout) with flowEndReason activeTimeout and delta counters
// that add up to what was sent; the other keeps the 60 s active timeout.
// A selected flow that pauses for 12 s (less than its idle timeout) still
// has its counters exported 5 s after its record began.
func TestFastActiveTimeout(t *testing.T) {
	sel, err := ParseSelector("net 10.20.0.0/16 port 5432")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Configuration{ActiveTimeout: 60 * time.Second, IdleTimeout: 15 * time.Second, MaxFlows: 100,
		FastActiveTimeout: 5 * time.Second, Fast: []Selector{sel}}
	sink := &collect{}
	table, err := New(reporter.NewForTest(nil), cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	fast := udpFlowPacket("10.1.0.1", "10.20.0.9", 40000, 5432, 1000)
	slow := udpFlowPacket("10.1.0.1", "10.30.0.9", 40000, 5432, 1000)
	other := udpFlowPacket("10.1.0.1", "10.20.0.9", 40000, 5433, 1000) // right net, wrong port
	pause := udpFlowPacket("10.1.0.2", "10.20.0.10", 40001, 5432, 500)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	const step = 250 * int64(time.Millisecond)
	n := int(120 * int64(time.Second) / step)
	for i := 0; i < n; i++ {
		at := t0 + int64(i)*step
		table.Add(&fast, at)
		table.Add(&slow, at)
		table.Add(&other, at)
		// The pausing flow: a datagram at 0 s and 1 s, then at 13 s.
		if at-t0 == 0 || at-t0 == int64(time.Second) || at-t0 == 13*int64(time.Second) {
			table.Add(&pause, at)
		}
	}
	end := t0 + int64(n-1)*step
	table.Flush(end)
	byDst := map[string][]synth.Flow{}
	for _, f := range sink.flows {
		k := f.Dst.String()
		if f.DstPort == 5433 {
			k = "other"
		}
		byDst[k] = append(byDst[k], f)
	}
	check := func(name string, fs []synth.Flow, every time.Duration, packets uint64) {
		t.Helper()
		var sumP, sumB uint64
		prevEnd := int64(0)
		for i, f := range fs {
			sumP += f.Packets
			sumB += f.Bytes
			last := i == len(fs)-1
			if !last && f.EndReason != EndActive {
				t.Errorf("%s record %d: flowEndReason %d, want %d (active timeout)", name, i, f.EndReason, EndActive)
			}
			if span := time.Duration(f.EndMs-f.StartMs) * time.Millisecond; span >= every {
				t.Errorf("%s record %d: spans %s, at least its active timeout %s", name, i, span, every)
			}
			if i > 0 && f.StartMs <= prevEnd {
				t.Errorf("%s record %d starts at %d, before the previous one ended (%d): counters not deltas", name, i, f.StartMs, prevEnd)
			}
			prevEnd = f.EndMs
		}
		if sumP != packets || sumB != packets*1000 {
			t.Errorf("%s: records add up to %d packets %d bytes, sent %d packets %d bytes", name, sumP, sumB, packets, packets*1000)
		}
		// 120 s of traffic: 24 records at 5 s, 2 at 60 s.
		if want := int(120 * time.Second / every); len(fs) != want {
			t.Errorf("%s: %d records, want %d (one per %s)", name, len(fs), want, every)
		}
	}
	check("selected flow", byDst["10.20.0.9"], 5*time.Second, uint64(n))
	check("unselected flow", byDst["10.30.0.9"], 60*time.Second, uint64(n))
	check("other port", byDst["other"], 60*time.Second, uint64(n))

	p := byDst["10.20.0.10"]
	if len(p) != 2 || p[0].Packets != 2 || p[0].EndReason != EndActive || p[1].Packets != 1 {
		t.Errorf("pausing flow: %+v, want a record of 2 packets ended by its active timeout before the third packet", p)
	}
}

func TestParseSelector(t *testing.T) {
	for _, tc := range []struct {
		in, err string
	}{
		{in: "net 10.20.0.0/16 port 443,5432"},
		{in: "2001:db8::/32 proto tcp,udp vlan 100 vni 5001"},
		{in: "10.0.0.1"},
		{in: "", err: "empty"},
		{in: "port", err: "wants a value"},
		{in: "port 70000", err: `port "70000": not a valid value`},
		{in: "colour blue", err: `unknown term "colour"`},
		{in: "proto tcpx", err: `proto "tcpx"`},
		{in: "net 10.0.0.0/33", err: `net "10.0.0.0/33"`},
	} {
		_, err := ParseSelector(tc.in)
		if tc.err == "" && err != nil {
			t.Errorf("%q: %v", tc.in, err)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: error %v, want one with %q", tc.in, err, tc.err)
		}
	}
	s, _ := ParseSelector("net 10.0.0.0/8")
	for _, tc := range []struct {
		cfg Configuration
		err string
	}{
		{Configuration{ActiveTimeout: time.Minute, IdleTimeout: time.Second, MaxFlows: 1, FastActiveTimeout: 5 * time.Second}, "give the flows"},
		{Configuration{ActiveTimeout: time.Minute, IdleTimeout: time.Second, MaxFlows: 1, Fast: []Selector{s}}, "is not set"},
		{Configuration{ActiveTimeout: time.Minute, IdleTimeout: time.Second, MaxFlows: 1, FastActiveTimeout: 2 * time.Minute, Fast: []Selector{s}}, "shorter than active-timeout"},
		{Configuration{ActiveTimeout: time.Minute, IdleTimeout: time.Second, MaxFlows: 1, FastActiveTimeout: time.Millisecond, Fast: []Selector{s}}, "at least 1s"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.err)
		}
	}
}

// TestFastActiveTimeoutRecordRate counts the records a steady mix yields
// with a 60 s active timeout, then with active-timeout-fast 5s for a tenth
// of the long flows and for all of them: the trade-off in records per
// second that docs/exporter.md and docs/performance.md report. The mix,
// over 300 s of flow time: 1000 long UDP flows of 4 packets per second
// (the 100 in 10.40.0.0/24 are the tenth), and 100 new short flows per
// second (3 packets each, ended by the 15 s idle timeout).
func TestFastActiveTimeoutRecordRate(t *testing.T) {
	const (
		long     = 1000
		seconds  = 300
		perSec   = 4
		shortSec = 100
	)
	run := func(fast time.Duration, sel string) (records int) {
		cfg := Configuration{ActiveTimeout: 60 * time.Second, IdleTimeout: 15 * time.Second, MaxFlows: 1 << 16}
		if fast > 0 {
			s, err := ParseSelector(sel)
			if err != nil {
				t.Fatal(err)
			}
			cfg.FastActiveTimeout, cfg.Fast = fast, []Selector{s}
		}
		sink := &countSink{}
		table, err := New(reporter.NewForTest(nil), cfg, sink)
		if err != nil {
			t.Fatal(err)
		}
		defer table.Close()
		t0 := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC).UnixNano()
		step := int64(time.Second) / perSec
		var p decode.Packet
		for tick := int64(0); tick < seconds*perSec; tick++ {
			at := t0 + tick*step
			for i := 0; i < long; i++ {
				// Flow i: 10.40.(i/100).(i%100) → 10.41.0.1; i < 100 is the tenth in 10.40.0.0/24.
				p = udpFlowPacket(fmt.Sprintf("10.40.%d.%d", i/100, i%100), "10.41.0.1", 40000, 5000, 200)
				table.Add(&p, at+int64(i)*1000)
			}
			if tick%perSec == 0 {
				for j := 0; j < shortSec; j++ {
					n := int(tick/perSec)*shortSec + j
					p = udpFlowPacket(fmt.Sprintf("10.50.%d.%d", n/250%250, n%250), "10.51.0.1", uint16(1024+n%60000), 53, 80)
					for k := int64(0); k < 3; k++ {
						table.Add(&p, at+int64(j)*1000+k*int64(time.Millisecond))
					}
				}
			}
		}
		table.Flush(t0 + seconds*int64(time.Second))
		return sink.n
	}
	slow := run(0, "")
	tenth := run(5*time.Second, "net 10.40.0.0/24")
	all := run(5*time.Second, "net 0.0.0.0/0")
	// Ground truth from the mix: short flows give one record each; a long
	// flow gives one record per active timeout (300 s / 60 s = 5, or
	// 300 s / 5 s = 60).
	short := seconds * shortSec
	if want := short + long*5; slow != want {
		t.Errorf("60 s: %d records, want %d", slow, want)
	}
	if want := short + 900*5 + 100*60; tenth != want {
		t.Errorf("5 s for a tenth: %d records, want %d", tenth, want)
	}
	if want := short + long*60; all != want {
		t.Errorf("5 s for all: %d records, want %d", all, want)
	}
	t.Logf("records/s over %d s: 60 s active %.1f; 5 s for 100 of %d long flows %.1f (%.2f×); 5 s for all %.1f (%.2f×)",
		seconds, float64(slow)/seconds, long, float64(tenth)/seconds, float64(tenth)/float64(slow), float64(all)/seconds, float64(all)/float64(slow))
}

type countSink struct{ n int }

func (c *countSink) Write(_ time.Time, rs []flow.Record) error { c.n += len(rs); return nil }

// TestFastFlowsComeAndGo: selected flows that end (idle), whose entries
// other selected flows then take, and a Flush with new selected flows
// after it: every flow is exported every fast timeout while it runs, no
// record comes of a flow that ended, and the selected flows' list does
// not grow with the flows that came and went.
func TestFastFlowsComeAndGo(t *testing.T) {
	sel, err := ParseSelector("port 5432")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Configuration{ActiveTimeout: 60 * time.Second, IdleTimeout: 15 * time.Second, MaxFlows: 1000,
		FastActiveTimeout: 5 * time.Second, Fast: []Selector{sel}}
	sink := &collect{}
	table, err := New(reporter.NewForTest(nil), cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	sec := int64(time.Second)
	// run sends one datagram a second for d seconds on flows src 10.1.0.(base..base+n-1), from at.
	run := func(base, n int, at, d int64) {
		for s := int64(0); s < d; s++ {
			for f := range n {
				p := udpFlowPacket(fmt.Sprintf("10.1.%d.%d", (base+f)/256, (base+f)%256), "10.20.0.9", 40000, 5432, 100)
				table.Add(&p, at+s*sec)
			}
		}
	}
	const n = 150                 // enough for a Flush to empty the index at once
	run(1, n, t0, 20)             // 20 s: 4 records each (5 s), then idle
	run(1+n, n, t0+60*sec, 20)    // after the first ended (idle 15 s): they take their entries
	table.Flush(t0 + 80*sec)      // every flow ends
	run(1+2*n, n, t0+100*sec, 20) // after a Flush
	table.Flush(t0 + 120*sec)
	per := map[string]int{}
	for _, f := range sink.flows {
		per[f.Src.String()]++
		if f.Packets == 0 {
			t.Errorf("a record of %s without packets", f.Src)
		}
	}
	for f := range 3 * n {
		{
			src := fmt.Sprintf("10.1.%d.%d", (1+f)/256, (1+f)%256)
			if per[src] != 4 {
				t.Fatalf("%s: %d records, want 4 (20 s at a 5 s active timeout)", src, per[src])
			}
		}
	}
	if len(sink.flows) != 3*n*4 {
		t.Errorf("%d records, want %d", len(sink.flows), 3*n*4)
	}
	if l := len(table.fastIdx); l > 0 {
		t.Errorf("the selected flows' list holds %d entries once every flow ended", l)
	}
}

// BenchmarkFastSweep: the sweep a second of flow time makes when a fast
// active timeout is set, with 1,048,576 flows of which none is selected
// (ns/op is one sweep).
func BenchmarkFastSweep(b *testing.B) {
	sel, err := ParseSelector("port 5432")
	if err != nil {
		b.Fatal(err)
	}
	cfg := Configuration{ActiveTimeout: time.Hour, IdleTimeout: 30 * time.Minute, MaxFlows: 1 << 20,
		FastActiveTimeout: 5 * time.Second, Fast: []Selector{sel}}
	table, err := New(reporter.NewForTest(nil), cfg, nullSink{})
	if err != nil {
		b.Fatal(err)
	}
	var p decode.Packet
	p.Proto, p.IPLength, p.DstPort = 17, 100, 53
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	for f := range 1 << 20 {
		binary.BigEndian.PutUint32(p.SrcAddr[:], uint32(f))
		p.SrcPort = uint16(f)
		table.Add(&p, now)
	}
	for b.Loop() {
		now += int64(time.Second)
		table.Expire(now)
	}
	if table.Len() != 1<<20 {
		b.Fatalf("%d flows left", table.Len())
	}
}
