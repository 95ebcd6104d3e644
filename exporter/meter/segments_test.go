package meter

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/testutil"
)

// routedConnections writes a capture of TCP connections between VMs on two
// overlay segments, routed by the hypervisors' distributed router: each
// packet travels in its destination's segment, VXLAN VNI 5001 towards the
// clients and 5002 towards the servers (or, with gre, a GRE key of its
// direction's own). Each connection: handshake, a request, an answer, FIN
// from each side; handshake RTTs of a few milliseconds, known.
func routedConnections(t *testing.T, gre bool) string {
	t.Helper()
	vtepA, vtepB := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	var pkts []synth.Packet
	at := time.Date(2026, 12, 8, 1, 0, 0, 0, time.UTC).UnixNano()
	for c := range 20 {
		client := netip.AddrFrom4([4]byte{10, 1, 0, byte(10 + c)})
		server := netip.AddrFrom4([4]byte{10, 2, 0, byte(20 + c%3)})
		sport := uint16(40000 + c)
		cseq, sseq := uint32(1000*c+7), uint32(1<<31+uint32(c))
		send := func(toServer bool, dt time.Duration, flags uint8, payload int) {
			at += int64(dt)
			src, dst, sp, dp, seq, ack := client, server, sport, uint16(443), cseq, sseq
			if !toServer {
				src, dst, sp, dp, seq, ack = server, client, 443, sport, sseq, cseq
			}
			inner := synth.Ethernet(synth.MAC(1), synth.MAC(2), nil, 0x0800,
				synth.IPv4(src, dst, 6, 0, 1, 0, false, synth.TCP(sp, dp, seq, ack, flags, 8192, payload)))
			n := uint32(payload)
			if flags&(tcpSYN|tcpFIN) != 0 {
				n++
			}
			if toServer {
				cseq += n
			} else {
				sseq += n
			}
			vni := uint32(5001)
			if toServer {
				vni = 5002
			}
			var outer []byte
			if gre {
				key := vni
				outer = synth.IPv4(vtepA, vtepB, 47, 0, 1, 0, false, synth.GRE(0x6558, &key, nil, inner))
			} else {
				outer = synth.IPv4(vtepA, vtepB, 17, 0, 1, 0, false, synth.UDP(50000, 4789, synth.VXLAN(vni, inner)))
			}
			pkts = append(pkts, synth.Packet{Time: at, Data: synth.Ethernet(synth.MAC(0xa1), synth.MAC(0xa2), nil, 0x0800, outer)})
		}
		rtt := time.Duration(c+1) * 370 * time.Microsecond
		send(true, 10*time.Millisecond, tcpSYN, 0)
		send(false, rtt, tcpSYN|tcpACK, 0)
		send(true, 2*rtt, tcpACK, 0)
		send(true, time.Millisecond, tcpACK, 300)
		send(false, 3*time.Millisecond, tcpACK, 1200)
		send(true, time.Millisecond, tcpFIN|tcpACK, 0)
		send(false, time.Millisecond, tcpFIN|tcpACK, 0)
		send(true, time.Millisecond, tcpACK, 0)
	}
	path := filepath.Join(t.TempDir(), "routed.pcap")
	if err := synth.WritePcapFile(path, pkts); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDirectionsInTheirOwnSegments: the two directions of a connection
// routed between overlay segments (or tagged with a GRE key each) are
// paired: each connection's client plus server handshake RTT is tshark's
// initial RTT (tshark follows a connection across VNIs), and both
// directions end on their FINs, not on the idle timeout. Before, they had
// no RTT and ended idle.
func TestDirectionsInTheirOwnSegments(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	for _, gre := range []bool{false, true} {
		name := "vxlan"
		if gre {
			name = "gre-keys"
		}
		t.Run(name, func(t *testing.T) {
			path := routedConnections(t, gre)
			flows, _, _ := meterFile(t, path, Configuration{ActiveTimeout: time.Hour, IdleTimeout: time.Hour, MaxFlows: 1000})
			if len(flows) != 40 {
				t.Fatalf("%d flows, want 40 (20 connections, two directions each)", len(flows))
			}
			segments := map[uint64]int{}
			for _, f := range flows {
				segments[f.Segment]++
				if f.EndReason != EndOfFlow {
					t.Errorf("%s:%d > %s:%d (segment %d) ended with reason %d, want %d (end of flow: both FINs seen)",
						f.Src, f.SrcPort, f.Dst, f.DstPort, f.Segment, f.EndReason, EndOfFlow)
				}
			}
			if segments[5001] != 20 || segments[5002] != 20 {
				t.Fatalf("segments %v: want each direction in its own", segments)
			}
			n := checkRTTs(t, tshark, path, flows)
			if n != 20 {
				t.Fatalf("tshark gives %d connections an initial RTT, want 20", n)
			}
			for _, f := range flows {
				if f.RTTClientUs == 0 || f.RTTServerUs == 0 {
					t.Errorf("%s:%d > %s:%d: RTT client %d µs, server %d µs", f.Src, f.SrcPort, f.Dst, f.DstPort, f.RTTClientUs, f.RTTServerUs)
				}
			}
		})
	}
}
