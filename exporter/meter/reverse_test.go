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
			a.Add(p, ts)
			b.Add(p, ts)
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
