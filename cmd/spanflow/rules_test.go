package main

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/flow"
)

// writeIncident writes 120 s of flow documents: a 10 Gbit/s line at 20 %,
// then at 95 % from 30 s to 70 s; a payments VM with a retransmission
// burst from 40 s to 60 s. Each flow covers the second before it was
// received, as an exporter with a 1 s active timeout would send it.
func writeIncident(t *testing.T, path string, clean bool) {
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	var b []byte
	var enc flow.Encoder
	for s := 1; s <= 120; s++ {
		recv := t0.Add(time.Duration(s) * time.Second)
		load := 0.2
		if !clean && s > 30 && s <= 70 {
			load = 0.95
		}
		line := flow.Record{ObserverIP: netip.MustParseAddr("10.1.0.3"), Received: recv, Start: recv.Add(-time.Second), End: recv,
			SrcAddr: netip.MustParseAddr("10.2.0.10"), DstAddr: netip.MustParseAddr("10.3.0.10"), SrcPort: 40000, DstPort: 5201,
			Proto: 17, Bytes: uint64(load * 10e9 / 8), Packets: 1000, InIfName: "vmnic0"}
		retrans := uint32(2)
		if !clean && s > 40 && s <= 60 {
			retrans = 120 // 12 % of 1000 packets
		}
		pay := flow.Record{ObserverIP: netip.MustParseAddr("10.1.0.4"), Received: recv, Start: recv.Add(-time.Second), End: recv,
			SrcAddr: netip.MustParseAddr("10.2.1.10"), DstAddr: netip.MustParseAddr("10.2.1.20"), SrcPort: 41000, DstPort: 5432,
			Proto: 6, TCPFlags: 0x18, Bytes: 1e6, Packets: 1000, InIfName: "vmnic1", TCP: flow.TCPPerf{Retransmissions: retrans},
			Src: flow.Endpoint{VSphere: &flow.VSphere{VMName: "pay-web-1", Project: "payments"}},
			Dst: flow.Endpoint{VSphere: &flow.VSphere{VMName: "pay-db-1", Project: "payments"}}}
		for _, r := range []*flow.Record{&line, &pay} {
			b = append(enc.AppendDocument(b, r), '\n')
		}
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

const incidentRules = `lines:
  "10.1.0.3 vmnic0": {capacity: 10Gbit, name: esx-a03 vmnic0}
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
`

// TestRulesTestNDJSON: the incidents fire after their for: and resolve
// after they end, at the seconds the traffic says; a clean run of the same
// length fires nothing.
func TestRulesTestNDJSON(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rules, []byte(incidentRules), 0o644)
	for _, clean := range []bool{false, true} {
		flows := filepath.Join(dir, fmt.Sprintf("flows-%v.ndjson", clean))
		writeIncident(t, flows, clean)
		out, err := run(t, "--log-level", "error", "rules", "test", rules, "--ndjson", flows, "--delay", "2s")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var got []string
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 3 && (f[1] == "firing" || f[1] == "resolved") {
				got = append(got, f[0][11:19]+" "+f[1]+" "+f[2])
			}
		}
		// A snapshot's time is the end of its second. The line is at 95 %
		// in the second [30 s, 31 s): true at 31, held for 3 s, fired at 34;
		// the first second back at 20 % ends at 71. Retransmissions are
		// counted in the second the flow record ends in ([41, 42) for the
		// first burst record), one later than bytes, which are spread.
		want := []string{
			"10:00:34 firing line_saturated", "10:00:45 firing retransmission_burst",
			"10:01:02 resolved retransmission_burst", "10:01:11 resolved line_saturated"}
		if clean {
			want = nil
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("clean=%v: got\n%s\nwant\n%s\n(output:\n%s)", clean, strings.Join(got, "\n"), strings.Join(want, "\n"), out)
		}
		if !strings.Contains(out, "240 flows") {
			t.Errorf("clean=%v: %s", clean, out)
		}
	}
}

// TestRulesCheck: each problem on its own line with its line number; exit 1.
func TestRulesCheck(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("rules:\n  - name: a\n    value: bytes_per_second\n    project: payments\n    above: 1\n  - name: b\n    value: rtt_p95\n    vm: x\n    above: 1\n"), 0o644)
	nets := filepath.Join(dir, "networks.yaml")
	os.WriteFile(nets, []byte("10.2.0.0/16: {name: dc, project: billing}\n"), 0o644)
	out, err := run(t, "rules", "check", bad, "--networks", nets)
	if err == nil {
		t.Fatalf("accepted:\n%s", out)
	}
	want := []string{bad + `: line 6: rule "b": unknown value "rtt_p95"`}
	if !strings.HasPrefix(out, want[0]) || strings.Count(out, "\n") != 1 {
		t.Errorf("output:\n%s", out)
	}
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("rules:\n  - name: a\n    value: bytes_per_second\n    project: payments\n    above: 1\n"), 0o644)
	out, err = run(t, "rules", "check", good, "--networks", nets)
	if err == nil || out != good+`: line 2: rule "a": unknown project "payments" (not in the networks file or the vCenter inventory)`+"\n" {
		t.Errorf("unknown project: %v\n%s", err, out)
	}
}

// TestRulesTestPcap: the capture of TestAlertsEndToEnd (five incidents as
// IPFIX from the exporter's encoder; regenerate with that test's e2ePcap)
// through `rules test --pcap`: each incident's alert fires within 10 s of
// its start and resolves after its end, nothing else fires.
func TestRulesTestPcap(t *testing.T) {
	td := filepath.Join("..", "..", "collector", "alert", "testdata")
	out, err := run(t, "--log-level", "error", "rules", "test", filepath.Join(td, "incidents-rules.yaml"),
		"--pcap", filepath.Join(td, "incidents.pcap"), "--networks", filepath.Join(td, "incidents-networks.yaml"),
		"--interface-names", filepath.Join(td, "incidents-interfaces.yaml"))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	incidents := map[string][2]int{ // rule: start, end (s)
		"line_saturated": {30, 70}, "retransmission_burst": {90, 110}, "new_external_peer": {130, 150},
		"port_scan": {160, 170}, "traffic_drop": {190, 215}}
	seen := map[string]int{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 3 || (f[1] != "firing" && f[1] != "resolved") {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, f[0])
		if err != nil {
			t.Fatal(err)
		}
		inc, ok := incidents[f[2]]
		if !ok {
			t.Errorf("unexpected alert: %s", l)
			continue
		}
		s := at.Sub(t0).Seconds()
		if f[1] == "firing" && (s < float64(inc[0]) || s > float64(inc[0]+10)) {
			t.Errorf("%s fired at %.1f s, incident began at %d s", f[2], s, inc[0])
		}
		if f[1] == "resolved" && s <= float64(inc[1]) {
			t.Errorf("%s resolved at %.1f s, before the incident ended at %d s", f[2], s, inc[1])
		}
		seen[f[1]+" "+f[2]]++
	}
	if len(seen) != 10 {
		t.Errorf("saw %v, want each of the five rules fire and resolve once\n%s", seen, out)
	}
}

// TestReplayDeliversEveryAlert: `collector run --pcap` on the five
// incidents of incidents.pcap hands all ten alert changes to the webhook
// (each signature verified as docs/alerting.md says a receiver does:
// HMAC-SHA256 of the body with the secret file's content, trimmed) and to
// syslog over TCP before it exits. The replay queued them within
// milliseconds and the sinks stopped at once: with a receiver taking 50 ms
// a request, all but the first were counted as dropped at stop.
func TestReplayDeliversEveryAlert(t *testing.T) {
	td := filepath.Join("..", "..", "collector", "alert", "testdata")
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "hook.secret")
	os.WriteFile(secretFile, []byte("s3cret\n"), 0o600)
	var mu sync.Mutex
	hook := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond) // a receiver across a WAN
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte("s3cret"))
		mac.Write(body)
		if r.Header.Get("X-Spanflow-Signature") != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
			t.Errorf("bad signature %q", r.Header.Get("X-Spanflow-Signature"))
		}
		var m struct {
			Status string `json:"status"`
			Alert  struct {
				Rule string `json:"rule"`
			} `json:"alert"`
		}
		json.Unmarshal(body, &m)
		mu.Lock()
		hook[m.Status+" "+m.Alert.Rule]++
		mu.Unlock()
	}))
	defer srv.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	syslog := map[string]int{}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				rd := bufio.NewReader(c)
				for {
					var n int // RFC 6587 octet counting: "LEN SP MSG"
					if _, err := fmt.Fscanf(rd, "%d ", &n); err != nil {
						return
					}
					msg := make([]byte, n)
					if _, err := io.ReadFull(rd, msg); err != nil {
						return
					}
					// <PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD ... rule="R" ...
					f := strings.Fields(string(msg))
					rule := ""
					for _, p := range f {
						if r, ok := strings.CutPrefix(p, `rule="`); ok {
							rule = strings.TrimSuffix(r, `"`)
						}
					}
					mu.Lock()
					syslog[f[5]+" "+rule]++
					mu.Unlock()
				}
			}()
		}
	}()
	out, err := run(t, "--log-level", "error", "collector", "run", "--metrics-listen", "", "--output", "file:"+filepath.Join(dir, "flows.ndjson"),
		"--pcap", filepath.Join(td, "incidents.pcap"), "--rules", filepath.Join(td, "incidents-rules.yaml"),
		"--networks", filepath.Join(td, "incidents-networks.yaml"), "--interface-names", filepath.Join(td, "incidents-interfaces.yaml"),
		"--alert-webhook-url", srv.URL+"/hook", "--alert-webhook-secret-file", secretFile, "--alert-syslog", "tcp://"+l.Addr().String())
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	time.Sleep(200 * time.Millisecond) // the syslog receiver reads what was written
	mu.Lock()
	defer mu.Unlock()
	for _, got := range []map[string]int{hook, syslog} {
		for _, rule := range []string{"line_saturated", "retransmission_burst", "new_external_peer", "port_scan", "traffic_drop"} {
			for _, status := range []string{"firing", "resolved"} {
				if got[status+" "+rule] != 1 {
					t.Errorf("%s %s delivered %d times, want once (webhook %v, syslog %v)", status, rule, got[status+" "+rule], hook, syslog)
				}
			}
		}
	}
}

// TestRulesTestDelayError: a --delay out of range is refused in the
// words of this command's flag, not the collector's rollup-delay.
func TestRulesTestDelayError(t *testing.T) {
	dir := t.TempDir()
	rules, flows := filepath.Join(dir, "rules.yaml"), filepath.Join(dir, "flows.ndjson")
	os.WriteFile(rules, []byte(incidentRules), 0o644)
	os.WriteFile(flows, nil, 0o644)
	_, err := run(t, "rules", "test", rules, "--ndjson", flows, "--delay", "-1s")
	if err == nil || !strings.HasPrefix(err.Error(), "--delay: must be between 0 and 10m") {
		t.Errorf("error %v, want it to name --delay", err)
	}
}

// TestRulesTestNewestFirst: flow documents newest first, as Kibana and
// Elasticsearch export them, cannot be rolled up in event time; rules
// test says how many were not, instead of only "0 alerts fired". Of the
// 240 documents of writeIncident reversed, with --delay 2s, the first
// (ending at 120 s) opens the seconds from 118 s: the 117 seconds before
// hold 234 documents.
func TestRulesTestNewestFirst(t *testing.T) {
	dir := t.TempDir()
	rules, flows := filepath.Join(dir, "rules.yaml"), filepath.Join(dir, "flows.ndjson")
	os.WriteFile(rules, []byte(incidentRules), 0o644)
	writeIncident(t, flows, false)
	b, _ := os.ReadFile(flows)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	slices.Reverse(lines)
	os.WriteFile(flows, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	out, err := run(t, "--log-level", "error", "rules", "test", rules, "--ndjson", flows, "--delay", "2s")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "240 flows, 0 alerts fired") || !strings.Contains(out, "\n234 flows ended before the seconds still open and were not rolled up") {
		t.Errorf("output:\n%s", out)
	}
}

// TestRulesTestBaselineWindow: a line at 1.25 MB/s for 60 s that falls to
// 5 % for 30 s. With the collector's --rollup-baseline-window 20s its
// baseline is 1.25 MB/s × (1 − e^−3) = 1.19 MB/s when it falls, the ratio
// 0.05 / 0.95 < 0.2: the drop fires, and rules test must judge it so when
// given the same window. With the default 5 m the baseline has learnt
// 1.25 MB/s × (1 − e^−0.2) = 227 kB/s, the ratio is 0.28: no drop.
func TestRulesTestBaselineWindow(t *testing.T) {
	dir := t.TempDir()
	rules, flows := filepath.Join(dir, "rules.yaml"), filepath.Join(dir, "flows.ndjson")
	os.WriteFile(rules, []byte("detectors:\n  drop: {enabled: true, ratio: 0.2, clear: 0.5, min_baseline: 125000, for: 5s}\n"), 0o644)
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	var b []byte
	var enc flow.Encoder
	for s := 1; s <= 100; s++ {
		bytes := uint64(1250000)
		if s > 60 && s <= 90 {
			bytes /= 20
		}
		end := t0.Add(time.Duration(s) * time.Second)
		r := flow.Record{ObserverIP: netip.MustParseAddr("10.1.0.3"), Received: end, Start: end.Add(-time.Second), End: end,
			SrcAddr: netip.MustParseAddr("10.2.0.10"), DstAddr: netip.MustParseAddr("10.3.0.10"), SrcPort: 40000, DstPort: 5201,
			Proto: 17, Bytes: bytes, Packets: 1000, InIfName: "vmnic0"}
		b = append(enc.AppendDocument(b, &r), '\n')
	}
	os.WriteFile(flows, b, 0o644)
	for _, tc := range []struct {
		window string
		fires  bool
	}{{"20s", true}, {"5m", false}} {
		out, err := run(t, "--log-level", "error", "rules", "test", rules, "--ndjson", flows, "--delay", "2s", "--rollup-baseline-window", tc.window)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if fired := strings.Contains(out, "firing   traffic_drop line=10.1.0.3 vmnic0"); fired != tc.fires {
			t.Errorf("baseline window %s: drop fired %v, want %v\n%s", tc.window, fired, tc.fires, out)
		}
	}
}
