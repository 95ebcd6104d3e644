//go:build linux && cgo

package capture_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter"
	"github.com/spanflow/spanflow/exporter/capture"
	"github.com/spanflow/spanflow/exporter/ring"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestLivePacketRing: a generated capture replayed into a veth at
// tcpreplay's top speed with the packet ring on: metering sees every
// frame, the ring keeps every one byte-identical and in order, and each
// flow's query returns exactly the frames of that flow that were sent
// (inner flows of tunnels too).
func TestLivePacketRing(t *testing.T) {
	c := synth.Mixed(time.Unix(1700000000, 0))
	n := newNetns(t)
	pcap := filepath.Join(t.TempDir(), "replay.pcap")
	if err := synth.WritePcapFile(pcap, c.Packets); err != nil {
		t.Fatal(err)
	}
	col := newCollector(t)
	cfg := exporter.DefaultConfiguration()
	cfg.Interfaces, cfg.Collectors = []string{"vB"}, []string{col.addr()}
	cfg.PacketRing, cfg.PacketRingSize, cfg.PacketRingMinFree = filepath.Join(t.TempDir(), "ring"), "64MiB", "0"
	lives, err := cfg.Live()
	if err != nil {
		t.Fatal(err)
	}
	var src *capture.Live
	n.do(t, func() { src, err = capture.OpenLive(lives[0], 0) })
	if err != nil {
		t.Fatal(err)
	}
	f, err := exporter.NewFanout(reporter.NewForTest(os.Stderr), cfg, []capture.Source{src}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan exporter.Summary)
	go func() {
		sum, err := f.Run(ctx)
		if err != nil {
			t.Errorf("run: %v", err)
		}
		src.Close()
		done <- sum
	}()
	n.replay(t, pcap)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && f.Frames() < uint64(len(c.Packets)); {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	sum := <-done
	if sum.KernelDropped != 0 || sum.Frames != uint64(len(c.Packets)) {
		t.Fatalf("captured %d of %d frames, kernel dropped %d", sum.Frames, len(c.Packets), sum.KernelDropped)
	}
	if sum.Ring == nil || sum.Ring.Frames != uint64(len(c.Packets)) || sum.Ring.Dropped != 0 {
		t.Fatalf("ring: %+v", sum.Ring)
	}
	data := func(pkts []ring.Packet) [][]byte {
		out := [][]byte{}
		for _, p := range pkts {
			out = append(out, p.Data)
		}
		return out
	}
	all, _, err := ring.Search(cfg.PacketRing, ring.Query{}, func(s string) { t.Error(s) })
	if err != nil {
		t.Fatal(err)
	}
	var sent [][]byte // what tcpreplay sent: the frames as the pcap holds them (snap lengths applied)
	for _, p := range testutil.ReadPcap(t, pcap) {
		sent = append(sent, p.Data)
	}
	if diff := testutil.Diff(data(all), sent); diff != "" {
		t.Fatalf("the ring's frames are not those sent (-got, +want):\n%s", diff)
	}
	// Each flow of the ground truth: its query gives as many frames as
	// the generator sent with its 5-tuple, both directions and every
	// record of it added up, and they are the ring's frames of that flow,
	// in order.
	sentOf := map[uint64]uint64{}
	tuples := map[uint64]string{}
	for _, fl := range c.Flows {
		if fl.Proto != 6 && fl.Proto != 17 {
			continue
		}
		tuple := map[uint8]string{6: "tcp", 17: "udp"}[fl.Proto] + " " + netip.AddrPortFrom(fl.Src, fl.SrcPort).String() + " " + netip.AddrPortFrom(fl.Dst, fl.DstPort).String()
		key, _, err := ring.ParseFlow(tuple)
		if err != nil {
			t.Fatal(err)
		}
		sentOf[key] += fl.Packets
		tuples[key] = tuple
	}
	checked := 0
	for key, want := range sentOf {
		got, _, err := ring.Search(cfg.PacketRing, ring.Query{Key: key}, func(s string) { t.Error(s) })
		if err != nil {
			t.Fatal(err)
		}
		var mine [][]byte
		for _, p := range all {
			if p.Key == key {
				mine = append(mine, p.Data)
			}
		}
		if uint64(len(got)) != want || testutil.Diff(data(got), mine) != "" {
			t.Errorf("flow %s: %d frames from the ring, %d sent", tuples[key], len(got), want)
		}
		checked++
	}
	// A time window: exactly the frames captured within it.
	from, to := all[40].Time, all[90].Time
	var inWindow [][]byte
	for _, p := range all {
		if p.Time >= from && p.Time < to {
			inWindow = append(inWindow, p.Data)
		}
	}
	win, _, err := ring.Search(cfg.PacketRing, ring.Query{From: from, To: to}, func(s string) { t.Error(s) })
	if err != nil {
		t.Fatal(err)
	}
	if diff := testutil.Diff(data(win), inWindow); diff != "" || len(win) < 50 {
		t.Errorf("window: %d frames (-got, +want):\n%s", len(win), diff)
	}
	if checked == 0 {
		t.Fatal("no flow checked")
	}
	t.Logf("%d frames, %d flows queried", len(all), checked)
}
