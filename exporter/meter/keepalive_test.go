package meter

import (
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestKeepAliveAndProbesAgainstTshark: a connection whose sender keeps it
// alive and probes a zero window the way Windows and BSD stacks do, with one
// byte at the sequence number before the next one (keep-alive) or one byte
// of new data repeated while the window stays shut (zero-window probes),
// besides a real retransmission and Linux's empty keep-alives. The
// retransmissions and zero windows the meter counts per direction are the
// segments tshark's TCP analysis flags as retransmission or out-of-order,
// and as zero window (not a FIN with a shut window, as Linux sends it when
// a receiver that stopped reading shuts its side down); its keep-alives
// and window probes are neither. The
// client's sequence numbers wrap through 2^32 on the way. Two more
// connections resend data the mirror did not see go, as their ACKs without
// data tell, and one sends a segment after a RST that was sent after it:
// tshark flags these as retransmissions (or out-of-order), and so must the
// meter.
func TestKeepAliveAndProbesAgainstTshark(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	a, b := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.2")
	const (
		syn, ack, psh, fin, rst = 0x02, 0x10, 0x08, 0x01, 0x04
	)
	base := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC).UnixNano()
	var pkts []synth.Packet
	at := base
	cport, sport := uint16(49800), uint16(445)
	send := func(fromA bool, seq, ackn uint32, flags uint8, win uint16, n int) {
		src, dst, sp, dp := a, b, cport, sport
		if !fromA {
			src, dst, sp, dp = b, a, sport, cport
		}
		at += int64(time.Millisecond)
		ip := synth.IPv4(src, dst, 6, 0, 1, 0, false, synth.TCP(sp, dp, seq, ackn, flags, win, n))
		pkts = append(pkts, synth.Packet{Time: at, Data: synth.Ethernet(synth.MAC(1), synth.MAC(2), nil, 0x0800, ip)})
	}
	c, s := uint32(0xffffff00), uint32(7000)
	send(true, c, 0, syn, 64240, 0)
	send(false, s, c+1, syn|ack, 65535, 0)
	c, s = c+1, s+1
	send(true, c, s, ack, 64240, 0)
	send(true, c, s, ack|psh, 64240, 200) // crosses 2^32
	c += 200
	send(false, s, c, ack, 65535, 0)
	for range 3 { // Windows keep-alives: the last byte again
		send(true, c-1, s, ack, 64240, 1)
		send(false, s, c, ack, 65535, 0)
	}
	send(true, c-1, s, ack, 64240, 0) // Linux keep-alive: no data
	send(false, s, c, ack, 65535, 0)
	send(true, c, s, ack|psh, 64240, 1000)
	c += 1000
	send(false, s, c, ack, 0, 0) // the receiver's buffer is full
	for range 3 {                // zero-window probes: one byte of new data
		send(true, c, s, ack, 64240, 1)
		send(false, s, c, ack, 0, 0)
	}
	send(false, s, c, ack, 65535, 0) // window update
	send(true, c, s, ack|psh, 64240, 500)
	send(true, c, s, ack|psh, 64240, 500) // a real retransmission
	c += 500
	send(false, s, c, ack, 0, 0)
	send(false, s, c, fin|ack, 0, 0) // a FIN with a shut window: not a zero window to tshark
	send(true, c, s+1, fin|ack, 64240, 0)
	send(false, s+1, c+1, ack, 65535, 0)

	// The last segment of a request is lost before the mirror; the
	// client's ACKs of the response show it was sent, so its resending is a
	// retransmission.
	cport, sport, c, s = 49801, 80, 1000, 5000
	send(true, c, 0, syn, 64240, 0)
	send(false, s, c+1, syn|ack, 65535, 0)
	c, s = c+1, s+1
	send(true, c, s, ack, 64240, 0)
	send(true, c, s, ack|psh, 64240, 300)
	// (300 more bytes from c+300, not captured)
	send(false, s, c+300, ack|psh, 65535, 100)
	send(true, c+600, s+100, ack, 64240, 0)
	send(true, c+300, s+100, ack|psh, 64240, 300) // the retransmission
	send(false, s+100, c+600, ack, 65535, 0)
	// Seen from the middle: a pure ACK first, then a segment before it.
	cport, sport, c, s = 49802, 8080, 90000, 7000
	send(true, c, s, ack, 64240, 0)
	send(true, c-100, s, ack|psh, 64240, 100)
	send(false, s, c, ack, 65535, 0)
	// A RST ahead of a segment held back on the way.
	cport, sport, c, s = 49803, 8443, 20000, 3000
	send(true, c, s, ack|psh, 64240, 100)
	send(true, c+200, s, ack|rst, 64240, 0)
	send(true, c+100, s, ack|psh, 64240, 100)

	path := filepath.Join(t.TempDir(), "keepalive.pcap")
	if err := synth.WritePcapFile(path, pkts); err != nil {
		t.Fatal(err)
	}
	flows, _, _ := meterFile(t, path, Configuration{ActiveTimeout: time.Hour, IdleTimeout: time.Hour, MaxFlows: 100})
	out, err := exec.Command(tshark, "-r", path, "-T", "fields", "-E", "separator=|", "-e", "tcp.srcport", "-e", "tcp.dstport",
		"-e", "tcp.analysis.retransmission", "-e", "tcp.analysis.out_of_order", "-e", "tcp.analysis.zero_window",
		"-e", "tcp.analysis.keep_alive", "-e", "tcp.analysis.zero_window_probe").Output()
	if err != nil {
		t.Fatal(err)
	}
	retrans, zero := map[string]uint32{}, map[string]uint32{}
	var keepAlives, probes int
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "|")
		port := f[0] + ">" + f[1]
		if f[2] != "" || f[3] != "" {
			retrans[port]++
		}
		if f[4] != "" {
			zero[port]++
		}
		if f[5] != "" {
			keepAlives++
		}
		if f[6] != "" {
			probes++
		}
	}
	// The capture is what it is meant to be, to tshark.
	if keepAlives != 4 || probes != 3 || retrans["49800>445"] != 1 || retrans["49801>80"] != 1 || zero["445>49800"] != 5 {
		t.Fatalf("tshark: %d keep-alives, %d zero-window probes, %d and %d retransmissions, %d zero windows; want 4, 3, 1, 1 and 5",
			keepAlives, probes, retrans["49800>445"], retrans["49801>80"], zero["445>49800"])
	}
	if len(flows) != 7 {
		t.Fatalf("%d flows, want 7", len(flows))
	}
	for _, f := range flows {
		port := fmt.Sprintf("%d>%d", f.SrcPort, f.DstPort)
		if f.Retrans != retrans[port] || f.ZeroWindows != zero[port] {
			t.Errorf("%s: %d retransmissions, %d zero windows; tshark flags %d and %d",
				port, f.Retrans, f.ZeroWindows, retrans[port], zero[port])
		}
	}
}
