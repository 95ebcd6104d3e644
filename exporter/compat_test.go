package exporter

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/spanflow/spanflow/exporter/internal/verify"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/testutil"
)

// udpSink keeps every datagram sent to it.
type udpSink struct {
	conn *net.UDPConn
	got  chan []byte
}

func newUDPSink(t *testing.T) *udpSink {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &udpSink{conn: conn, got: make(chan []byte, 1024)}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(s.got)
				return
			}
			s.got <- append([]byte(nil), buf[:n]...)
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return s
}

func (s *udpSink) addr() string { return s.conn.LocalAddr().String() }

// take returns the datagrams received once n have come (or 10 s passed).
func (s *udpSink) take(n int) [][]byte {
	var out [][]byte
	timeout := time.After(10 * time.Second)
	for len(out) < n {
		select {
		case m := <-s.got:
			out = append(out, m)
		case <-timeout:
			return out
		}
	}
	return out
}

// TestCompatPmacct: pmacct's nfacctd reads tcpControlBits only in 1
// octet. A collector given ?compat=pmacct gets it so: nfacctd then shows
// every flow's TCP flags, and nfdump and tshark still read the whole
// ground truth from the same messages; a collector without the option
// gets the default stream, unchanged.
func TestCompatPmacct(t *testing.T) {
	nfacctd := testutil.Command(t, "nfacctd")
	tshark := testutil.Command(t, "tshark")
	nfcapd := testutil.Command(t, "nfcapd")
	nfdump := testutil.Command(t, "nfdump")
	c, path := mixedCapture(t)
	dir := t.TempDir() // nfcapd's files only: nfdump reads every file there
	acct, err := verify.StartNfacctd(nfacctd, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	capd, err := verify.StartNfcapd(nfcapd, dir)
	if err != nil {
		t.Fatal(err)
	}
	narrow, plain := newUDPSink(t), newUDPSink(t)
	cfg := testConfiguration(path)
	cfg.Collectors = []string{
		"127.0.0.1:" + itoa(acct.Port) + "?compat=pmacct",
		"udp://127.0.0.1:" + itoa(capd.Port) + "?compat=pmacct",
		narrow.addr() + "?compat=pmacct",
		plain.addr(),
	}
	sum := sendFile(t, path, cfg)
	if sum.SendErrors != 0 {
		t.Fatalf("run: %s", sum)
	}

	// nfacctd: one aggregate per key, flags ORed, counters summed.
	type key struct {
		src, dst         netip.Addr
		srcPort, dstPort uint16
		proto            string
	}
	type agg struct {
		Flags           uint16
		Packets, Octets uint64
	}
	names := map[uint8]string{1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp"}
	want, got := map[key]agg{}, map[key]agg{}
	flagged := 0
	for _, f := range c.Flows {
		k := key{f.Src, f.Dst, f.SrcPort, f.DstPort, names[f.Proto]}
		a := want[k]
		a.Flags |= f.TCPFlags & 0xff
		a.Packets += f.Packets
		a.Octets += f.Bytes
		want[k] = a
		if f.TCPFlags != 0 {
			flagged++
		}
	}
	if flagged == 0 {
		t.Fatal("the capture has no TCP flags to show")
	}
	var packets uint64
	for _, f := range c.Flows {
		packets += f.Packets
	}
	flows, log, err := acct.Flows(packets)
	if err != nil {
		t.Fatalf("%v\nnfacctd: %s", err, log)
	}
	for _, f := range flows {
		k := key{f.Src, f.Dst, f.SrcPort, f.DstPort, f.Proto}
		a := got[k]
		a.Flags |= f.TCPFlags
		a.Packets += f.Packets
		a.Octets += f.Bytes
		got[k] = a
	}
	if diff := cmp.Diff(got, want, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("nfacctd aggregates (-got, +want):\n%s\nnfacctd: %s", diff, log)
	}

	// nfdump, from the same narrowed stream.
	checkNfdump(t, nfdump, dir, c.Flows, capd.Stop())

	// tshark: every field of the ground truth, flags in 1 octet.
	msgs := narrow.take(int(sum.Messages))
	res := tsharkOf(t, tshark, msgs)
	var tsWant []synth.Flow
	for _, f := range c.Flows {
		f.TCPFlags &= 0xff
		tsWant = append(tsWant, f)
	}
	synth.Sort(res.Flows)
	synth.Sort(tsWant)
	if diff := testutil.FlowsDiff(res.Flows, tsWant); diff != "" {
		t.Errorf("tshark flows of the narrowed stream (-got, +want):\n%s", diff)
	}

	// The collector without the option gets the default stream: the
	// messages of the same run into memory.
	_, mem := runFile(t, cfg)
	gotPlain := plain.take(len(mem))
	if len(gotPlain) != len(mem) {
		t.Fatalf("default collector: %d messages, want %d", len(gotPlain), len(mem))
	}
	var plainLen, narrowLen int
	for i := range mem {
		if !bytes.Equal(gotPlain[i], mem[i]) {
			t.Errorf("default collector: message %d differs from the default stream", i)
		}
		plainLen += len(mem[i])
	}
	// Each flow record is one octet shorter; nothing else changes size.
	for _, m := range msgs {
		narrowLen += len(m)
	}
	if narrowLen != plainLen-int(sum.Flows) {
		t.Errorf("narrowed stream: %d bytes, want %d (the default stream's %d less 1 per flow record)", narrowLen, plainLen-int(sum.Flows), plainLen)
	}
}
