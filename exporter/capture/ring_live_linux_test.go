//go:build linux && cgo

package capture_test

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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

// TestLivePacketRingRate measures (when SPANFLOW_RING_LIVE_MEASURE is set)
// the mixed capture replayed in a loop at tcpreplay's top speed into a
// veth, metered with the packet ring off and on: what tcpreplay reached,
// the kernel's drops, the ring's kept and dropped frames and the
// exporter's CPU time. Nothing about speed is asserted; every frame
// captured must be kept or counted as dropped.
func TestLivePacketRingRate(t *testing.T) {
	if os.Getenv("SPANFLOW_RING_LIVE_MEASURE") == "" {
		t.Skip("a measurement: set SPANFLOW_RING_LIVE_MEASURE=1")
	}
	// The veths' MTU is 9000: frames up to 9014 bytes go through whole.
	// SPANFLOW_RING_LIVE_MAX_FRAME=1514 keeps the standard-MTU frames only.
	maxFrame := 9014
	if v, err := strconv.Atoi(os.Getenv("SPANFLOW_RING_LIVE_MAX_FRAME")); err == nil {
		maxFrame = v
	}
	var pkts []synth.Packet
	var frameBytes int
	dir := testutil.SharedTestdata(t)
	for _, pat := range []string{"mirror/*/*.pcap", "mirror/*/*.pcapng"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		for _, p := range m {
			for _, f := range testutil.ReadPcap(t, p) {
				if f.LinkType == 1 && len(f.Data) == f.Length && len(f.Data) >= 60 && len(f.Data) <= maxFrame {
					pkts = append(pkts, synth.Packet{Time: int64(len(pkts)) * 1000, Data: f.Data})
					frameBytes += len(f.Data)
				}
			}
		}
	}
	t.Logf("%d frames of at most %d bytes, %d on average", len(pkts), maxFrame, frameBytes/max(len(pkts), 1))
	pcap := filepath.Join(t.TempDir(), "mixed.pcap")
	if err := synth.WritePcapFile(pcap, pkts); err != nil {
		t.Fatal(err)
	}
	tcpreplay := testutil.Command(t, "tcpreplay")
	for _, mode := range []string{"off", "zstd", "none"} {
		on := mode != "off"
		n := newNetns(t)
		col := newCollector(t)
		cfg := exporter.DefaultConfiguration()
		cfg.Interfaces, cfg.Collectors, cfg.RingSize = []string{"vB"}, []string{col.addr()}, 256
		if on {
			cfg.PacketRing, cfg.PacketRingSize, cfg.PacketRingMinFree = filepath.Join(t.TempDir(), "ring"), "4GiB", "0"
			cfg.PacketRingCompress = mode
		}
		lives, _ := cfg.Live()
		var src *capture.Live
		var err error
		n.do(t, func() { src, err = capture.OpenLive(lives[0], 0) })
		if err != nil {
			t.Fatal(err)
		}
		f, err := exporter.NewFanout(reporter.NewForTest(io.Discard), cfg, []capture.Source{src}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan exporter.Summary)
		cpu0 := testutil.CPUTime()
		go func() {
			sum, _ := f.Run(ctx)
			src.Close()
			done <- sum
		}()
		// SPANFLOW_RING_LIVE_SENDERS tcpreplay processes at once (2 by
		// default: one alone is bound by its own per-frame cost), 1,000
		// loops of the capture in all; the rate is the bytes sent over the
		// wall clock from the first start to the last end.
		senders, loops := 2, 1000
		if v, err := strconv.Atoi(os.Getenv("SPANFLOW_RING_LIVE_SENDERS")); err == nil && v > 0 {
			senders = v
		}
		outs := make([][]byte, senders)
		errs := make([]error, senders)
		var wg sync.WaitGroup
		start := time.Now()
		for i := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				outs[i], errs[i] = exec.Command("ip", "netns", "exec", n.name, tcpreplay, "--topspeed", "--preload-pcap",
					"--loop", strconv.Itoa(loops/senders), "-i", "vA", pcap).CombinedOutput()
			}()
		}
		wg.Wait()
		wall := time.Since(start)
		for i := range senders {
			if errs[i] != nil {
				t.Fatalf("tcpreplay: %v\n%s", errs[i], outs[i])
			}
		}
		time.Sleep(time.Second)
		cancel()
		sum := <-done
		cpu := testutil.CPUTime() - cpu0
		rated := fmt.Sprintf("%d tcpreplay: %.0f Mbit/s, %.0f frames/s over %.2f s", senders,
			float64(frameBytes*(loops/senders)*senders)*8/wall.Seconds()/1e6, float64(len(pkts)*(loops/senders)*senders)/wall.Seconds(), wall.Seconds())
		for _, out := range outs {
			for _, l := range strings.Split(string(out), "\n") {
				if strings.Contains(l, "Rated:") {
					rated += " [" + strings.TrimSpace(l) + "]"
				}
			}
		}
		line := fmt.Sprintf("ring %s: %s; captured %d frames (%d bytes), kernel dropped %d; exporter CPU %.2f s", mode, rated, sum.Frames, sum.Octets, sum.KernelDropped, cpu.Seconds())
		if g := sum.Ring; g != nil {
			line += fmt.Sprintf("; ring kept %d, dropped %d, compression %.2fx", g.Frames, g.Dropped, float64(g.RawBytes)/float64(max(g.StoredBytes, 1)))
			if g.Frames+g.Dropped != sum.Frames {
				t.Errorf("ring: %d kept + %d dropped of %d captured", g.Frames, g.Dropped, sum.Frames)
			}
		}
		t.Log(line)
	}
}
