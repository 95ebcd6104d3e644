package alert

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spanflow/spanflow/exporter/ring"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

// probeServer is a probe's packet ring query server on an empty ring.
func probeServer(t *testing.T) (dir, url string) {
	dir = t.TempDir()
	s, err := ring.NewServer(dir, ring.ServerConfiguration{Listen: "127.0.0.1:0", Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return dir, "http://" + s.Addr()
}

// waitPins polls a ring's pins until check holds.
func waitPins(t *testing.T, dir string, check func([]ring.Pin) bool) []ring.Pin {
	t.Helper()
	var pins []ring.Pin
	for range 100 {
		pins, _ = ring.Pins(dir)
		if check(pins) {
			return pins
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("pins of %s: %v", dir, pins)
	return nil
}

// TestPinner: the probes are learnt from the flows' packets URLs; a line
// alert pins, on its exporter's probe only, from 5 minutes before it began
// to an hour after while it fires, then to a minute after it resolved; an
// alert of a project pins on every probe; a probe that refuses the token
// is retried, counted, and left without a pin.
func TestPinner(t *testing.T) {
	dirA, urlA := probeServer(t)
	dirB, urlB := probeServer(t)
	probes := NewProbes()
	rec := func(exp, base string) flow.Record {
		return flow.Record{ObserverIP: netip.MustParseAddr(exp),
			Extra: []flow.Extra{{Name: "observation_domain_name", Str: "p", IsStr: true},
				{Name: "spanflow_packets_url", Str: base + "/packets?flow=1%3Ax&from=1&to=2", IsStr: true}}}
	}
	probes.Write([]flow.Record{rec("10.0.0.1", urlA), rec("10.0.0.2", urlB), {ObserverIP: netip.MustParseAddr("10.0.0.3")}})

	dir := t.TempDir()
	token := dir + "/token"
	writeFile(t, token, "s3cret\n")
	m := newMetrics(reporter.NewForTest(nil))
	cfg := DefaultPinConfiguration()
	cfg.TokenFile = token
	cfg.Networks = []string{"127.0.0.0/8"} // the probes' servers, apart from their exporters
	p, err := NewPinner(reporter.NewForTest(nil), m, cfg, probes, 10)
	if err != nil {
		t.Fatal(err)
	}
	p.Backoff = 10 * time.Millisecond
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Stop()

	start := time.Date(2026, 12, 5, 2, 13, 0, 0, time.UTC)
	line := Alert{Rule: "line busy", Scope: "line", Key: "10.0.0.1 vmnic0", Labels: map[string]string{"exporter": "10.0.0.1", "interface": "vmnic0"},
		StartsAt: start, FiredAt: start.Add(10 * time.Second)}
	p.Send(line)
	name := PinName(&line)
	pins := waitPins(t, dirA, func(ps []ring.Pin) bool { return len(ps) == 1 })
	if want := (ring.Pin{From: start.Add(-5 * time.Minute).UnixNano(), To: start.Add(time.Hour).UnixNano(), Name: name}); pins[0] != want {
		t.Errorf("firing: pin %+v, want %+v", pins[0], want)
	}
	line.EndsAt = start.Add(3 * time.Minute)
	p.Send(line)
	waitPins(t, dirA, func(ps []ring.Pin) bool {
		return len(ps) == 1 && ps[0].To == start.Add(4*time.Minute).UnixNano() && ps[0].Name == name
	})

	project := Alert{Rule: "retrans", Scope: "project", Key: "payments", Labels: map[string]string{"project": "payments"}, StartsAt: start}
	p.Send(project)
	waitPins(t, dirB, func(ps []ring.Pin) bool { return len(ps) == 1 && ps[0].Name == PinName(&project) })
	waitPins(t, dirA, func(ps []ring.Pin) bool { return len(ps) == 2 })
	if ps, _ := ring.Pins(dirB); len(ps) != 1 {
		t.Errorf("probe B holds %v: the line alert of A's exporter pinned there too", ps)
	}
	// The probe writes the pin before it answers; the pinner counts it
	// once the answer is in.
	for i := 0; i < 200 && promtest.ToFloat64(m.delivered.WithLabelValues("pin")) < 4; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if got := promtest.ToFloat64(m.delivered.WithLabelValues("pin")); got != 4 {
		t.Errorf("%v pins delivered, want 4", got)
	}

	// A wrong token: five attempts, counted, no pin.
	writeFile(t, token, "guess\n")
	bad, err := NewPinner(reporter.NewForTest(nil), m, cfg, probes, 10)
	if err != nil {
		t.Fatal(err)
	}
	bad.Backoff = time.Millisecond
	bad.Start()
	defer bad.Stop()
	other := Alert{Rule: "other", Scope: "exporter", Key: "10.0.0.2", Labels: map[string]string{"exporter": "10.0.0.2"}, StartsAt: start}
	bad.Send(other)
	for i := 0; i < 200 && promtest.ToFloat64(m.errors.WithLabelValues("pin")) < 5; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if got := promtest.ToFloat64(m.errors.WithLabelValues("pin")); got != 5 {
		t.Errorf("%v failed attempts with a wrong token, want 5", got)
	}
	if ps, _ := ring.Pins(dirB); len(ps) != 1 {
		t.Errorf("probe B holds %v after a refused pin", ps)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestProbesBounded: past maxProbes exporters, the directory forgets the
// least recently seen and keeps the recent ones.
func TestProbesBounded(t *testing.T) {
	p := NewProbes()
	const n = maxProbes + 2500
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	for i := range n {
		base := "https://probe-" + strconv.Itoa(i) + ":9443"
		p.Write([]flow.Record{{ObserverIP: addr(i), Extra: []flow.Extra{
			{Name: "spanflow_packets_url", Str: base + "/packets?flow=1%3Ax&from=1&to=2", IsStr: true}}}})
	}
	if len(p.urls) > maxProbes {
		t.Fatalf("%d probes kept, more than %d", len(p.urls), maxProbes)
	}
	for i := n - maxProbes*9/10; i < n; i++ {
		a := Alert{Labels: map[string]string{"exporter": addr(i).String()}}
		if got := p.For(&a); len(got) != 1 || got[0].Base != "https://probe-"+strconv.Itoa(i)+":9443" {
			t.Fatalf("probe %d, among the last seen, was forgotten: %v", i, got)
		}
	}
}

// TestPinNameLongRule: a rule of 300 characters still names a pin a
// probe's ring takes, and two such rules that differ only at their end
// name two pins.
func TestPinNameLongRule(t *testing.T) {
	a := Alert{Rule: strings.Repeat("r", 300) + "-a", Scope: "line", Key: "uplink"}
	b := Alert{Rule: strings.Repeat("r", 300) + "-b", Scope: "line", Key: "uplink"}
	for _, x := range []*Alert{&a, &b} {
		if err := ring.CheckPinName(PinName(x)); err != nil {
			t.Errorf("rule of %d bytes: %v", len(x.Rule), err)
		}
	}
	if PinName(&a) == PinName(&b) {
		t.Errorf("two rules, one pin name %q", PinName(&a))
	}
}

// TestPinTrust: the probe URLs come from unauthenticated IPFIX. A record
// claiming to be from 192.0.2.66 announced a server of its own, and the
// pinner sent it the probes' token with a project alert's pin. A probe
// is now pinned only at the announcing exporter's own address or in
// alert-pin-networks, and over https off loopback.
func TestPinTrust(t *testing.T) {
	dirA, urlA := probeServer(t)
	dirB, urlB := probeServer(t) // the "attacker": it would keep a pin made with the token
	probes := NewProbes()
	rec := func(exp, base string) flow.Record {
		return flow.Record{ObserverIP: netip.MustParseAddr(exp),
			Extra: []flow.Extra{{Name: "spanflow_packets_url", Str: base + "/packets?flow=1%3Ax&from=1&to=2", IsStr: true}}}
	}
	probes.Write([]flow.Record{rec("127.0.0.1", urlA), rec("192.0.2.66", urlB)})
	token := t.TempDir() + "/token"
	writeFile(t, token, "s3cret\n")
	m := newMetrics(reporter.NewForTest(nil))
	cfg := DefaultPinConfiguration()
	cfg.TokenFile = token
	p, err := NewPinner(reporter.NewForTest(nil), m, cfg, probes, 10)
	if err != nil {
		t.Fatal(err)
	}
	p.Backoff = time.Millisecond
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	start := time.Date(2026, 12, 5, 2, 13, 0, 0, time.UTC)
	project := Alert{Rule: "retrans", Scope: "project", Key: "payments", Labels: map[string]string{"project": "payments"}, StartsAt: start}
	p.Send(project)
	waitPins(t, dirA, func(ps []ring.Pin) bool { return len(ps) == 1 })
	for i := 0; i < 200 && promtest.ToFloat64(m.errors.WithLabelValues("pin")) < 1; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if ps, _ := ring.Pins(dirB); len(ps) != 0 {
		t.Errorf("the server announced by 192.0.2.66 was sent the token: it holds %v", ps)
	}
	if got := promtest.ToFloat64(m.errors.WithLabelValues("pin")); got != 1 {
		t.Errorf("%v refused probes counted, want 1", got)
	}

	resolve := map[string][]netip.Addr{"probe.example": {netip.MustParseAddr("192.0.2.9")}, "elsewhere.example": {netip.MustParseAddr("198.51.100.7")}}
	p.lookup = func(_ context.Context, _, host string) ([]netip.Addr, error) {
		if a, ok := resolve[host]; ok {
			return a, nil
		}
		return nil, errors.New("no such host")
	}
	exp := netip.MustParseAddr("192.0.2.9")
	for _, c := range []struct {
		base     string
		networks []string
		ok       bool
	}{
		{"https://192.0.2.9:9443", nil, true},
		{"https://[::ffff:192.0.2.9]:9443", nil, true},
		{"http://192.0.2.9:9443", nil, false}, // the token in clear text
		{"https://probe.example:9443", nil, true},
		{"https://elsewhere.example:9443", nil, false},
		{"https://elsewhere.example:9443", []string{"198.51.100.0/24"}, true},
		{"https://198.51.100.8:9443", []string{"198.51.100.7"}, false},
		{"https://nowhere.example:9443", []string{"0.0.0.0/0"}, false},
		{"ftp://192.0.2.9", nil, false},
	} {
		p.networks, _ = PinConfiguration{Networks: c.networks}.ParseNetworks()
		if err := p.trusted(context.Background(), Target{c.base, exp}); (err == nil) != c.ok {
			t.Errorf("%s with networks %v: %v, want trusted %v", c.base, c.networks, err, c.ok)
		}
	}
	if _, err := (PinConfiguration{Networks: []string{"10.0.0.0/33"}}).ParseNetworks(); err == nil {
		t.Error("a bad network accepted")
	}
}
