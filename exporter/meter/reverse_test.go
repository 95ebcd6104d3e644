package meter

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestReverseKept: a table that keeps each entry's reverse entry ends the
// same flows with the same handshake RTTs as one that looks the reverse up
// every time, on random TCP traffic between a few endpoints where flows
// end, are evicted (a small table), go idle and reuse their ports, so that
// entries are freed and reused under their reverse's feet. One client in six
// has its servers answer in another segment.
func TestReverseKept(t *testing.T) {
	across := 0
	for seed := range uint64(8) {
		rng := rand.New(rand.NewPCG(seed, 1))
		cfg := Configuration{ActiveTimeout: 30 * time.Second, IdleTimeout: 5 * time.Second, MaxFlows: 24}
		kept, looked := &collect{}, &collect{}
		a, err := New(reporter.NewForTest(nil), cfg, kept)
		if err != nil {
			t.Fatal(err)
		}
		b, err := New(reporter.NewForTest(nil), cfg, looked)
		if err != nil {
			t.Fatal(err)
		}
		b.lookupReverse = true
		ts := int64(1e9)
		flags := []uint16{tcpSYN, tcpSYN | tcpACK, tcpACK, tcpACK, tcpACK, tcpFIN | tcpACK, tcpRST, tcpACK}
		for n := 0; n < 20000; n++ {
			ts += rng.Int64N(int64(50 * time.Millisecond))
			if rng.IntN(2000) == 0 {
				ts += int64(10 * time.Second) // flows go idle
			}
			p := &decode.Packet{Proto: 6, IPLength: 60, TCPSeq: rng.Uint32(), TCPWindow: 1000}
			client, server := byte(rng.IntN(6)), byte(rng.IntN(3))
			port := uint16(1000 + rng.IntN(4))
			p.SrcAddr[0], p.SrcAddr[3], p.DstAddr[0], p.DstAddr[3] = 10, client, 10, 100+server
			p.SrcPort, p.DstPort = port, 80
			p.TCPFlags = flags[rng.IntN(len(flags))]
			if rng.IntN(2) == 0 { // the server's direction
				p.SrcAddr, p.DstAddr = p.DstAddr, p.SrcAddr
				p.SrcPort, p.DstPort = p.DstPort, p.SrcPort
				if client == 5 {
					// Routed between overlay segments: each direction in
					// its destination's VNI (paired through unpaired).
					p.SegmentID = 7
				}
			}
			if client == 4 && rng.IntN(2) == 0 {
				// Seen on both hops: either direction in either segment.
				p.SegmentID = 7
			}
			a.Add(p, ts)
			b.Add(p, ts)
			checkRev(t, a)
			checkRev(t, b)
		}
		a.Flush(ts)
		b.Flush(ts)
		if len(kept.flows) < 1000 {
			t.Fatalf("seed %d: only %d flows", seed, len(kept.flows))
		}
		var rtt, rttAcross int
		reasons := map[uint8]int{}
		for _, f := range kept.flows {
			if f.RTTServerUs != 0 {
				rtt++
				if f.Segment != 0 {
					rttAcross++
				}
			}
			reasons[f.EndReason]++
		}
		across += rttAcross
		if rtt < 50 || reasons[EndOfFlow] < 100 || reasons[EndLackOfResources] < 100 || reasons[EndIdle] == 0 {
			t.Fatalf("seed %d: %d flows with an RTT (%d across segments), end reasons %v: the traffic does not test much", seed, rtt, rttAcross, reasons)
		}
		if diff := testutil.FlowsDiff(kept.flows, looked.flows); diff != "" {
			t.Fatalf("seed %d (-kept, +looked up):\n%s", seed, diff)
		}
	}
	// Random flags seldom bring a client's first ACK after its server's
	// SYN-ACK, the one order that pairs across segments.
	if across == 0 {
		t.Fatal("no handshake paired across segments: the traffic does not test it")
	}
	t.Logf("%d flows with an RTT across segments", across)
}

// checkRev fails t unless every entry's reverse is a used entry whose
// reverse is it.
func checkRev(t *testing.T, tb *Table) {
	t.Helper()
	for i := range tb.hwm {
		r := tb.rev[i]
		if r == none || tb.at(i).state&stUsed == 0 {
			continue
		}
		if tb.at(r).state&stUsed == 0 || tb.rev[r] != i {
			t.Fatalf("entry %d (%v): reverse %d (%v) has reverse %d", i, tb.at(i).key, r, tb.at(r).key, tb.rev[r])
		}
	}
}

// TestCrossPairUntied: a client paired with its server across segments,
// whose packets then come in the server's segment too (a mirror of both
// hops), keeps no reverse to the server's entry once that is freed: the
// client's RST does not close the unrelated flow that reuses the entry.
func TestCrossPairUntied(t *testing.T) {
	cfg := Configuration{ActiveTimeout: time.Minute, IdleTimeout: 5 * time.Second, MaxFlows: 64}
	c := &collect{}
	tb, err := New(reporter.NewForTest(nil), cfg, c)
	if err != nil {
		t.Fatal(err)
	}
	ts := int64(1e9)
	send := func(dt time.Duration, src, dst byte, sport, dport uint16, segment uint32, flags uint16) {
		ts += int64(dt)
		p := &decode.Packet{Proto: 6, IPLength: 60, TCPSeq: uint32(ts / 1000), TCPWindow: 1000, TCPFlags: flags, SegmentID: segment}
		p.SrcAddr[0], p.SrcAddr[3], p.DstAddr[0], p.DstAddr[3] = 10, src, 10, dst
		p.SrcPort, p.DstPort = sport, dport
		tb.Add(p, ts)
		checkRev(t, tb)
	}
	send(0, 1, 2, 1000, 80, 0, tcpSYN)                       // client, segment 0
	send(time.Millisecond, 2, 1, 80, 1000, 7, tcpSYN|tcpACK) // server, segment 7: held
	send(time.Millisecond, 1, 2, 1000, 80, 0, tcpACK)        // paired across segments
	send(time.Millisecond, 1, 2, 1000, 80, 7, tcpFIN|tcpACK) // the client in segment 7: its exact reverse
	for range 8 {                                            // the client stays, its segment 7 copies and the server go idle
		send(time.Second, 1, 2, 1000, 80, 0, tcpACK)
	}
	// Two unrelated flows take the entries freed.
	send(time.Millisecond, 3, 4, 2000, 443, 0, tcpACK)
	send(time.Millisecond, 4, 3, 443, 2000, 0, tcpACK)
	send(time.Millisecond, 1, 2, 1000, 80, 0, tcpRST)
	tb.Flush(ts)
	for _, f := range c.flows {
		if f.Src.As4()[3] >= 3 && f.EndReason != EndForced {
			t.Errorf("%v:%d > %v:%d ended with reason %d, not %d (forced): another flow's RST closed it", f.Src, f.SrcPort, f.Dst, f.DstPort, f.EndReason, EndForced)
		}
	}
}
