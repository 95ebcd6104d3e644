package meter

import (
	"net/netip"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/reporter"
)

// TestInitiatorAcrossActiveTimeouts: every record of a connection that
// lasts several active timeouts says who opened it (biflowDirection 1 on
// the client's direction, 2 on the server's), not only the first records,
// which saw the handshake: the table keeps what it saw when it restarts
// the counters.
func TestInitiatorAcrossActiveTimeouts(t *testing.T) {
	sink := &collect{}
	cfg := DefaultConfiguration()
	cfg.ActiveTimeout, cfg.IdleTimeout = time.Second, 10*time.Second
	table, err := New(reporter.NewForTest(nil), cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	cli, srv := netip.MustParseAddr("10.1.9.9"), netip.MustParseAddr("10.1.9.5")
	d := decode.New()
	var p decode.Packet
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	send := func(fromCli bool, seq, ack uint32, flags uint8, n int) {
		s, dst, sp, dp := cli, srv, uint16(50000), uint16(40000)
		if !fromCli {
			s, dst, sp, dp = srv, cli, 40000, 50000
		}
		frame := synth.Ethernet(synth.MAC(1), synth.MAC(2), nil, 0x0800, synth.IPv4(s, dst, 6, 0, 1, 0, false, synth.TCP(sp, dp, seq, ack, flags, 65535, n)))
		if r := d.Decode(decode.LinkEthernet, frame, len(frame), &p); r != decode.ReasonOK {
			t.Fatalf("decode: %v", r)
		}
		table.Add(&p, at)
		at += int64(300 * time.Millisecond)
	}
	send(true, 100, 0, 0x02, 0)
	send(false, 900, 101, 0x12, 0)
	send(true, 101, 901, 0x10, 0)
	for i := range uint32(10) {
		send(true, 101+10*i, 901+20*i, 0x18, 10)
		send(false, 901+20*i, 111+10*i, 0x18, 20)
	}
	send(true, 201, 1101, 0x11, 0)
	send(false, 1101, 202, 0x11, 0)
	send(true, 202, 1102, 0x10, 0)
	table.Flush(at)
	perDir := map[uint16]int{}
	for _, f := range sink.flows {
		perDir[f.SrcPort]++
		want := map[uint16]uint8{50000: 1, 40000: 2}[f.SrcPort]
		if f.Initiator != want {
			t.Errorf("%d > %d, %d packets, end reason %d: biflowDirection %d, want %d", f.SrcPort, f.DstPort, f.Packets, f.EndReason, f.Initiator, want)
		}
	}
	if perDir[50000] < 3 || perDir[40000] < 3 {
		t.Errorf("records per source port %v: want several active timeouts in each direction", perDir)
	}
}
