package alert

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/rollup"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

// hundredRules: 100 rules over every scope and value kind, with selectors.
func hundredRules(b *testing.B) *File {
	var sb strings.Builder
	sb.WriteString("lines:\n")
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&sb, "  \"10.1.0.%d vmnic0\": {capacity: 10Gbit, name: esx-%02d vmnic0}\n", i, i)
	}
	sb.WriteString("rules:\n")
	kinds := []string{
		"value: utilisation\n    line: \"esx-%02d*\"\n    above: 0.9",
		"value: retransmission_ratio\n    project: \"p%d*\"\n    above: 0.05",
		"value: rtt_p95_ms\n    vm: \"vm-%d*\"\n    above: 50",
		"value: bytes_per_second\n    service: \"tcp/%d*\"\n    above: 1e9",
		"value: packets_per_second\n    exporter: \"10.1.0.%d\"\n    above: 1e6",
	}
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&sb, "  - name: r%d\n    "+kinds[i%5]+"\n    for: 10s\n", i, i%10)
	}
	sb.WriteString("detectors:\n  new_peer: {enabled: true}\n  port_scan: {enabled: true}\n  half_open: {enabled: true, flows: 500}\n  drop: {enabled: true}\n")
	f, err := ParseRules([]byte(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	return f
}

func benchRecords(n int) []flow.Record {
	recs := make([]flow.Record, n)
	for i := range recs {
		recs[i] = flow.Record{ObserverIP: netip.AddrFrom4([4]byte{10, 1, 0, byte(i % 50)}), InIfName: "vmnic0",
			SrcAddr: netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}), DstAddr: netip.AddrFrom4([4]byte{10, 3, 0, byte(i % 200)}),
			SrcPort: uint16(30000 + i%20000), DstPort: uint16([]int{443, 5432, 80, 8443}[i%4]), Proto: 6, TCPFlags: 0x1b,
			Bytes: 15000, Packets: 10, TCP: flow.TCPPerf{RTTClient: time.Millisecond},
			Src: flow.Endpoint{VSphere: &flow.VSphere{VMName: fmt.Sprintf("vm-%d", i%500), Project: fmt.Sprintf("p%d", i%20)}}}
	}
	return recs
}

// benchFlows writes batches of 1000 flows, one batch per 10 ms of event
// time (100,000 flows/s), through the rollup engine (event time), with or
// without the 100 rules, and with or without the flow detectors. ns/op is
// per flow.
func benchFlows(b *testing.B, withRules, withDetectors bool) {
	cfg := rollup.DefaultConfiguration()
	cfg.EventTime = true
	e, err := rollup.New(reporter.NewForTest(nil), cfg)
	if err != nil {
		b.Fatal(err)
	}
	var sinks []flow.Sink
	sinks = append(sinks, e)
	if withRules {
		f := hundredRules(b)
		e.Subscribe(NewEvaluator(f, "", "", func(Alert) {}))
		if fd := NewFlowDetectors(f.Detectors, "", "", func(Alert) {}); fd != nil && withDetectors {
			e.Subscribe(fd)
			sinks = append(sinks, fd)
		}
	}
	e.Start()
	recs := benchRecords(1000)
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	b.ResetTimer()
	for done := 0; done < b.N; done += len(recs) {
		now = now.Add(10 * time.Millisecond)
		for i := range recs {
			recs[i].Received, recs[i].Start, recs[i].End = now, now.Add(-time.Second), now
		}
		for _, s := range sinks {
			s.Write(recs)
		}
	}
}

// BenchmarkFlows: the rollups alone (the peer), with 100 rules (issue
// #14's measure), and with the four flow detectors too; the differences
// are what rules and detectors cost per flow.
func BenchmarkFlows(b *testing.B) {
	b.Run("rollups", func(b *testing.B) { benchFlows(b, false, false) })
	b.Run("rollups+100rules", func(b *testing.B) { benchFlows(b, true, false) })
	b.Run("rollups+100rules+detectors", func(b *testing.B) { benchFlows(b, true, true) })
}

// BenchmarkRulesSnapshot: judging 100 rules on one snapshot of 1,000 rows,
// as the engine hands it out (the same rows tick after tick: "same-layout")
// and with Layout 0, every tick's rows matched anew ("layout-unknown").
func BenchmarkRulesSnapshot(b *testing.B) {
	b.Run("same-layout", func(b *testing.B) { benchRulesSnapshot(b, 1) })
	b.Run("layout-unknown", func(b *testing.B) { benchRulesSnapshot(b, 0) })
}

func benchRulesSnapshot(b *testing.B, layout uint64) {
	f := hundredRules(b)
	ev := NewEvaluator(f, "", "", func(Alert) {})
	var rows []rollup.Row
	// 200 rows of each scope: the lines are 50 hosts' 4 uplinks each.
	for i := 0; i < 200; i++ {
		v := map[string]float64{rollup.BitsPerSecond: 1e9, rollup.BytesPerSecond: 1.25e8, rollup.PacketsPerSecond: 1e5,
			rollup.RetransmissionRatio: 0.01, rollup.RTTp95: 3, rollup.BytesPerSecondBaseline: 1.2e8}
		rows = append(rows,
			rollup.Row{Scope: rollup.ScopeLine, Key: fmt.Sprintf("10.1.0.%d vmnic%d", i%50, i/50), Labels: map[string]string{"exporter": fmt.Sprintf("10.1.0.%d", i%50)}, Values: rollup.ValuesOf(v)},
			rollup.Row{Scope: rollup.ScopeProject, Key: fmt.Sprintf("p%d", i), Labels: map[string]string{"project": fmt.Sprintf("p%d", i)}, Values: rollup.ValuesOf(v)},
			rollup.Row{Scope: rollup.ScopeVM, Key: fmt.Sprintf("vm-%d", i), Labels: map[string]string{"vm": fmt.Sprintf("vm-%d", i)}, Values: rollup.ValuesOf(v)},
			rollup.Row{Scope: rollup.ScopeService, Key: fmt.Sprintf("tcp/%d", 1000+i), Labels: map[string]string{}, Values: rollup.ValuesOf(v)},
			rollup.Row{Scope: rollup.ScopeExporter, Key: fmt.Sprintf("10.1.0.%d", i), Labels: map[string]string{"exporter": fmt.Sprintf("10.1.0.%d", i)}, Values: rollup.ValuesOf(v)})
	}
	s := &rollup.Snapshot{Time: t0, Rows: rows, Layout: layout}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Time = s.Time.Add(time.Second)
		ev.Rollup(s)
	}
}

// BenchmarkDeliveryLatency: from an alert's emission to the webhook
// receiver's answer, over HTTP on loopback; reports p50 and p99.
func BenchmarkDeliveryLatency(b *testing.B) {
	got := make(chan time.Time, 1024)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- time.Now() }))
	defer srv.Close()
	rep := reporter.NewForTest(nil)
	w := NewWebhook(rep, newMetrics(rep), srv.URL, []byte("k"), 1024)
	w.Start()
	defer w.Stop()
	lat := make([]time.Duration, 0, b.N)
	for i := 0; i < b.N; i++ {
		start := time.Now()
		w.Send(testAlert("r", fmt.Sprint(i), start))
		lat = append(lat, (<-got).Sub(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkNewPeersHeld: the new-peer detector after its learning period,
// while new external clients each fire and hold an alert (Hold: 2
// minutes), in batches of 20 flows (a datagram's worth), 100,000 flows a
// second. "new": every flow from a new client (200,000 flows: that many
// held at the end); "known": 1 flow in 100 from a new client, the others
// from 20,000 clients learnt during the learning period, while the new
// ones' alerts are held. ns/op is per flow.
func BenchmarkNewPeersHeld(b *testing.B) {
	for _, every := range []int{1, 100} {
		name := map[int]string{1: "new", 100: "known"}[every]
		b.Run(name, func(b *testing.B) {
			d := DefaultDetectors()
			d.NewPeer.Enabled, d.NewPeer.Learning, d.NewPeer.MaxPeers = true, 0, 1<<30
			if every > 1 {
				d.NewPeer.Learning = time.Minute
			}
			fired := 0
			fd := NewFlowDetectors(d, "", "", func(Alert) { fired++ })
			vs := &flow.VSphere{VMName: "front-1", Project: "payments"}
			addr := func(c uint32) netip.Addr { return netip.AddrFrom4([4]byte{100, byte(c >> 16), byte(c >> 8), byte(c)}) }
			mk := func(now time.Time, a netip.Addr) flow.Record {
				return flow.Record{Received: now, End: now, Proto: 6, TCPFlags: 0x1b, SrcPort: 40000, DstPort: 443,
					SrcAddr: a, DstAddr: netip.AddrFrom4([4]byte{10, 0, 0, 1}), Dst: flow.Endpoint{VSphere: vs}, Locality: "external"}
			}
			now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
			recs := make([]flow.Record, 20)
			const known = 20000
			if every > 1 { // the known clients, learnt
				for c := 0; c < known; c += len(recs) {
					for i := range recs {
						recs[i] = mk(now, addr(uint32(c+i)))
					}
					fd.Write(recs)
				}
				now = now.Add(d.NewPeer.Learning)
			}
			next := uint32(known)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += len(recs) {
				now = now.Add(200 * time.Microsecond)
				for i := range recs {
					if (done+i)%every == 0 {
						recs[i] = mk(now, addr(next))
						next++
					} else {
						recs[i] = mk(now, addr(uint32((done+i)*7919%known)))
					}
				}
				fd.Write(recs)
			}
			b.StopTimer()
			b.ReportMetric(float64(len(fd.newPeers)), "held")
			if fired == 0 {
				b.Fatal("no new peer fired")
			}
		})
	}
}

// BenchmarkDiscoverURL: the Kibana Discover link every alert carries (a
// new-peer alert's: its query names a project and a peer).
func BenchmarkDiscoverURL(b *testing.B) {
	a := &Alert{Rule: "new_peer", Scope: "project", Key: "payments",
		Labels:   map[string]string{"project": "payments", "peer": "100.1.2.3"},
		StartsAt: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)}
	b.ReportAllocs()
	for b.Loop() {
		if DiscoverURL("http://kibana:5601", "spanflow-flows", a) == "" {
			b.Fatal("no link")
		}
	}
}

// BenchmarkAlertmanagerTake: what the Alertmanager poster does under the
// lock that Send (on the detectors' path) takes, with 100,000 alerts
// firing: for a wake after one change ("change"), and for the resend of
// every alert ("resend").
func BenchmarkAlertmanagerTake(b *testing.B) {
	r := reporter.NewForTest(nil)
	s := NewAlertmanager(r, newMetrics(r), nil, time.Minute)
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	for i := range 100_000 {
		s.Send(Alert{Rule: "new_peer", Scope: "project", Key: "payments " + strconv.Itoa(i),
			Labels: map[string]string{"project": "payments", "peer": strconv.Itoa(i)}, StartsAt: now})
	}
	s.take(false)
	b.Run("change", func(b *testing.B) {
		a := Alert{Rule: "new_peer", Scope: "project", Key: "payments 7", Labels: map[string]string{"project": "payments", "peer": "7"}, StartsAt: now}
		for b.Loop() {
			s.Send(a)
			if len(s.take(false)) != 1 {
				b.Fatal("not one change")
			}
		}
	})
	b.Run("resend", func(b *testing.B) {
		for b.Loop() {
			if len(s.take(true)) != 100_000 {
				b.Fatal("not every alert")
			}
		}
	})
}
