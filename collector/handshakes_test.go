package collector_test

import (
	"cmp"
	"context"
	"math"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/pipeline"
	"github.com/spanflow/spanflow/collector/rollup"
	"github.com/spanflow/spanflow/exporter"
	"github.com/spanflow/spanflow/exporter/capture"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/reporter"
)

// handshakeCount sums a service row's handshakes and keeps its RTT p50.
type handshakeCount struct {
	mu         sync.Mutex
	handshakes float64
	p50        float64
}

func (h *handshakeCount) Rollup(s *rollup.Snapshot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range s.Rows {
		if r.Scope == rollup.ScopeService && r.Key == "tcp/443" {
			h.handshakes += r.Values.Of(rollup.HandshakesPerSecond) // ticks of 1 s
			if v, ok := r.Values.Get(rollup.RTTp50); ok {
				h.p50 = v
			}
		}
	}
}

// TestHandshakesOnce: three TCP connections of 20 s, each with one
// handshake (2 ms server side, 1 ms client side), through spanflow's
// exporter (5 s active timeout: four records a direction) as IPFIX into
// the collector and its rollups: three handshakes, RTT 3 ms. The meter
// puts a connection's RTT on every record of both directions, and each
// counted as a handshake: 27.
func TestHandshakesOnce(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC).UnixNano()
	cli, srv := netip.MustParseAddr("10.2.0.10"), netip.MustParseAddr("10.2.0.20")
	var pkts []synth.Packet
	add := func(at int64, fromClient bool, sport uint16, seq, ack uint32, flags uint8, n int) {
		src, dst, sp, dp := cli, srv, sport, uint16(443)
		if !fromClient {
			src, dst, sp, dp = srv, cli, 443, sport
		}
		ip := synth.IPv4(src, dst, 6, 0, 1, 0, false, synth.TCP(sp, dp, seq, ack, flags, 1000, n))
		smac, dmac := synth.MAC(1), synth.MAC(2)
		if !fromClient {
			smac, dmac = dmac, smac
		}
		pkts = append(pkts, synth.Packet{Time: at, Data: synth.Ethernet(smac, dmac, nil, 0x0800, ip)})
	}
	const syn, ack, psh, fin = 0x02, 0x10, 0x08, 0x01
	for c := range 3 {
		t0 := base + int64(c)*int64(100*time.Millisecond)
		sport := uint16(40000 + c)
		add(t0, true, sport, 1000, 0, syn, 0)
		add(t0+int64(2*time.Millisecond), false, sport, 5000, 1001, syn|ack, 0)
		add(t0+int64(3*time.Millisecond), true, sport, 1001, 5001, ack, 0)
		cs, ss := uint32(1001), uint32(5001)
		for i := 1; i < 40; i++ { // every 500 ms, both ways
			at := t0 + int64(i)*int64(500*time.Millisecond)
			add(at, true, sport, cs, ss, psh|ack, 100)
			cs += 100
			add(at+int64(time.Millisecond), false, sport, ss, cs, psh|ack, 200)
			ss += 200
		}
		end := t0 + int64(20*time.Second)
		add(end, true, sport, cs, ss, fin|ack, 0)
		add(end+int64(time.Millisecond), false, sport, ss, cs+1, fin|ack, 0)
		add(end+int64(2*time.Millisecond), true, sport, cs+1, ss+1, ack, 0)
	}
	slices.SortStableFunc(pkts, func(a, b synth.Packet) int { return cmp.Compare(a.Time, b.Time) })
	path := filepath.Join(t.TempDir(), "conns.pcap")
	if err := synth.WritePcapFile(path, pkts); err != nil {
		t.Fatal(err)
	}

	r := reporter.NewForTest(nil)
	cfg := rollup.DefaultConfiguration()
	cfg.EventTime, cfg.Delay = true, 30*time.Second
	e, err := rollup.New(r, cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := &handshakeCount{}
	e.Subscribe(got)
	sink := &recordSink{}
	_, l := listenInto(t, r, []pipeline.Output{{Name: "memory", Sink: sink}, {Name: "rollups", Sink: e}}...)
	xc := exporter.DefaultConfiguration()
	xc.Pcap = path
	xc.Collectors = []string{l.Addrs()[0].String()}
	xc.ActiveTimeout, xc.IdleTimeout = exporter.Duration(5*time.Second), exporter.Duration(15*time.Second)
	x, err := exporter.New(r, xc, nil)
	if err != nil {
		t.Fatal(err)
	}
	src, err := capture.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := x.Run(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	var n int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if n = len(sink.flows()); n >= 24 {
			break
		}
	}
	time.Sleep(100 * time.Millisecond)
	l.Stop()
	e.Stop()
	got.mu.Lock()
	defer got.mu.Unlock()
	t.Logf("%d records; rollups: %v handshakes, RTT p50 %.2f ms", len(sink.flows()), got.handshakes, got.p50)
	if n < 24 {
		t.Fatalf("%d records, want 4 a direction for each of 3 connections", n)
	}
	if math.Abs(got.handshakes-3) > 1e-9 || math.Abs(got.p50-3) > 0.05 {
		t.Errorf("%v handshakes, RTT p50 %v ms; want 3 handshakes of 3 ms", got.handshakes, got.p50)
	}
}
