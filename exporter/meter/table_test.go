package meter

import (
	"bytes"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/capture"
	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

type collect struct{ flows []synth.Flow }

func (c *collect) Write(_ time.Time, rs []flow.Record) error {
	for i := range rs {
		c.flows = append(c.flows, synth.FromRecord(&rs[i]))
	}
	return nil
}

// meterFile runs a capture file through capture, decode and meter.
func meterFile(t *testing.T, path string, cfg Configuration) ([]synth.Flow, map[decode.Reason]int, *Table) {
	t.Helper()
	src, err := capture.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	sink := &collect{}
	table, err := New(reporter.NewForTest(nil), cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	d := decode.New()
	var fr capture.Frame
	var p decode.Packet
	reasons := map[decode.Reason]int{}
	for {
		if err := src.Next(&fr); err != nil {
			if err != io.EOF {
				t.Fatal(err)
			}
			break
		}
		r := d.Decode(fr.LinkType, fr.Data, fr.Length, &p)
		reasons[r]++
		if r == decode.ReasonOK {
			table.Add(&p, fr.Timestamp)
		}
	}
	table.Flush(table.now)
	synth.Sort(sink.flows)
	return sink.flows, reasons, table
}

// TestMixedGroundTruth: every session of the generated capture (TCP with
// handshake, data, retransmission, zero window and FIN; RST; UDP; ICMP and
// ICMPv6; IPv6; VLAN; QinQ; VXLAN; Geneve; ERSPAN I, II and III; GRE with
// key; IP fragments; snap-length frames; a flow crossing the active timeout)
// yields exactly the flows the generator built it to.
func TestMixedGroundTruth(t *testing.T) {
	c := synth.Mixed(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	path := filepath.Join(t.TempDir(), "mixed.pcap")
	if err := synth.WritePcapFile(path, c.Packets); err != nil {
		t.Fatal(err)
	}
	got, reasons, table := meterFile(t, path, Configuration{ActiveTimeout: synth.MixedActive, IdleTimeout: synth.MixedIdle, MaxFlows: 1000})
	if diff := testutil.FlowsDiff(got, c.Flows); diff != "" {
		t.Errorf("flows (-got, +want):\n%s", diff)
	}
	if reasons[decode.ReasonNotIP] != c.NotIP || len(reasons) != 2 {
		t.Errorf("decode reasons %v, want %d not IP and the rest OK", reasons, c.NotIP)
	}
	if table.Len() != 0 {
		t.Errorf("%d flows left in the table after Flush", table.Len())
	}
}

// TestTableFull: with room for 2 flows, the least recently seen is exported
// early with flowEndReason lackOfResources and counted.
func TestTableFull(t *testing.T) {
	sink := &collect{}
	table, err := New(reporter.NewForTest(nil), Configuration{ActiveTimeout: time.Minute, IdleTimeout: time.Minute, MaxFlows: 2}, sink)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		p := decode.Packet{Proto: 17, SrcPort: uint16(1000 + i), DstPort: 53, IPLength: 100}
		p.SrcAddr[0], p.DstAddr[0] = 10, 11
		table.Add(&p, int64(i)*int64(time.Millisecond))
	}
	table.Sync()
	if len(sink.flows) != 1 || sink.flows[0].SrcPort != 1000 || sink.flows[0].EndReason != EndLackOfResources {
		t.Fatalf("evicted %+v, want the flow from port 1000 with reason 5", sink.flows)
	}
	if s := table.Stats(); s.FlowsEvicted != 1 {
		t.Errorf("evictions counted %d, want 1", s.FlowsEvicted)
	}
}

// TestConfigurationErrors: impossible settings are refused with a reason.
func TestConfigurationErrors(t *testing.T) {
	bad := Configuration{ActiveTimeout: 0, IdleTimeout: time.Second, MaxFlows: 0}
	err := bad.Validate()
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("active timeout")) {
		t.Fatalf("Validate() = %v, want active timeout and max flows errors", err)
	}
}

func udpPacket(srcLast byte, sport uint16) *decode.Packet {
	p := &decode.Packet{Proto: 17, SrcPort: sport, DstPort: 53, IPLength: 100}
	p.SrcAddr[0], p.SrcAddr[3], p.DstAddr[0] = 10, srcLast, 11
	return p
}

// TestActiveTimeoutOfQuietFlow: with the idle timeout longer than the
// active one, a flow that went quiet is still exported at its active timeout
// (by the scan), once, and leaves the table at its idle timeout.
func TestActiveTimeoutOfQuietFlow(t *testing.T) {
	sink := &collect{}
	table, err := New(reporter.NewForTest(nil), Configuration{ActiveTimeout: 2 * time.Second, IdleTimeout: 10 * time.Second, MaxFlows: 10}, sink)
	if err != nil {
		t.Fatal(err)
	}
	s := int64(time.Second)
	table.Add(udpPacket(1, 1000), 0)
	table.Add(udpPacket(1, 1000), 1*s)
	for _, at := range []int64{3, 5, 12, 13} {
		table.Add(udpPacket(2, 2000), at*s)
	}
	if table.Len() != 1 {
		t.Errorf("%d flows in the table at 13 s, want 1 (the quiet one left at its idle timeout)", table.Len())
	}
	table.Flush(13 * s)
	var quiet []synth.Flow
	for _, f := range sink.flows {
		if f.SrcPort == 1000 {
			quiet = append(quiet, f)
		}
	}
	if len(quiet) != 1 || quiet[0].Packets != 2 || quiet[0].EndReason != EndActive {
		t.Errorf("quiet flow exported as %+v, want once with 2 packets, reason active", quiet)
	}
}

// TestPortReuse: a SYN on a connection that ended starts a new flow and the
// old one is exported at once with reason end of flow.
func TestPortReuse(t *testing.T) {
	sink := &collect{}
	table, err := New(reporter.NewForTest(nil), DefaultConfiguration(), sink)
	if err != nil {
		t.Fatal(err)
	}
	tcp := func(fromA bool, flags uint16, at int64) {
		p := &decode.Packet{Proto: 6, SrcPort: 1000, DstPort: 80, IPLength: 40, TCPFlags: flags, TCPWindow: 100}
		p.SrcAddr[0], p.DstAddr[0] = 10, 11
		if !fromA {
			p.SrcAddr, p.DstAddr = p.DstAddr, p.SrcAddr
			p.SrcPort, p.DstPort = p.DstPort, p.SrcPort
		}
		table.Add(p, at*int64(time.Millisecond))
	}
	tcp(true, 0x02, 0)
	tcp(false, 0x14, 1) // RST
	tcp(true, 0x02, 500)
	table.Sync()
	if len(sink.flows) != 1 || sink.flows[0].EndReason != EndOfFlow || sink.flows[0].Packets != 1 || sink.flows[0].SrcPort != 1000 {
		t.Fatalf("exported %+v, want the first client flow, reason 3", sink.flows)
	}
	table.Flush(500 * int64(time.Millisecond))
	if len(sink.flows) != 3 {
		t.Errorf("%d flows in all, want 3", len(sink.flows))
	}
}

// TestFlushReuse: Flush ends every flow whether it deletes them from the
// index one by one (few flows in a large index) or empties the index at
// once; either way the table is empty and meters the same packets again
// into the same flows.
func TestFlushReuse(t *testing.T) {
	for _, flows := range []int{3, 2000} {
		sink := &collect{}
		cfg := DefaultConfiguration()
		table, err := New(reporter.NewForTest(nil), cfg, sink)
		if err != nil {
			t.Fatal(err)
		}
		if flows == 3 {
			// A large index with few flows in it.
			for i := 0; i < 5000; i++ {
				table.Add(flowPacket(i), 1e9)
			}
			table.Flush(2e9)
			sink.flows = nil
		}
		var want []synth.Flow
		for round := range 3 {
			for i := 0; i < flows; i++ {
				table.Add(flowPacket(i), int64(10+round)*1e9)
				table.Add(flowPacket(i), int64(10+round)*1e9+1)
			}
			if table.Len() != flows {
				t.Fatalf("%d flows: %d in the table", flows, table.Len())
			}
			table.Flush(int64(11+round) * 1e9)
			if table.Len() != 0 {
				t.Fatalf("%d flows: %d left after Flush", flows, table.Len())
			}
			synth.Sort(sink.flows)
			for i := range sink.flows {
				sink.flows[i].StartMs, sink.flows[i].EndMs = 0, 0
			}
			if round == 0 {
				want = sink.flows
			} else if diff := testutil.FlowsDiff(sink.flows, want); diff != "" {
				t.Fatalf("%d flows, round %d (-got, +want):\n%s", flows, round, diff)
			}
			if len(sink.flows) != flows || sink.flows[0].Packets != 2 {
				t.Fatalf("%d flows: %d exported, first %+v", flows, len(sink.flows), sink.flows[0])
			}
			sink.flows = nil
		}
	}
}

// flowPacket is a UDP packet of flow i.
func flowPacket(i int) *decode.Packet {
	p := udpPacket(byte(i), uint16(i>>8))
	p.SrcAddr[2] = byte(i >> 8)
	return p
}

// TestFlushAtOnce: a Flush that empties the index at once (the table holds
// much of what its index was sized for) passes on every flow that counted
// packets since it was last passed on, exactly once: end of flow for the
// connections that ended, forced for the others, whatever the order of the
// entries in memory (entries freed by the idle timeout and taken again by
// later flows, others past them).
func TestFlushAtOnce(t *testing.T) {
	sink := &collect{}
	table, err := New(reporter.NewForTest(nil), DefaultConfiguration(), sink)
	if err != nil {
		t.Fatal(err)
	}
	s := int64(time.Second)
	for i := range 1000 { // idle from 0 s: gone at 20 s, their entries free
		table.Add(flowPacket(i), 0)
	}
	for i := 1000; i < 1500; i++ { // seen at 10 s and 20 s
		table.Add(flowPacket(i), 10*s)
	}
	table.Expire(20 * s)
	if len(sink.flows) != 1000 {
		t.Fatalf("%d flows passed on at the idle timeout, want 1000", len(sink.flows))
	}
	for i := 1000; i < 1500; i++ {
		table.Add(flowPacket(i), 20*s)
	}
	for i := range 300 { // connections reset at 20 s: ended, still in the table
		p := &decode.Packet{Proto: 6, SrcPort: uint16(2000 + i), DstPort: 80, IPLength: 40, TCPFlags: 0x02, TCPWindow: 100}
		p.SrcAddr[0], p.DstAddr[0] = 10, 12
		table.Add(p, 20*s)
		r := *p
		r.SrcAddr, r.DstAddr, r.SrcPort, r.DstPort, r.TCPFlags = p.DstAddr, p.SrcAddr, p.DstPort, p.SrcPort, 0x14
		table.Add(&r, 20*s+1)
	}
	for i := 2000; i < 2200; i++ { // in freed entries: 200 of them stay free
		table.Add(flowPacket(i), 20*s)
	}
	if uint64(table.n)*8 < uint64(len(table.index)) {
		t.Fatalf("%d flows in an index of %d slots: Flush would delete them one by one", table.n, len(table.index))
	}
	sink.flows = nil
	table.Flush(21 * s)
	byReason := map[uint8]int{}
	seen := map[synth.Flow]bool{}
	for _, f := range sink.flows {
		byReason[f.EndReason]++
		key := synth.Flow{Src: f.Src, Dst: f.Dst, SrcPort: f.SrcPort, DstPort: f.DstPort, Proto: f.Proto}
		if seen[key] {
			t.Errorf("flow %v passed on twice", key)
		}
		seen[key] = true
		if f.Proto == 17 {
			a := f.Src.As4()
			want := uint64(1)
			if i := int(a[2])<<8 | int(a[3]); i >= 1000 && i < 1500 {
				want = 2
			}
			if f.Packets != want {
				t.Errorf("flow %v counted %d packets, want %d", key, f.Packets, want)
			}
		}
	}
	// 500 flows seen at 10 s and 20 s and 200 new ones, forced out; 300
	// reset connections (one flow per direction: 600), ended.
	if byReason[EndForced] != 700 || byReason[EndOfFlow] != 600 || len(sink.flows) != 1300 {
		t.Errorf("Flush passed on %d flows by reason %v, want 700 forced and 600 ended", len(sink.flows), byReason)
	}
	if table.Len() != 0 {
		t.Errorf("%d flows left after Flush", table.Len())
	}
}

// TestSnappedTCPNotAnalysed: packets whose TCP header the snap length cut
// (decode.Packet.TCPPartial: no sequence number or window) count in their
// flow, flags included, but not as retransmissions or zero windows.
func TestSnappedTCPNotAnalysed(t *testing.T) {
	sink := &collect{}
	table, err := New(reporter.NewForTest(nil), Configuration{ActiveTimeout: time.Minute, IdleTimeout: time.Minute, MaxFlows: 10}, sink)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		p := &decode.Packet{Proto: 6, SrcPort: 40000, DstPort: 443, IPLength: 1460, Payload: 1420, TCPPartial: true}
		if i == 0 {
			p.TCPFlags = 0x18
		}
		p.SrcAddr[0], p.DstAddr[0] = 10, 11
		table.Add(p, int64(i)*int64(time.Millisecond))
	}
	table.Flush(int64(time.Second))
	if len(sink.flows) != 1 {
		t.Fatalf("%d flows, want 1", len(sink.flows))
	}
	f := sink.flows[0]
	if f.Packets != 5 || f.Bytes != 5*1460 || f.Retrans != 0 || f.ZeroWindows != 0 || f.TCPFlags != 0x18 {
		t.Errorf("flow %+v: want 5 packets, %d bytes, flags 0x18, no retransmissions or zero windows", f, 5*1460)
	}
}
