package collector

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/alert"
	"github.com/spanflow/spanflow/exporter/ipfix"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

// incident is one of the known incidents of the generated traffic.
type incident struct {
	rule, key  string
	start, end time.Duration // from the capture's start
}

var e2eIncidents = []incident{
	{"line_saturated", "10.1.0.3 vmnic0", 30 * time.Second, 70 * time.Second},
	{"retransmission_burst", "payments", 90 * time.Second, 110 * time.Second},
	{alert.RuleNewPeer, "payments 203.0.113.9", 130 * time.Second, 150 * time.Second},
	{alert.RulePortScan, "192.0.2.66", 160 * time.Second, 170 * time.Second},
	{alert.RuleDrop, "10.1.0.3 vmnic1", 190 * time.Second, 215 * time.Second},
}

const e2eRules = `lines:
  "10.1.0.3 vmnic0": {capacity: 100Mbit, name: esx-a03 vmnic0}
rules:
  - name: line_saturated
    value: utilisation
    line: esx-a03 vmnic0
    above: 0.9
    clear: 0.8
    for: 3s
    severity: critical
  - name: retransmission_burst
    value: retransmission_ratio
    project: payments
    above: 0.05
    clear: 0.02
    for: 3s
detectors:
  new_peer: {enabled: true, learning: 60s, hold: 30s}
  port_scan: {enabled: true, ports: 100, window: 30s}
  drop: {enabled: true, ratio: 0.2, clear: 0.5, min_baseline: 125000, for: 5s}
`

// e2eRecords is 250 s of traffic as an exporter with a 1 s active timeout
// reports it: every conversation one record a second, covering that second.
// Without incidents when clean.
func e2eRecords(t0 time.Time, clean bool) [][]flow.Record {
	in := func(s int, i int) bool {
		d := time.Duration(s) * time.Second
		return !clean && d > e2eIncidents[i].start && d <= e2eIncidents[i].end
	}
	a := netip.MustParseAddr
	var out [][]flow.Record
	for s := 1; s <= 250; s++ {
		recv := t0.Add(time.Duration(s) * time.Second)
		rec := func(src, dst string, sp, dp uint16, proto uint8, ifidx uint32, bytes, pkts uint64) flow.Record {
			return flow.Record{Start: recv.Add(-time.Second + time.Millisecond), End: recv, SrcAddr: a(src), DstAddr: a(dst),
				SrcPort: sp, DstPort: dp, Proto: proto, InIf: ifidx, OutIf: 9, Bytes: bytes, Packets: pkts, TCPFlags: 0x18}
		}
		var recs []flow.Record
		load := 0.2
		if in(s, 0) {
			load = 0.95
		}
		recs = append(recs, rec("10.2.0.10", "10.3.0.10", 40000, 5201, 17, 1, uint64(load*100e6/8), 1000))
		db := rec("10.2.1.10", "10.2.1.20", 41000, 5432, 6, 3, 1e6, 1000)
		db.TCP.Retransmissions = 2
		if in(s, 1) {
			db.TCP.Retransmissions = 120
		}
		recs = append(recs, db, rec("10.2.1.10", "198.51.100.1", 42000, 443, 6, 3, 2e4, 20))
		if in(s, 2) {
			recs = append(recs, rec("10.2.1.10", "203.0.113.9", 43000, 443, 6, 3, 2e4, 20))
		}
		if in(s, 3) {
			for p := 0; p < 20; p++ {
				r := rec("192.0.2.66", "10.3.0.30", 55555, uint16((s-160)*20+p), 6, 3, 44, 1)
				r.TCPFlags = 0x02
				recs = append(recs, r)
			}
		}
		bulk := uint64(5e6)
		if in(s, 4) {
			bulk = 1e5
		}
		recs = append(recs, rec("10.2.0.11", "10.3.0.11", 40001, 5202, 17, 2, bulk, 1000))
		out = append(out, recs)
	}
	return out
}

// e2ePcap encodes the records with the exporter's IPFIX encoder and writes
// its messages as UDP datagrams from 10.1.0.3, each captured when it was
// exported.
func e2ePcap(t *testing.T, path string, t0 time.Time, clean bool) {
	var pkts []synth.Packet
	var now time.Time
	tr := transportFunc(func(msg []byte) error {
		ip := synth.IPv4(netip.MustParseAddr("10.1.0.3"), netip.MustParseAddr("10.0.0.1"), 17, 0, uint16(len(pkts)), 0, false,
			synth.UDP(4739, 4739, append([]byte(nil), msg...)))
		pkts = append(pkts, synth.Packet{Time: now.UnixNano(), Data: synth.Ethernet(synth.MAC(1), synth.MAC(2), nil, 0x0800, ip)})
		return nil
	})
	enc, err := ipfix.New(reporter.NewForTest(nil), ipfix.DefaultConfiguration(), tr)
	if err != nil {
		t.Fatal(err)
	}
	for i, recs := range e2eRecords(t0, clean) {
		now = t0.Add(time.Duration(i+1)*time.Second + 10*time.Millisecond)
		if err := enc.Write(now, recs); err != nil {
			t.Fatal(err)
		}
		enc.Flush(now)
	}
	if err := synth.WritePcapFile(path, pkts); err != nil {
		t.Fatal(err)
	}
}

type transportFunc func([]byte) error

func (f transportFunc) Send(msg []byte) error { return f(msg) }

// TestAlertsEndToEnd: five known incidents, encoded by the exporter's IPFIX
// encoder into a capture, replayed through the collector (decoders,
// enrichers, rollups in event time, rules, detectors) to a webhook: exactly
// the five expected alerts fire, each within 10 s of event time of its
// incident's start, and resolve after it ends; the same traffic without
// incidents fires nothing. Real time is not run here (250 s per run): the
// event time of the capture stands for it.
func TestAlertsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(e2eRules), 0o644)
	os.WriteFile(filepath.Join(dir, "networks.yaml"), []byte("10.2.1.0/24: {name: pay, project: payments}\n10.0.0.0/8: {name: dc}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "ifnames.yaml"), []byte("10.1.0.3: {1: vmnic0, 2: vmnic1, 3: vmnic2, 9: uplink}\n"), 0o644)
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	for _, clean := range []bool{false, true} {
		t.Run(map[bool]string{false: "incidents", true: "clean"}[clean], func(t *testing.T) {
			capture := filepath.Join(dir, fmt.Sprintf("flows-%v.pcap", clean))
			e2ePcap(t, capture, t0, clean)
			var mu sync.Mutex
			var got []alert.WebhookMessage
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				var m alert.WebhookMessage
				if err := json.Unmarshal(b, &m); err != nil {
					t.Errorf("webhook body %s: %v", b, err)
				}
				mu.Lock()
				got = append(got, m)
				mu.Unlock()
			})}
			go srv.Serve(l)
			defer srv.Close()
			cfg := DefaultConfiguration()
			cfg.Input.Pcap, cfg.MetricsListen = capture, ""
			cfg.Outputs.Output = []string{"file:" + filepath.Join(dir, "flows.ndjson")}
			cfg.Enrichment.Networks, cfg.Enrichment.InterfaceNames = filepath.Join(dir, "networks.yaml"), filepath.Join(dir, "ifnames.yaml")
			cfg.Alerts.Rules, cfg.Alerts.WebhookURL = filepath.Join(dir, "rules.yaml"), "http://"+l.Addr().String()+"/hook"
			cfg.Alerts.KibanaURL = "http://kibana.example:5601"
			c, err := New(reporter.NewForTest(nil), cfg, Dependencies{})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Replay(); err != nil {
				t.Fatal(err)
			}
			want := 0
			if !clean {
				want = 2 * len(e2eIncidents)
			}
			deadline := time.Now().Add(15 * time.Second)
			for time.Now().Before(deadline) {
				mu.Lock()
				n := len(got)
				mu.Unlock()
				if n >= want && (want > 0 || time.Now().After(deadline.Add(-12*time.Second))) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			c.Stop()
			mu.Lock()
			defer mu.Unlock()
			var lines []string
			for _, m := range got {
				l := fmt.Sprintf("%s %s %s fired=%s", m.Status, m.Alert.Rule, m.Alert.Key, m.Alert.FiredAt.Sub(t0))
				if !m.Alert.Firing() {
					l += fmt.Sprintf(" ends=%s", m.Alert.EndsAt.Sub(t0))
				}
				lines = append(lines, l)
			}
			sort.Strings(lines)
			t.Logf("webhook received:\n%s", strings.Join(lines, "\n"))
			if len(got) != want {
				t.Fatalf("%d notifications, want %d", len(got), want)
			}
			for _, inc := range e2eIncidents {
				if clean {
					break
				}
				var fired, resolved *alert.Alert
				for i := range got {
					if got[i].Alert.Rule == inc.rule && got[i].Alert.Key == inc.key {
						if got[i].Status == "firing" {
							fired = &got[i].Alert
						} else {
							resolved = &got[i].Alert
						}
					}
				}
				if fired == nil || resolved == nil {
					t.Errorf("%s %s: fired %v, resolved %v", inc.rule, inc.key, fired != nil, resolved != nil)
					continue
				}
				latency := fired.FiredAt.Sub(t0.Add(inc.start))
				t.Logf("%s: fired %.1f s (event time) after the incident began; resolved %.1f s after it ended; %s",
					inc.rule, latency.Seconds(), resolved.EndsAt.Sub(t0.Add(inc.end)).Seconds(), fired.DiscoverURL)
				if latency < 0 || latency > 10*time.Second {
					t.Errorf("%s fired %s after its incident began, want within 10 s", inc.rule, latency)
				}
				if !resolved.EndsAt.After(t0.Add(inc.end)) {
					t.Errorf("%s resolved at %s, before its incident ended at %s", inc.rule, resolved.EndsAt.Sub(t0), inc.end)
				}
			}
		})
	}
}
