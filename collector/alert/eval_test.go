package alert

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/rollup"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

var t0 = time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)

func lineRow(key string, bps float64) rollup.Row {
	exp, ifn, _ := strings.Cut(key, " ")
	return rollup.Row{Scope: rollup.ScopeLine, Key: key, Labels: map[string]string{"exporter": exp, "interface": ifn},
		Values: rollup.ValuesOf(map[string]float64{rollup.BitsPerSecond: bps, rollup.BytesPerSecond: bps / 8})}
}

type recorder struct{ got []Alert }

func (r *recorder) emit(a Alert) { r.got = append(r.got, a) }

func (r *recorder) summary() []string {
	var out []string
	for _, a := range r.got {
		t := a.FiredAt
		if !a.Firing() {
			t = a.EndsAt
		}
		out = append(out, fmt.Sprintf("%s %s %s @%s", a.Status(), a.Rule, a.Key, t.Sub(t0)))
	}
	return out
}

// TestEvaluatorHysteresis: a line at 95 % for 40 s fires after for: and
// resolves only below clear; a neighbour line and a line outside the
// selector never fire.
func TestEvaluatorHysteresis(t *testing.T) {
	f, err := LoadRules("testdata/classic.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	e := NewEvaluator(f, "http://kibana:5601", "spanflow-flows", rec.emit)
	for s := 0; s < 80; s++ {
		bps := 2e9
		switch {
		case s >= 10 && s < 50:
			bps = 9.5e9 // 95 %
		case s >= 50 && s < 53:
			bps = 8.5e9 // between clear and threshold: still firing
		}
		snap := &rollup.Snapshot{Time: t0.Add(time.Duration(s) * time.Second), Rows: []rollup.Row{
			lineRow("10.1.0.3 vmnic0", bps), lineRow("10.1.0.4 vmnic0", 3e9), lineRow("10.1.0.9 vmnic0", 9.9e9)}}
		e.Rollup(snap)
	}
	want := []string{"firing line_saturated 10.1.0.3 vmnic0 @15s", "resolved line_saturated 10.1.0.3 vmnic0 @53s"}
	if got := rec.summary(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("alerts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	a := rec.got[0]
	if a.Labels["line"] != "esx-a03 vmnic0" || a.Labels["team"] != "network" || a.Severity != "critical" ||
		a.Annotations["summary"] != "esx-a03 vmnic0 at 95.0 % of its capacity" || !a.StartsAt.Equal(t0.Add(10*time.Second)) {
		t.Errorf("alert %+v", a)
	}
	if !strings.Contains(a.DiscoverURL, "observer.ip") || !strings.HasPrefix(a.DiscoverURL, "http://kibana:5601/app/discover#/?_g=") {
		t.Errorf("discover %s", a.DiscoverURL)
	}
}

// TestEvaluatorVanishedRate: a below rule fires when the row disappears
// (its rate is zero), the drop detector on its baseline.
func TestEvaluatorDrop(t *testing.T) {
	f, err := LoadRules("testdata/classic.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	e := NewEvaluator(f, "", "", rec.emit)
	for s := 0; s < 60; s++ {
		bytes := 1e6
		if s >= 20 && s < 40 {
			bytes = 1e4
		}
		row := rollup.Row{Scope: rollup.ScopeLine, Key: "10.1.0.5 vmnic1", Labels: map[string]string{},
			Values: rollup.ValuesOf(map[string]float64{rollup.BytesPerSecond: bytes, rollup.BytesPerSecondBaseline: 1e6})}
		e.Rollup(&rollup.Snapshot{Time: t0.Add(time.Duration(s) * time.Second), Rows: []rollup.Row{row}})
	}
	want := []string{"firing traffic_drop 10.1.0.5 vmnic1 @30s", "resolved traffic_drop 10.1.0.5 vmnic1 @40s"}
	if got := rec.summary(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("alerts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func rec(t time.Time, src, dst string, sport, dport uint16, flags uint16) flow.Record {
	return flow.Record{Received: t, End: t, SrcAddr: netip.MustParseAddr(src), DstAddr: netip.MustParseAddr(dst),
		SrcPort: sport, DstPort: dport, Proto: 6, TCPFlags: flags, Bytes: 100, Packets: 1}
}

// TestPortScan: 150 ports in 15 s fire once, when the 101st is reached;
// the alert resolves after a quiet window (the sliding one from 15 s to
// 75 s, the first to begin after it fired); a server answering many
// clients does not fire.
func TestPortScan(t *testing.T) {
	d := DefaultDetectors()
	d.PortScan.Enabled = true
	r := &recorder{}
	fd := NewFlowDetectors(d, "", "", r.emit)
	var recs []flow.Record
	for i := 0; i < 150; i++ {
		ts := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		recs = append(recs, rec(ts, "192.0.2.66", "10.2.0.10", 40000, uint16(1+i), tcpSYN))
		// The web server's answers: 150 distinct client ports, SYN-ACK.
		recs = append(recs, rec(ts, "10.2.0.20", "10.2.0.30", 443, uint16(30000+i), tcpSYN|tcpACK))
	}
	fd.Write(recs)
	fd.Advance(t0.Add(3 * time.Minute))
	want := []string{"firing port_scan 192.0.2.66 @10s", "resolved port_scan 192.0.2.66 @1m15s"}
	if got := r.summary(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("alerts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestPortScanServerOnHighPort: a database on port 50000 (DB2's) answering
// 200 clients in a minute, whose ephemeral ports (32768-60999) are mostly
// below 50000, is no scan; a SYN scan (SYN then RST from the scanner) of
// 150 ports meanwhile is one, and only it fires. It resolves a window
// after its last new port reached over the limit (37.5 s, in the
// sub-window 30-45 s): at 1m45s.
func TestPortScanServerOnHighPort(t *testing.T) {
	d := DefaultDetectors()
	d.PortScan.Enabled = true
	r := &recorder{}
	fd := NewFlowDetectors(d, "", "", r.emit)
	const synFinPshAck = tcpSYN | tcpACK | 0x01 | 0x08
	var recs []flow.Record
	for i := 0; i < 200; i++ {
		ts := t0.Add(time.Duration(i) * 250 * time.Millisecond)
		client := netip.AddrFrom4([4]byte{10, 0, byte(1 + i/250), byte(1 + i%250)}).String()
		port := uint16(32768 + (i*7919)%28232)
		recs = append(recs, rec(ts, client, "10.0.0.5", port, 50000, synFinPshAck),
			rec(ts, "10.0.0.5", client, 50000, port, synFinPshAck))
		if i < 150 {
			recs = append(recs, rec(ts, "192.0.2.66", "10.2.0.10", 55555, uint16(1+i), tcpSYN|0x04))
		}
	}
	fd.Write(recs)
	fd.Advance(t0.Add(3 * time.Minute))
	want := []string{"firing port_scan 192.0.2.66 @25s", "resolved port_scan 192.0.2.66 @1m45s"}
	if got := r.summary(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("alerts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestPortScanBounded: more sources than max_sources are counted, not kept.
func TestPortScanBounded(t *testing.T) {
	d := DefaultDetectors()
	d.PortScan.Enabled, d.PortScan.MaxSources = true, 100
	fd := NewFlowDetectors(d, "", "", func(Alert) {})
	over := 0
	fd.Overflow = func(string) { over++ }
	var recs []flow.Record
	for i := 0; i < 1000; i++ {
		recs = append(recs, rec(t0, netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}).String(), "10.2.0.10", 50000, 80, tcpSYN))
	}
	fd.Write(recs)
	if fd.scan.tracked() != 100 || over != 900 {
		t.Errorf("%d sources kept, %d counted over", fd.scan.tracked(), over)
	}
}

// TestNewPeer: peers seen while learning are known; a new one afterwards
// fires once and resolves hold after its last flow. IPv4 and IPv6 peers
// are kept apart (IPv4 in slots of their own); 1,000 learnt peers make
// the tables grow, and none of them fires after learning.
func TestNewPeer(t *testing.T) {
	for _, c := range []struct {
		name          string
		peer          func(i int) string
		learnt        int
		newPeer, want string
	}{
		{"ipv4", func(i int) string { return fmt.Sprintf("198.51.%d.%d", 100+i/250, 1+i%250) }, 2, "203.0.113.9", "203.0.113.9"},
		{"ipv6", func(i int) string { return fmt.Sprintf("2001:db8::%x", i+1) }, 2, "2001:db8:9::9", "2001:db8:9::9"},
		{"ipv4-grown", func(i int) string { return fmt.Sprintf("198.51.%d.%d", 100+i/250, 1+i%250) }, 1000, "203.0.113.9", "203.0.113.9"},
		{"ipv6-grown", func(i int) string { return fmt.Sprintf("2001:db8::%x", i+1) }, 1000, "198.51.100.1", "198.51.100.1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := DefaultDetectors()
			d.NewPeer.Enabled, d.NewPeer.Learning, d.NewPeer.Hold = true, time.Minute, 30*time.Second
			r := &recorder{}
			fd := NewFlowDetectors(d, "", "", r.emit)
			pay := flow.Endpoint{VSphere: &flow.VSphere{VMName: "pay-web-1", Project: "payments"}}
			mk := func(ts time.Time, peer string) flow.Record {
				x := rec(ts, "10.2.0.10", peer, 40000, 443, tcpSYN|tcpACK)
				x.Src, x.Locality = pay, "external"
				return x
			}
			var recs []flow.Record
			for s := 0; s < 180; s += 5 {
				ts := t0.Add(time.Duration(s) * time.Second)
				recs = append(recs, mk(ts, c.peer(0)))
				if s >= 30 { // learnt (before 60 s)
					for i := 1; i < c.learnt; i++ {
						recs = append(recs, mk(ts, c.peer(i)))
					}
				}
				if s >= 90 && s < 120 {
					recs = append(recs, mk(ts, c.newPeer)) // new
				}
			}
			fd.Write(recs)
			want := []string{"firing new_external_peer payments " + c.want + " @1m30s", "resolved new_external_peer payments " + c.want + " @2m25s"}
			if got := r.summary(); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("alerts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if fd.npeers != c.learnt+1 {
				t.Fatalf("%d peers known, want %d", fd.npeers, c.learnt+1)
			}
		})
	}
}

// TestHalfOpenFlows: SYN-only flows towards one address beyond the limit;
// it resolves at 12.5 s, after the sliding window 2.5-12.5 s that holds
// 50 of them (the limit).
func TestHalfOpenFlows(t *testing.T) {
	d := DefaultDetectors()
	d.HalfOpen.Enabled, d.HalfOpen.SYNsPerSecond, d.HalfOpen.Flows = true, 0, 50
	r := &recorder{}
	fd := NewFlowDetectors(d, "", "", r.emit)
	var recs []flow.Record
	for i := 0; i < 100; i++ {
		recs = append(recs, rec(t0.Add(time.Duration(i)*50*time.Millisecond), fmt.Sprintf("198.51.100.%d", i), "10.2.0.10", uint16(40000+i), 443, tcpSYN))
	}
	fd.Write(recs)
	fd.Advance(t0.Add(time.Minute))
	want := []string{"firing half_open_storm_flows 10.2.0.10 @2.5s", "resolved half_open_storm_flows 10.2.0.10 @12.5s"}
	if got := r.summary(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("alerts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestVMRulesByProject: a VM-scope rule narrowed to a project (`vm:` and
// `project:` selectors, the issue's `project: payments`, `vm: pay-db-*`)
// judges the VMs of that project, and only them, from the rollup engine's
// own rows: a VM's row carries its project.
func TestVMRulesByProject(t *testing.T) {
	f, err := ParseRules([]byte(`rules:
  - name: slow_payment_db
    vm: "*-db-*"
    project: payments
    value: rtt_p95_ms
    above: 50
    for: 2s
`))
	if err != nil {
		t.Fatal(err)
	}
	if f.Rules[0].Scope != rollup.ScopeVM {
		t.Fatalf("scope %q, want vm", f.Rules[0].Scope)
	}
	cfg := rollup.DefaultConfiguration()
	cfg.EventTime, cfg.Delay = true, 0
	e, err := rollup.New(reporter.NewForTest(nil), cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	e.Subscribe(NewEvaluator(f, "", "", r.emit))
	vms := map[string]*flow.VSphere{
		"pay-db-1":    {VMName: "pay-db-1", Project: "payments"},
		"shop-db-1":   {VMName: "shop-db-1", Project: "shop"},
		"pay-front-1": {VMName: "pay-front-1", Project: "payments"},
	}
	for s := 0; s < 20; s++ {
		ts := t0.Add(time.Duration(s)*time.Second + 500*time.Millisecond)
		var recs []flow.Record
		for _, name := range []string{"pay-db-1", "shop-db-1", "pay-front-1"} {
			x := rec(ts, "10.9.0.1", "10.2.0.10", 40000, 5432, tcpSYN|tcpACK)
			x.Dst.VSphere = vms[name]
			x.TCP.RTTServer = 80 * time.Millisecond // every VM slow
			recs = append(recs, x)
		}
		if err := e.Write(recs); err != nil {
			t.Fatal(err)
		}
	}
	e.Tick(t0.Add(21 * time.Second))
	var keys []string
	for _, a := range r.got {
		keys = append(keys, a.Key)
	}
	if len(r.got) != 1 || r.got[0].Key != "pay-db-1" || r.got[0].Labels["project"] != "payments" {
		t.Fatalf("alerts for %v (%+v), want one for pay-db-1 of project payments", keys, r.got)
	}
}

// TestRuleSeesRelabelledRow: the evaluator remembers which rows a rule's
// selectors matched; a VM moved into the rule's project is matched again
// (its row has new labels) and fires, one moved out stops being judged.
func TestRuleSeesRelabelledRow(t *testing.T) {
	f, err := ParseRules([]byte("rules:\n  - {name: slow, vm: \"*\", project: payments, value: rtt_p95_ms, above: 50, for: 2s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	ev := NewEvaluator(f, "", "", r.emit)
	labels := map[string]string{"vm": "db-1", "project": "shop"}
	for s := 0; s < 20; s++ {
		if s == 10 {
			labels = map[string]string{"vm": "db-1", "project": "payments"} // moved
		}
		row := rollup.Row{Scope: rollup.ScopeVM, Key: "db-1", Labels: labels,
			Values: rollup.ValuesOf(map[string]float64{rollup.RTTp95: 80})}
		ev.Rollup(&rollup.Snapshot{Time: t0.Add(time.Duration(s) * time.Second), Rows: []rollup.Row{row}})
	}
	want := []string{"firing slow db-1 @12s"}
	if got := r.summary(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("alerts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestMatchingFollowsLayout: the evaluator keeps, per rule, the rows its
// selectors match while the engine's snapshot keeps its layout. Through a
// real engine, a VM relabelled into the rule's project, one that leaves
// (idle, moving every VM row after it) and one that joins must each change
// what the rule judges: the moved VM and the new one fire within a few
// seconds of qualifying, and nothing else fires.
func TestMatchingFollowsLayout(t *testing.T) {
	f, err := ParseRules([]byte("rules:\n  - {name: slow, vm: \"*\", project: payments, value: rtt_p95_ms, above: 50, for: 2s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := rollup.DefaultConfiguration()
	cfg.EventTime, cfg.Delay, cfg.IdleTimeout = true, 0, 3*time.Second
	e, err := rollup.New(reporter.NewForTest(nil), cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	e.Subscribe(NewEvaluator(f, "", "", r.emit))
	shopA := &flow.VSphere{VMName: "a", Project: "shop"}
	payA := &flow.VSphere{VMName: "a", Project: "payments"}
	payB := &flow.VSphere{VMName: "b", Project: "payments"}
	gone := &flow.VSphere{VMName: "0-gone", Project: "payments"} // sorts first among the VMs
	for s := 0; s < 25; s++ {
		ts := t0.Add(time.Duration(s)*time.Second + 500*time.Millisecond)
		var recs []flow.Record
		add := func(vs *flow.VSphere, rtt time.Duration) {
			x := rec(ts, "10.9.0.1", "10.2.0.10", 40000, 5432, tcpSYN|tcpACK)
			x.Dst.VSphere = vs
			x.TCP.RTTServer = rtt
			recs = append(recs, x)
		}
		if s < 4 {
			add(gone, time.Millisecond) // fast: matched, never fires
		}
		if s < 2 {
			add(shopA, 80*time.Millisecond)
		} else {
			add(payA, 80*time.Millisecond) // moved into payments at 2 s
		}
		if s >= 15 {
			add(payB, 80*time.Millisecond)
		}
		if err := e.Write(recs); err != nil {
			t.Fatal(err)
		}
	}
	e.Tick(t0.Add(26 * time.Second))
	fired := map[string]time.Duration{}
	for _, a := range r.got {
		if a.Firing() {
			fired[a.Key] = a.FiredAt.Sub(t0)
		}
	}
	if len(fired) != 2 || fired["a"] < 2*time.Second || fired["a"] > 6*time.Second ||
		fired["b"] < 15*time.Second || fired["b"] > 19*time.Second {
		t.Fatalf("fired %v, want a within 4 s of its move at 2 s and b within 4 s of its start at 15 s (%v)", fired, r.summary())
	}
}

// TestDetectorsEmitOutsideTheirLock: while the sinks take an alert (here:
// an emit that waits), the detectors keep reading other workers' flows,
// and the alerts of those flows leave after it, in order.
func TestDetectorsEmitOutsideTheirLock(t *testing.T) {
	d := DefaultDetectors()
	d.NewPeer.Enabled, d.NewPeer.Learning, d.NewPeer.Hold = true, 0, 30*time.Second
	release, entered := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var got []string
	fd := NewFlowDetectors(d, "http://kibana:5601", "flows", func(a Alert) {
		if a.Key == "payments 203.0.113.1" {
			close(entered)
			<-release // the first alert's sinks are slow
		}
		if a.DiscoverURL == "" {
			t.Errorf("alert %s without its Discover link", a.Key)
		}
		mu.Lock()
		got = append(got, a.Key)
		mu.Unlock()
	})
	pay := flow.Endpoint{VSphere: &flow.VSphere{VMName: "pay-web-1", Project: "payments"}}
	mk := func(peer string) flow.Record {
		x := rec(t0, "10.2.0.10", peer, 40000, 443, tcpSYN|tcpACK)
		x.Src, x.Locality = pay, "external"
		return x
	}
	first := make(chan struct{})
	go func() {
		defer close(first)
		fd.Write([]flow.Record{mk("203.0.113.1")})
	}()
	<-entered // the first Write is emitting
	done := make(chan struct{})
	go func() {
		defer close(done)
		fd.Write([]flow.Record{mk("203.0.113.1")}) // known now: no alert
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatal("a Write without alerts waited for another Write's sinks")
	}
	second := make(chan struct{})
	go func() {
		defer close(second)
		fd.Write([]flow.Record{mk("203.0.113.2")}) // fires: waits for the first to leave
	}()
	time.Sleep(100 * time.Millisecond)
	close(release)
	<-first
	<-second
	if strings.Join(got, ",") != "payments 203.0.113.1,payments 203.0.113.2" {
		t.Errorf("alerts emitted %v, want 203.0.113.1 then 203.0.113.2", got)
	}
}

// TestDiscoverURLQuery: the Discover link's state, read back as a browser
// hands Kibana its fragment (a query string: & splits, + is a space, %XX
// decoded), holds the alert's KQL query and time range whatever the
// names hold. PathEscape left & + = alone: a VM named "R&D+1 = x" cut the
// query at "R" and made "D 1 " of the rest.
func TestDiscoverURLQuery(t *testing.T) {
	for _, name := range []string{"R&D+1 = x", "50% #1 ?", `it's "quoted" \ !`, "plain"} {
		a := Alert{Scope: "vm", Key: name, StartsAt: t0, EndsAt: t0.Add(90 * time.Second)}
		link := DiscoverURL("https://kibana.example:5601/", "spanflow-flows", &a)
		u, err := url.Parse(link)
		if err != nil {
			t.Fatalf("%q: %v", link, err)
		}
		frag := u.EscapedFragment()
		_, rawQuery, ok := strings.Cut(frag, "?")
		if u.Path != "/app/discover" || !ok {
			t.Fatalf("%q: path %q, fragment %q", link, u.Path, frag)
		}
		q, err := url.ParseQuery(rawQuery)
		if err != nil || len(q) != 2 {
			t.Fatalf("%q: query %v, %v", link, q, err)
		}
		// Rison strings: ' quoted, ! escapes ! and '.
		rison := func(s string) string {
			return "'" + strings.NewReplacer("!", "!!", "'", "!'").Replace(s) + "'"
		}
		kql := `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(name) + `"`
		wantA := "(dataSource:(dataViewId:'spanflow-flows',type:dataView),query:(language:kuery,query:" +
			rison("source.vsphere.vm.name:"+kql+" or destination.vsphere.vm.name:"+kql) + "))"
		wantG := "(time:(from:'2026-12-04T09:59:00Z',to:'2026-12-04T10:02:30Z'))"
		if q.Get("_a") != wantA || q.Get("_g") != wantG {
			t.Errorf("%q: Kibana reads\n_a=%s\n_g=%s\nwant\n_a=%s\n_g=%s", name, q.Get("_a"), q.Get("_g"), wantA, wantG)
		}
	}
}

// TestLineKeysAsWritten: the rules file names an IPv6 exporter as a user
// may write it (upper case, a zero group, two spaces); its flows, from
// the rollup engine, are that line's, and its utilisation rule and its
// exporter selector fire. Written so, the line was never found and no
// rule on it fired, while rules check said OK.
func TestLineKeysAsWritten(t *testing.T) {
	f, err := ParseRules([]byte(`lines:
  "2001:DB8:0::3  vmnic0": {capacity: 10Mbit, name: esx-v6 vmnic0}
rules:
  - name: by_name
    value: utilisation
    line: esx-v6 vmnic0
    above: 0.9
  - name: by_key
    value: utilisation
    line: 2001:DB8::3 vmnic0
    above: 0.9
  - name: by_exporter
    value: bits_per_second
    exporter: 2001:0db8::3
    above: 9e6
`))
	if err != nil {
		t.Fatal(err)
	}
	eng, err := rollup.New(reporter.NewForTest(nil), rollup.DefaultConfiguration())
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	eng.Subscribe(NewEvaluator(f, "", "", rec.emit))
	eng.Tick(t0)
	for s := 1; s <= 10; s++ { // 9.6 Mbit/s on a 10 Mbit/s line
		at := t0.Add(time.Duration(s) * time.Second)
		eng.Write([]flow.Record{{ObserverIP: netip.MustParseAddr("2001:db8::3"), InIfName: "vmnic0", InIf: 1,
			Received: at, Start: at.Add(-time.Second), End: at, SrcAddr: netip.MustParseAddr("2001:db8::10"),
			DstAddr: netip.MustParseAddr("2001:db8::20"), Proto: 17, SrcPort: 5000, DstPort: 5001, Bytes: 1.2e6, Packets: 1000}})
		eng.Tick(at)
	}
	fired := map[string]bool{}
	for _, a := range rec.got {
		fired[a.Rule] = a.Firing() && (a.Key == "2001:db8::3 vmnic0" || a.Rule == "by_exporter" && a.Key == "2001:db8::3")
	}
	for _, rule := range []string{"by_name", "by_key", "by_exporter"} {
		if !fired[rule] {
			t.Errorf("%s did not fire on the line (alerts %v)", rule, rec.summary())
		}
	}
}

// TestLineQueryFindsFlows: the Discover query of a line alert matches the
// line's flow documents as the NDJSON output writes them, whether the
// interface has a name or only an ifIndex (the rollups key such a line
// "EXPORTER INDEX"). The query asked for interface.name:"3", which no
// document of an unnamed interface holds: its link found no flows.
func TestLineQueryFindsFlows(t *testing.T) {
	matches := kqlMatches
	for _, named := range []bool{true, false} {
		r := flow.Record{ObserverIP: netip.MustParseAddr("10.1.0.3"), InIf: 3, OutIf: 9, End: t0, Start: t0,
			SrcAddr: netip.MustParseAddr("10.2.0.1"), DstAddr: netip.MustParseAddr("10.3.0.1"), Proto: 17, Bytes: 100, Packets: 1}
		key := "10.1.0.3 3"
		if named {
			r.InIfName, key = "vmnic0", "10.1.0.3 vmnic0"
		}
		var enc flow.Encoder
		var doc map[string]any
		if err := json.Unmarshal(enc.AppendDocument(nil, &r), &doc); err != nil {
			t.Fatal(err)
		}
		if q := Query("line", key, nil); !matches(q, doc) {
			t.Errorf("line %q: query %s does not match its flow %v", key, q, doc["observer"])
		}
		if q := Query("line", "10.1.0.3 4", nil); matches(q, doc) {
			t.Errorf("line 10.1.0.3 4: query %s matches the flow of interface 3", q)
		}
	}
}

// kqlMatches evaluates a query of Query's forms, "F:V", "F:V and (F:V or
// F:V ...)", on a flow document's flattened fields.
func kqlMatches(q string, doc map[string]any) bool {
	flat := map[string]string{}
	var walk func(string, map[string]any)
	walk = func(p string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(p+k+".", sub)
			} else {
				flat[p+k] = fmt.Sprint(v)
			}
		}
	}
	walk("", doc)
	term := func(s string) bool {
		f, v, _ := strings.Cut(strings.TrimSpace(s), ":")
		got, ok := flat[f]
		return ok && got == strings.Trim(v, `"`)
	}
	first, rest, ok := strings.Cut(q, " and (")
	if !term(first) {
		return false
	}
	if !ok {
		return true
	}
	for _, s := range strings.Split(strings.TrimSuffix(rest, ")"), " or ") {
		if term(s) {
			return true
		}
	}
	return false
}

// TestServiceQueryFindsFlows: the Discover query of each service row the
// rollups make matches every flow document counted in it: the answers
// from the server's port (source.port 443) as well as the requests, and
// OSPF, whose row was "89/0" while its documents say "ospf".
func TestServiceQueryFindsFlows(t *testing.T) {
	a := netip.MustParseAddr
	recs := []flow.Record{
		{SrcAddr: a("10.2.0.1"), DstAddr: a("10.3.0.1"), SrcPort: 40000, DstPort: 443, Proto: 6},
		{SrcAddr: a("10.3.0.1"), DstAddr: a("10.2.0.1"), SrcPort: 443, DstPort: 40000, Proto: 6},
		{SrcAddr: a("10.2.0.1"), DstAddr: a("224.0.0.5"), Proto: 89},
		{SrcAddr: a("10.2.0.1"), DstAddr: a("10.3.0.1"), Proto: 1},
	}
	for i, r := range recs {
		eng, err := rollup.New(reporter.NewForTest(nil), rollup.DefaultConfiguration())
		if err != nil {
			t.Fatal(err)
		}
		r.ObserverIP, r.InIfName, r.Received, r.Start, r.End = a("10.1.0.3"), "vmnic0", t0, t0.Add(-time.Second), t0
		r.Bytes, r.Packets = 100, 1
		eng.Tick(t0)
		eng.Write([]flow.Record{r})
		s := eng.Tick(t0.Add(10 * time.Second))
		var enc flow.Encoder
		var doc map[string]any
		if err := json.Unmarshal(enc.AppendDocument(nil, &r), &doc); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, row := range s.Rows {
			if row.Scope != rollup.ScopeService {
				continue
			}
			n++
			if q := Query("service", row.Key, row.Labels); !kqlMatches(q, doc) {
				t.Errorf("flow %d, service %s: query %s does not match it (%v %v)", i, row.Key, q, doc["network"], doc["source"])
			}
		}
		if n != 1 {
			t.Errorf("flow %d: %d service rows", i, n)
		}
	}
}

// TestPortScanAcrossWindows: a scan of 150 ports in 30 s, 75 on each side
// of a minute's boundary, fires once (tumbling minutes counted 75 + 75
// and missed it); the same scan split into two halves of 75 ports 100 s
// apart (never more than 75 within a minute and a quarter), servers on
// high ports answering clients, and clients reaching 20 ports each, fire
// nothing. IPv4 and IPv6 scanners.
func TestPortScanAcrossWindows(t *testing.T) {
	for _, c := range []struct {
		name, scanner string
		gap           time.Duration // between the halves
		want          []string
	}{
		{"straddling", "192.0.2.66", 0, []string{"firing port_scan 192.0.2.66 @1m5s", "resolved port_scan 192.0.2.66 @2m15s"}},
		{"straddling-ipv6", "2001:db8::66", 0, []string{"firing port_scan 2001:db8::66 @1m5s", "resolved port_scan 2001:db8::66 @2m15s"}},
		{"halves-apart", "192.0.2.66", 100 * time.Second, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := DefaultDetectors()
			d.PortScan.Enabled = true
			r := &recorder{}
			fd := NewFlowDetectors(d, "", "", r.emit)
			dst := "10.2.0.10"
			if strings.Contains(c.scanner, ":") {
				dst = "2001:db8::10"
			}
			var recs []flow.Record
			for i := range 600 { // 0.2 s apart: 0-120 s
				ts := t0.Add(time.Duration(i) * 200 * time.Millisecond)
				client := fmt.Sprintf("10.0.%d.%d", 1+i/200, 1+i%200)
				port := uint16(32768 + (i*7919)%28232)
				// A database on a high port and its clients, both ways.
				recs = append(recs, rec(ts, client, "10.0.0.5", port, 50000, tcpSYN|tcpACK|0x18),
					rec(ts, "10.0.0.5", client, 50000, port, tcpSYN|tcpACK|0x18))
				// A client reaching 20 services of a host, again and again.
				recs = append(recs, rec(ts, "10.0.0.7", "10.0.0.8", 40000+uint16(i), uint16(8000+i%20), tcpSYN))
			}
			// The scan: 75 ports from 45 s to 60 s, 75 from 60 s (+ gap) on.
			for i := range 150 {
				off := 45*time.Second + time.Duration(i)*200*time.Millisecond
				if i >= 75 {
					off += c.gap
				}
				recs = append(recs, rec(t0.Add(off), c.scanner, dst, 55555, uint16(1+i), tcpSYN))
			}
			slices.SortStableFunc(recs, func(a, b flow.Record) int { return a.End.Compare(b.End) })
			fd.Write(recs)
			fd.Advance(t0.Add(5 * time.Minute))
			if got := r.summary(); strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Fatalf("alerts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}
