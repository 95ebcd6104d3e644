package rollup

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

func at(sec float64) time.Time {
	return time.Unix(0, int64(sec*1e9)).UTC()
}

func newTestEngine(t testing.TB, mod func(*Configuration)) *Engine {
	t.Helper()
	cfg := DefaultConfiguration()
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(reporter.NewForTest(nil), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func row(s *Snapshot, scope, key string) *Row {
	for i := range s.Rows {
		if s.Rows[i].Scope == scope && s.Rows[i].Key == key {
			return &s.Rows[i]
		}
	}
	return nil
}

var exp1 = netip.MustParseAddr("10.0.0.1")

func lineRecord(received time.Time, dur time.Duration, bytes uint64) flow.Record {
	return flow.Record{ObserverIP: exp1, Received: received, Start: received.Add(-dur), End: received,
		SrcAddr: netip.MustParseAddr("192.0.2.1"), DstAddr: netip.MustParseAddr("198.51.100.1"),
		Proto: 17, SrcPort: 5000, DstPort: 53, Bytes: bytes, Packets: bytes / 100, InIf: 3, InIfName: "eth0"}
}

// TestSpreading checks the bytes per second of every tick against values
// worked out by hand from the records' spans.
func TestSpreading(t *testing.T) {
	e := newTestEngine(t, nil) // tick 1 s, delay 5 s, ahead 10 s
	e.Tick(at(1000))           // open ticks start at [995, 996)
	recs := []flow.Record{
		// [999.5, 1003.5]: 100 bytes in 999, 200 in 1000, 1001, 1002, 100 in 1003.
		lineRecord(at(1003.5), 4*time.Second, 800),
		// No receive time: its own [1001.25, 1001.75], all in 1001.
		{ObserverIP: exp1, Start: at(1001.25), End: at(1001.75), Proto: 6, SrcPort: 40000, DstPort: 443,
			Bytes: 100, Packets: 1, InIf: 3, InIfName: "eth0"},
		// [986, 996]: only [995, 996) is open, a tenth: 50 bytes in 995;
		// 450 bytes late.
		lineRecord(at(996), 10*time.Second, 500),
		// Entirely before the open ticks: late.
		lineRecord(at(990), time.Second, 1000),
	}
	if err := e.Write(recs); err != nil {
		t.Fatal(err)
	}
	want := map[float64]float64{996: 50, 997: 0, 998: 0, 999: 0, 1000: 100, 1001: 200, 1002: 300, 1003: 200, 1004: 100, 1005: 0}
	for sec := 1001.0; sec <= 1010; sec++ {
		s := e.Tick(at(sec))
		end := float64(s.Time.UnixNano()) / 1e9
		if end != sec-5 {
			t.Fatalf("Tick(%v): snapshot time %v, want %v", sec, end, sec-5)
		}
		r := row(s, ScopeLine, "10.0.0.1 eth0")
		if r == nil {
			t.Fatalf("tick %v: no line row in %+v", sec, s.Rows)
		}
		if got := r.Values.Of(BytesPerSecond); math.Abs(got-want[end]) > 1e-9 {
			t.Errorf("tick ending %v: %v bytes/s, want %v", end, got, want[end])
		}
		if got := r.Values.Of(BitsPerSecond); math.Abs(got-8*want[end]) > 1e-9 {
			t.Errorf("tick ending %v: %v bits/s, want %v", end, got, 8*want[end])
		}
	}
	if e.stats.lateRecords != 1 || math.Abs(e.stats.lateBytes-1450) > 1e-9 {
		t.Errorf("late: %d records, %v bytes; want 1 record, 1450 bytes", e.stats.lateRecords, e.stats.lateBytes)
	}
}

// TestSmoothing checks the moving averages against their closed form for
// a step: after n ticks at rate r from s0, s_n = r + d^n (s0 - r).
func TestSmoothing(t *testing.T) {
	e := newTestEngine(t, func(c *Configuration) { c.Delay = 0 })
	e.Tick(at(100))
	// One tick at 1000 B/s primes the averages; then 20 ticks at 3000 B/s.
	e.Write([]flow.Record{lineRecord(at(100.5), 0, 1000)})
	e.Tick(at(101))
	for i := range 20 {
		e.Write([]flow.Record{lineRecord(at(101.5+float64(i)), 0, 3000)})
		s := e.Tick(at(102 + float64(i)))
		r := row(s, ScopeLine, "10.0.0.1 eth0")
		n := float64(i + 1)
		fast := 3000 + math.Exp(-n/5)*(1000-3000)
		base := 3000 + math.Exp(-n/300)*(1000-3000)
		if got := r.Values.Of(BytesPerSecondSmoothed); math.Abs(got-fast) > 1e-6 {
			t.Errorf("tick %v: smoothed %v, want %v", n, got, fast)
		}
		if got := r.Values.Of(BytesPerSecondBaseline); math.Abs(got-base) > 1e-6 {
			t.Errorf("tick %v: baseline %v, want %v", n, got, base)
		}
	}
}

// TestScopesAndTCP checks which rows a record lands in and the TCP values.
func TestScopesAndTCP(t *testing.T) {
	e := newTestEngine(t, func(c *Configuration) { c.Delay = 0 })
	e.Tick(at(100))
	vm := func(name, project string) flow.Endpoint {
		return flow.Endpoint{VSphere: &flow.VSphere{VMName: name, Project: project}}
	}
	recs := []flow.Record{
		{ObserverIP: exp1, Received: at(100.5), Proto: 6, SrcAddr: netip.MustParseAddr("10.1.0.1"), DstAddr: netip.MustParseAddr("10.2.0.1"),
			SrcPort: 51000, DstPort: 5432, Bytes: 1000, Packets: 100, InIf: 1, OutIf: 2, TCPFlags: 0x1a,
			TCP: flow.TCPPerf{RTTClient: time.Millisecond, RTTServer: 2 * time.Millisecond, Retransmissions: 5, ZeroWindows: 2},
			Src: vm("pay-web-1", "payments"),
			Dst: flow.Endpoint{Network: &flow.NetworkInfo{Project: "databases"}}},
		// An unanswered SYN from the same VM, to a server port below the client's.
		{ObserverIP: exp1, Received: at(100.6), Proto: 6, SrcAddr: netip.MustParseAddr("10.1.0.1"), DstAddr: netip.MustParseAddr("10.2.0.9"),
			SrcPort: 51001, DstPort: 5432, Bytes: 60, Packets: 1, InIf: 1, TCPFlags: 0x02, Src: vm("pay-web-1", "payments")},
		// Not flows: skipped.
		{ObserverIP: exp1, Received: at(100.6), Counters: &flow.IfCounters{}},
	}
	e.Write(recs)
	s := e.Tick(at(101))
	check := func(scope, key, value string, want float64) {
		t.Helper()
		r := row(s, scope, key)
		if r == nil {
			t.Errorf("no row %s %q", scope, key)
			return
		}
		got, ok := r.Values.Get(value)
		if !ok || math.Abs(got-want) > 1e-9 {
			t.Errorf("%s %q %s = %v (present %t), want %v", scope, key, value, got, ok, want)
		}
	}
	check(ScopeLine, "10.0.0.1 1", BytesPerSecond, 1060)
	check(ScopeLine, "10.0.0.1 2", BytesPerSecond, 1000)
	check(ScopeProject, "payments", FlowsPerSecond, 2)
	check(ScopeProject, "databases", BytesPerSecond, 1000)
	check(ScopeVM, "pay-web-1", PacketsPerSecond, 101)
	check(ScopeService, "tcp/5432", UnansweredSYNsPerSecond, 1)
	check(ScopeService, "tcp/5432", HandshakesPerSecond, 1)
	check(ScopeService, "tcp/5432", RetransmissionRatio, 5.0/101)
	check(ScopeService, "tcp/5432", ZeroWindowsPerSecond, 2)
	check(ScopeExporter, "10.0.0.1", FlowsPerSecond, 2)
	r := row(s, ScopeService, "tcp/5432")
	if p50 := r.Values.Of(RTTp50); math.Abs(p50-3)/3 > 0.01 {
		t.Errorf("RTT p50 %v ms, want 3 ms within 1%%", p50)
	}
	if n := len(s.Rows); n != 7 {
		t.Errorf("%d rows, want 7 (2 lines, 2 projects, 1 VM, 1 service, 1 exporter): %+v", n, s.Rows)
	}
}

func TestServerPort(t *testing.T) {
	for _, c := range []struct{ src, dst, want uint16 }{
		{51000, 443, 443}, {443, 51000, 443}, {22, 80, 22}, {40000, 50000, 50000}, {8080, 33000, 8080},
	} {
		if got := serverPort(c.src, c.dst); got != c.want {
			t.Errorf("serverPort(%d, %d) = %d, want %d", c.src, c.dst, got, c.want)
		}
	}
}

type countingSubscriber struct {
	mu    sync.Mutex
	ticks int
	bytes float64
}

func (c *countingSubscriber) Rollup(s *Snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ticks++
	if r := row(s, ScopeExporter, "10.0.0.1"); r != nil {
		c.bytes += r.Values.Of(BytesPerSecond)
	}
}

// TestLiveConcurrent writes from several goroutines while the engine ticks
// on the wall clock (run with -race): every byte written is published once
// the delay has passed.
func TestLiveConcurrent(t *testing.T) {
	e := newTestEngine(t, func(c *Configuration) { c.Delay = 200 * time.Millisecond; c.Tick = 100 * time.Millisecond })
	sub := &countingSubscriber{}
	e.Subscribe(sub)
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				e.Write([]flow.Record{lineRecord(time.Now(), 0, 1000)})
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	time.Sleep(500 * time.Millisecond)
	e.Stop()
	sub.mu.Lock()
	defer sub.mu.Unlock()
	// Each tick's bytes per second times the tick: the bytes.
	if got := sub.bytes * 0.1; math.Abs(got-200*1000) > 1e-6 || sub.ticks < 5 {
		t.Errorf("%v bytes published in %d ticks, want 200000", got, sub.ticks)
	}
}

// TestSpanAnchor: a record whose end is no later than its receipt and
// within the delay of it (an exporter whose clock agrees with the
// collector's) lands on its own span's seconds, not on the seconds before
// its receipt; one whose end is after its receipt, or older than the
// delay, is anchored on its receipt (the exporter's clock is off).
func TestSpanAnchor(t *testing.T) {
	e := newTestEngine(t, nil) // tick 1 s, delay 5 s: open ticks from 995
	e.Tick(at(1000))
	rec := func(inIf uint32, start, end, received float64, bytes uint64) flow.Record {
		r := lineRecord(at(received), 0, bytes)
		r.Start, r.End, r.InIf, r.InIfName = at(start), at(end), inIf, ""
		return r
	}
	e.Write([]flow.Record{
		// Received 2.5 s after its end: its span [996.2, 997.8], 800
		// bytes in 996 and in 997, its flow in 997.
		rec(1, 996.2, 997.8, 1000.3, 1600),
		// Ends when it is received: [998.5, 1000.5] either way.
		rec(2, 998.5, 1000.5, 1000.5, 2000),
		// Ends 2.5 s after its receipt (the exporter's clock is ahead):
		// anchored on the receipt, [999.5, 1000.5].
		rec(3, 1002, 1003, 1000.5, 1000),
		// Ends 10.6 s before its receipt, more than the delay (the
		// exporter's clock is behind): anchored on the receipt, [999.6, 1000.6].
		rec(4, 989, 990, 1000.6, 1000),
	})
	want := map[string]map[float64]float64{ // line → second → bytes (flows)
		"1": {996: 800, 997: 800},
		"2": {998: 500, 999: 1000, 1000: 500},
		"3": {999: 500, 1000: 500},
		"4": {999: 400, 1000: 600},
	}
	wantFlow := map[string]float64{"1": 997, "2": 1000, "3": 1000, "4": 1000}
	for sec := 1001.0; sec <= 1007; sec++ {
		s := e.Tick(at(sec))
		b := float64(s.Time.UnixNano())/1e9 - 1 // the second just closed
		for line, secs := range want {
			r := row(s, ScopeLine, "10.0.0.1 "+line)
			if r == nil {
				t.Fatalf("second %v: no row for line %s", b, line)
			}
			if got := r.Values.Of(BytesPerSecond); math.Abs(got-secs[b]) > 1e-6 {
				t.Errorf("line %s, second %v: %v bytes/s, want %v", line, b, got, secs[b])
			}
			flows := 0.0
			if wantFlow[line] == b {
				flows = 1
			}
			if got := r.Values.Of(FlowsPerSecond); got != flows {
				t.Errorf("line %s, second %v: %v flows/s, want %v", line, b, got, flows)
			}
		}
	}
	if e.stats.lateRecords != 0 || e.stats.futureRecords != 0 {
		t.Errorf("%d late and %d future records, want none", e.stats.lateRecords, e.stats.futureRecords)
	}
}

// TestIdleSeriesReturn: a series idle for IdleTimeout is forgotten, and
// when its key comes back it is counted again from scratch in a new
// series (not in the forgotten one, which a lookup cache kept in front of
// the maps would still hand out), while a busy series of the same scope
// is untouched.
func TestIdleSeriesReturn(t *testing.T) {
	e := newTestEngine(t, func(c *Configuration) { c.Delay, c.IdleTimeout = 0, 5*time.Second })
	e.Tick(at(100))
	quiet := lineRecord(at(100.5), 0, 1000)
	quiet.InIfName, quiet.InIf = "eth1", 4
	busy := lineRecord(at(100.5), 0, 500)
	if err := e.Write([]flow.Record{quiet, busy}); err != nil {
		t.Fatal(err)
	}
	s := e.Tick(at(101))
	if r := row(s, ScopeLine, "10.0.0.1 eth1"); r == nil || r.Values.Of(BytesPerSecond) != 1000 {
		t.Fatalf("tick 101: eth1 %+v, want 1000 bytes/s", r)
	}
	for sec := 101.0; sec < 112; sec++ {
		busy.Received, busy.Start, busy.End = at(sec+0.5), at(sec+0.5), at(sec+0.5)
		if err := e.Write([]flow.Record{busy}); err != nil {
			t.Fatal(err)
		}
		s = e.Tick(at(sec + 1))
	}
	if r := row(s, ScopeLine, "10.0.0.1 eth1"); r != nil {
		t.Fatalf("tick 112: eth1 still listed after 11 idle seconds: %+v", r.Values.Map())
	}
	if r := row(s, ScopeLine, "10.0.0.1 eth0"); r == nil || r.Values.Of(BytesPerSecond) != 500 {
		t.Fatalf("tick 112: eth0 %+v, want 500 bytes/s", r)
	}
	quiet.Received, quiet.Start, quiet.End = at(112.5), at(112.5), at(112.5)
	quiet.Bytes = 3000
	if err := e.Write([]flow.Record{quiet}); err != nil {
		t.Fatal(err)
	}
	s = e.Tick(at(113))
	r := row(s, ScopeLine, "10.0.0.1 eth1")
	if r == nil || r.Values.Of(BytesPerSecond) != 3000 {
		t.Fatalf("tick 113: eth1 back %+v, want 3000 bytes/s", r)
	}
	if age := r.Values.Of(SeriesAgeSeconds); age != 1 {
		t.Errorf("tick 113: eth1's series is %v s old, want 1 (a new series)", age)
	}
}

// TestVMRowProject: a VM's row carries its project (vCenter's, else the
// networks file's); when the VM shows up in another project its row is
// relabelled, and the snapshot handed out before keeps its labels.
func TestVMRowProject(t *testing.T) {
	e := newTestEngine(t, func(c *Configuration) { c.Delay = 0 })
	e.Tick(at(100))
	r := lineRecord(at(100.5), 0, 1000)
	r.Dst.VSphere = &flow.VSphere{VMName: "pay-db-1", Project: "payments"}
	other := lineRecord(at(100.5), 0, 1000)
	other.Src.VSphere = &flow.VSphere{VMName: "lone-1"}
	other.Src.Network = &flow.NetworkInfo{Project: "net-project"}
	if err := e.Write([]flow.Record{r, other}); err != nil {
		t.Fatal(err)
	}
	s1 := e.Tick(at(101))
	if got := row(s1, ScopeVM, "pay-db-1").Labels; got["project"] != "payments" || got["vm"] != "pay-db-1" {
		t.Fatalf("pay-db-1 labels %v", got)
	}
	if got := row(s1, ScopeVM, "lone-1").Labels; got["project"] != "net-project" {
		t.Fatalf("lone-1 labels %v, want the networks file's project", got)
	}
	before := row(s1, ScopeVM, "pay-db-1").Labels
	r.Dst.VSphere = &flow.VSphere{VMName: "pay-db-1", Project: "payments-2"}
	r.Received, r.Start, r.End = at(101.5), at(101.5), at(101.5)
	if err := e.Write([]flow.Record{r}); err != nil {
		t.Fatal(err)
	}
	s2 := e.Tick(at(102))
	if got := row(s2, ScopeVM, "pay-db-1").Labels["project"]; got != "payments-2" {
		t.Fatalf("after the move: project %q, want payments-2", got)
	}
	if before["project"] != "payments" {
		t.Fatalf("the earlier snapshot's labels changed: %v", before)
	}
}

// TestVMRowProjectMovesBack: a VM that moves to another project and back
// is relabelled each time, though the records of its first place come
// back in the same shape (the same enrichment value) as before the move.
func TestVMRowProjectMovesBack(t *testing.T) {
	e := newTestEngine(t, func(c *Configuration) { c.Delay = 0 })
	e.Tick(at(100))
	first := &flow.VSphere{VMName: "pay-db-1", Project: "payments"}
	moved := &flow.VSphere{VMName: "pay-db-1", Project: "payments-2"}
	for i, vs := range []*flow.VSphere{first, moved, first, moved} {
		r := lineRecord(at(100.5+float64(i)), 0, 1000)
		r.Dst.VSphere = vs
		if err := e.Write([]flow.Record{r}); err != nil {
			t.Fatal(err)
		}
		s := e.Tick(at(101 + float64(i)))
		if got := row(s, ScopeVM, "pay-db-1").Labels["project"]; got != vs.Project {
			t.Fatalf("tick %d: pay-db-1 in project %q, want %q", i, got, vs.Project)
		}
	}
}

// TestTimesOutOfRange: times outside the years 1825-2115 (a hostile or
// broken exporter's) count as absent: a record with no other time is
// counted untimed, one with a start in the year 1 is counted whole at its
// end; spans of nearly three centuries, within the range, neither overflow
// nor put bytes in the open ticks beyond their share; nothing panics.
func TestTimesOutOfRange(t *testing.T) {
	e := newTestEngine(t, func(c *Configuration) { c.Delay = 0 })
	e.Tick(at(100))
	far := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	year1 := time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC)
	untimed := lineRecord(time.Time{}, 0, 1000)
	untimed.End, untimed.Start = far, far
	broken := lineRecord(time.Time{}, 0, 500)
	broken.End, broken.Start = at(100.5), year1
	long := lineRecord(time.Time{}, 0, 1e9) // from 1826 to the open tick
	long.Start, long.End = time.Date(1826, 1, 1, 0, 0, 0, 0, time.UTC), at(100.5)
	longer := lineRecord(at(100.5), 0, 1e9) // 1826 to 2114, received now
	longer.Start, longer.End = time.Date(1826, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2114, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := e.Write([]flow.Record{untimed, broken, long, longer}); err != nil {
		t.Fatal(err)
	}
	s := e.Tick(at(101))
	if e.stats.untimed != 1 || e.stats.records != 3 {
		t.Fatalf("untimed %d, records %d; want 1 and 3", e.stats.untimed, e.stats.records)
	}
	// The long records put about 1e9 bytes / 4.5e9 s in the tick.
	if got := row(s, ScopeLine, "10.0.0.1 eth0").Values.Of(BytesPerSecond); math.Abs(got-500) > 1 {
		t.Fatalf("line bytes/s %v, want 500 (the broken record whole at its end, the long ones a share of a second in 146+ years)", got)
	}
}

// TestImplausibleCounts: a record of 2^64-1 bytes (or 2^63 packets) from
// a broken or hostile exporter is counted apart and not added, so that a
// line's rate stays that of its real flows; the largest plausible record
// is added.
func TestImplausibleCounts(t *testing.T) {
	e := newTestEngine(t, func(c *Configuration) { c.Delay = 0 })
	e.Tick(at(100))
	bogus := lineRecord(at(100.5), 0, math.MaxUint64)
	bogusPkts := lineRecord(at(100.5), 0, 100)
	bogusPkts.Packets = 1 << 63
	real := lineRecord(at(100.5), 0, 700)
	if err := e.Write([]flow.Record{bogus, bogusPkts, real}); err != nil {
		t.Fatal(err)
	}
	s := e.Tick(at(101))
	if e.stats.implausible != 2 || e.stats.records != 1 {
		t.Fatalf("implausible %d, records %d; want 2 and 1", e.stats.implausible, e.stats.records)
	}
	if got := row(s, ScopeLine, "10.0.0.1 eth0").Values.Of(BytesPerSecond); got != 700 {
		t.Fatalf("line bytes/s %v, want 700 (the real record alone)", got)
	}
	biggest := lineRecord(at(101.5), 0, plausibleBytes)
	if err := e.Write([]flow.Record{biggest}); err != nil {
		t.Fatal(err)
	}
	s = e.Tick(at(102))
	if got := row(s, ScopeLine, "10.0.0.1 eth0").Values.Of(BytesPerSecond); got != plausibleBytes {
		t.Fatalf("line bytes/s %v, want %d", got, plausibleBytes)
	}
}

// TestEvictEveryScope: many idle series of every scope (what a scan
// leaves: a service per port, a line per interface, a VM and a project
// per name, an exporter per address) are forgotten together, each from
// its scope's map, while a busy series of every scope stays; their keys
// come back as new series.
func TestEvictEveryScope(t *testing.T) {
	const n = 300
	e := newTestEngine(t, func(c *Configuration) { c.Delay, c.IdleTimeout = 0, 5*time.Second })
	e.Tick(at(100))
	rec := func(i int, sec float64) flow.Record {
		r := lineRecord(at(sec), 0, 100)
		r.ObserverIP = netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)})
		r.Proto, r.SrcPort, r.DstPort = 6, 40000, uint16(1+i)
		r.InIfName, r.InIf = "", uint32(1+i)
		name := "vm-" + strconv.Itoa(i)
		r.Src = flow.Endpoint{VSphere: &flow.VSphere{VMName: name, Project: "p-" + name}}
		return r
	}
	recs := make([]flow.Record, n)
	for i := range recs {
		recs[i] = rec(i, 100.5)
	}
	if err := e.Write(recs); err != nil {
		t.Fatal(err)
	}
	s := e.Tick(at(101))
	if len(s.Rows) != 5*n {
		t.Fatalf("%d rows after the scan, want %d", len(s.Rows), 5*n)
	}
	// Series n-1 stays busy.
	for sec := 101.0; sec < 108; sec++ {
		if err := e.Write([]flow.Record{rec(n-1, sec+0.5)}); err != nil {
			t.Fatal(err)
		}
		s = e.Tick(at(sec + 1))
	}
	if len(s.Rows) != 5 {
		t.Fatalf("%d rows once the scan went idle, want the busy one's 5", len(s.Rows))
	}
	if len(e.lines) != 1 || len(e.services) != 1 || len(e.vms) != 1 || len(e.projects) != 1 || len(e.exporters) != 1 {
		t.Fatalf("maps still hold forgotten series: %d lines, %d services, %d VMs, %d projects, %d exporters",
			len(e.lines), len(e.services), len(e.vms), len(e.projects), len(e.exporters))
	}
	for _, scope := range []int{scopeLine, scopeService, scopeVM, scopeProject, scopeExporter} {
		if e.counts[scope] != 1 {
			t.Errorf("scope %s counts %d series, want 1", scopeNames[scope], e.counts[scope])
		}
	}
	// A forgotten key comes back as a series of its own.
	if err := e.Write([]flow.Record{rec(7, 108.5)}); err != nil {
		t.Fatal(err)
	}
	s = e.Tick(at(109))
	if len(s.Rows) != 10 {
		t.Fatalf("%d rows after one scanned key came back, want 10", len(s.Rows))
	}
	if r := row(s, ScopeService, "tcp/8"); r == nil || r.Values.Of(SeriesAgeSeconds) != 1 {
		t.Errorf("service tcp/8 back: %+v, want a new series", r)
	}
}

// secondsSubscriber notes each snapshot's time and its line's bytes per
// second.
type secondsSubscriber struct {
	times []float64
	bytes map[float64]float64
}

func (c *secondsSubscriber) Rollup(s *Snapshot) {
	end := float64(s.Time.UnixNano()) / 1e9
	c.times = append(c.times, end)
	if r := row(s, ScopeLine, "10.0.0.1 eth0"); r != nil {
		c.bytes[end] = r.Values.Of(BytesPerSecond)
	}
}

// TestEventTimeEverySecond: a replay whose records end five seconds apart
// (an exporter's 5 s active timeout) publishes every second, each with
// the bytes the traffic put in it, as the wall clock does live. The
// engine published only the last second each record closed: the rules
// judged one second in five and missed a 3 s burst.
func TestEventTimeEverySecond(t *testing.T) {
	e := newTestEngine(t, func(c *Configuration) { c.EventTime = true }) // delay 5 s
	sub := &secondsSubscriber{bytes: map[float64]float64{}}
	e.Subscribe(sub)
	// A steady 1,000 bytes/s in records of [s-5, s], and 9,000 bytes/s
	// more over [1021, 1024] in one record ending at 1024.
	want := map[float64]float64{}
	for s := 1005; s <= 1060; s += 5 {
		recs := []flow.Record{lineRecord(at(float64(s)), 5*time.Second, 5000)}
		if s == 1025 {
			burst := lineRecord(at(1024), 3*time.Second, 27000)
			burst.SrcPort = 5001
			recs = append([]flow.Record{burst}, recs...)
		}
		if err := e.Write(recs); err != nil {
			t.Fatal(err)
		}
	}
	for end := 1001.0; end <= 1060; end++ { // the second ending at end
		want[end] = 1000
		if end > 1021 && end <= 1024 {
			want[end] = 10000
		}
	}
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(sub.times); i++ {
		if sub.times[i] != sub.times[i-1]+1 {
			t.Errorf("snapshot ending %v follows %v: a second was not published", sub.times[i], sub.times[i-1])
		}
	}
	for end, w := range want {
		if got, ok := sub.bytes[end]; !ok || math.Abs(got-w) > 1e-6 {
			t.Errorf("second ending %v: %v bytes/s (published %v), want %v", end, got, ok, w)
		}
	}
}

// TestRTTWithItsBytes: a handshake's RTT shows in the snapshot of the
// second its record's bytes and handshake count show in, rollup-delay
// after it is written, not in the snapshot of the second closing as it is
// written (rollup-delay earlier, before the bytes of the same flow).
func TestRTTWithItsBytes(t *testing.T) {
	e := newTestEngine(t, nil) // Delay 5 s
	e.Tick(at(100))
	first := map[string]float64{}
	for sec := 100; sec <= 112; sec++ {
		if sec == 101 {
			// A connection of the second 100 with a 40 ms handshake, received at its end.
			e.Write([]flow.Record{{ObserverIP: exp1, Received: at(100.8), Start: at(100.1), End: at(100.8), Proto: 6,
				SrcAddr: netip.MustParseAddr("10.0.0.9"), DstAddr: netip.MustParseAddr("10.0.0.10"),
				SrcPort: 50000, DstPort: 443, TCPFlags: 0x1b, Bytes: 7000, Packets: 10,
				TCP: flow.TCPPerf{RTTServer: 30 * time.Millisecond, RTTClient: 10 * time.Millisecond}}})
		}
		s := e.Tick(at(float64(sec)))
		r := row(s, ScopeService, "tcp/443")
		if r == nil {
			continue
		}
		ts := float64(s.Time.UnixNano()) / 1e9
		if _, ok := first["bytes"]; !ok && r.Values.Of(BytesPerSecond) > 0 {
			first["bytes"] = ts
		}
		if _, ok := first["handshakes"]; !ok && r.Values.Of(HandshakesPerSecond) > 0 {
			first["handshakes"] = ts
		}
		if p50, ok := r.Values.Get(RTTp50); ok && first["rtt"] == 0 {
			first["rtt"] = ts
			if math.Abs(p50-40) > 0.4 {
				t.Errorf("RTT p50 %v ms, want 40", p50)
			}
		}
	}
	if first["bytes"] != 101 || first["handshakes"] != 101 || first["rtt"] != 101 {
		t.Errorf("first seen in the snapshot of (its end): bytes %v, handshakes %v, RTT %v; want 101 for each",
			first["bytes"], first["handshakes"], first["rtt"])
	}
}

// TestServerPortInitiator: a database on port 50000 (DB2's) and its
// clients. Records that show who opened the connection put both
// directions in tcp/50000: a SYN without ACK, a one-packet SYN-ACK (an
// sFlow sample, or a sampled NetFlow record of one packet), the
// exporter's biflowDirection; the ports' rule took tcp/1500 for a client
// on port 1500, and tcp/40000 for the answers to a client on 40000.
// Records that show nothing keep the ports' rule.
func TestServerPortInitiator(t *testing.T) {
	const syn, ack, psh, fin = 0x02, 0x10, 0x08, 0x01
	srv, cli := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("10.0.0.9")
	biflow := func(v uint64) []flow.Extra { return []flow.Extra{{Name: "biflow_direction", Num: v}} }
	for _, c := range []struct {
		name string
		r    flow.Record
		want string
	}{
		{"syn from a low client port", flow.Record{SrcAddr: cli, DstAddr: srv, SrcPort: 1500, DstPort: 50000, TCPFlags: syn, Packets: 1}, "tcp/50000"},
		{"sflow syn-ack to a low client port", flow.Record{Kind: flow.KindSFlow, SrcAddr: srv, DstAddr: cli, SrcPort: 50000, DstPort: 1500, TCPFlags: syn | ack, Packets: 512, SamplingRate: 512}, "tcp/50000"},
		{"sampled netflow syn-ack", flow.Record{Kind: flow.KindNetFlowV9, SrcAddr: srv, DstAddr: cli, SrcPort: 50000, DstPort: 1500, TCPFlags: syn | ack, Packets: 100, SamplingRate: 100}, "tcp/50000"},
		{"biflow reverse initiator, answers", flow.Record{Kind: flow.KindIPFIX, SrcAddr: srv, DstAddr: cli, SrcPort: 50000, DstPort: 40000, TCPFlags: syn | ack | psh | fin, Packets: 20, Extra: biflow(2)}, "tcp/50000"},
		{"biflow initiator, low client port", flow.Record{Kind: flow.KindIPFIX, SrcAddr: cli, DstAddr: srv, SrcPort: 1500, DstPort: 50000, TCPFlags: syn | ack | psh | fin, Packets: 20, Extra: biflow(1)}, "tcp/50000"},
		{"biflow on udp", flow.Record{Kind: flow.KindIPFIX, Proto: 17, SrcAddr: srv, DstAddr: cli, SrcPort: 50000, DstPort: 40000, Packets: 20, Extra: biflow(2)}, "udp/50000"},
		// Flags ORed over a connection's packets show SYN and ACK both ways.
		{"connection, flags ORed", flow.Record{Kind: flow.KindIPFIX, SrcAddr: srv, DstAddr: cli, SrcPort: 50000, DstPort: 40000, TCPFlags: syn | ack | psh | fin, Packets: 20}, "tcp/40000"},
		{"syn-ack without flags", flow.Record{Kind: flow.KindSFlow, SrcAddr: srv, DstAddr: cli, SrcPort: 50000, DstPort: 1500, TCPFlags: syn | ack, NoTCPFlags: true, Packets: 1}, "tcp/1500"},
		{"biflow whose reverse sent the SYNs", flow.Record{Kind: flow.KindIPFIX, SrcAddr: srv, DstAddr: cli, SrcPort: 50001, DstPort: 2000, Packets: 3,
			Extra: []flow.Extra{{Name: "reverse_tcp_control_bits", Num: syn}}}, "tcp/50001"},
		{"perimeter says nothing", flow.Record{Kind: flow.KindIPFIX, SrcAddr: cli, DstAddr: srv, SrcPort: 1500, DstPort: 50000, TCPFlags: syn | ack | psh, Packets: 20, Extra: biflow(3)}, "tcp/1500"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newTestEngine(t, func(c *Configuration) { c.Delay = 0 })
			e.Tick(at(100))
			r := c.r
			if r.Proto == 0 {
				r.Proto = 6
			}
			r.ObserverIP, r.Received, r.Start, r.End, r.Bytes = exp1, at(100.5), at(100.5), at(100.5), 1000
			e.Write([]flow.Record{r})
			s := e.Tick(at(101))
			var got []string
			for _, row := range s.Rows {
				if row.Scope == ScopeService {
					got = append(got, row.Key)
				}
			}
			if len(got) != 1 || got[0] != c.want {
				t.Errorf("services %v, want %s", got, c.want)
			}
		})
	}
}

// TestHandshakeCountedOnce: of a connection's records carrying its RTT
// (spanflow's meter puts it on every record of both directions), only
// the one that saw the handshake, towards the server, counts as a
// handshake; the quantiles take each record's RTT.
func TestHandshakeCountedOnce(t *testing.T) {
	cli, srv := netip.MustParseAddr("10.0.0.9"), netip.MustParseAddr("10.0.0.5")
	perf := flow.TCPPerf{RTTServer: 2 * time.Millisecond, RTTClient: time.Millisecond}
	e := newTestEngine(t, func(c *Configuration) { c.Delay = 0 })
	e.Tick(at(100))
	var recs []flow.Record
	for i, flags := range []uint16{0x1b, 0x18, 0x18, 0x19} { // the first record of each direction has the SYN
		ts := at(100.1 + float64(i)*0.2)
		recs = append(recs,
			flow.Record{ObserverIP: exp1, Received: ts, End: ts, Proto: 6, SrcAddr: cli, DstAddr: srv, SrcPort: 40000, DstPort: 443, TCPFlags: flags, Packets: 5, Bytes: 500, TCP: perf},
			flow.Record{ObserverIP: exp1, Received: ts, End: ts, Proto: 6, SrcAddr: srv, DstAddr: cli, SrcPort: 443, DstPort: 40000, TCPFlags: flags, Packets: 5, Bytes: 500, TCP: perf})
	}
	e.Write(recs)
	s := e.Tick(at(101))
	r := row(s, ScopeService, "tcp/443")
	if h := r.Values.Of(HandshakesPerSecond); h != 1 {
		t.Errorf("%v handshakes, want 1", h)
	}
	if p50 := r.Values.Of(RTTp50); math.Abs(p50-3) > 0.03 {
		t.Errorf("RTT p50 %v ms, want 3", p50)
	}
}

// TestUnansweredSYNsBiflow: a biflow (RFC 5103) whose reverse direction
// sent a SYN without ACK counts as an unanswered SYN, as the uniflow of
// that direction does; one whose reverse is a connection's does not.
func TestUnansweredSYNsBiflow(t *testing.T) {
	e := newTestEngine(t, func(c *Configuration) { c.Delay = 0 })
	e.Tick(at(100))
	a, b := netip.MustParseAddr("10.1.9.5"), netip.MustParseAddr("10.1.9.200")
	mk := func(sport uint16, flags, rev uint64) flow.Record {
		return flow.Record{ObserverIP: exp1, Received: at(100.5), End: at(100.5), Proto: 6, SrcAddr: a, DstAddr: b,
			SrcPort: sport, DstPort: 55555, TCPFlags: uint16(flags), Packets: 2, Bytes: 80,
			Extra: []flow.Extra{{Name: "reverse_tcp_control_bits", Num: rev}}}
	}
	e.Write([]flow.Record{mk(22, 0x14, 0x02), mk(23, 0, 0x02), mk(80, 0x1b, 0x1b)})
	s := e.Tick(at(101))
	if n := row(s, ScopeExporter, exp1.String()).Values.Of(UnansweredSYNsPerSecond); n != 2 {
		t.Errorf("%v unanswered SYNs, want 2", n)
	}
}

// TestRTTHeldBounded: the handshakes held for open buckets take memory
// bounded by the series and the sketch's bins, not by the rate. 400,000
// connections in one second, to 30,000 server ports (so that the
// pre-aggregates fold often), each with its handshake RTT: the held lists
// stay under about twice rttCompactFrom, their sums under the distinct
// (series, bin) pairs, and the quantiles come out as for a few records.
func TestRTTHeldBounded(t *testing.T) {
	e := newTestEngine(t, nil)
	e.Tick(at(100))
	rng := rand.New(rand.NewPCG(3, 4))
	const n, batch = 400_000, 1000
	recs := make([]flow.Record, batch)
	var most int
	for i := 0; i < n; i += batch {
		for j := range recs {
			rtt := time.Duration(10+rng.IntN(3)) * time.Millisecond
			recs[j] = flow.Record{ObserverIP: exp1, InIf: 1, Received: at(101.5), Start: at(101.2), End: at(101.5), Proto: 6,
				SrcAddr: addrN(uint32(rng.IntN(1000))), DstAddr: netip.MustParseAddr("10.0.0.10"),
				SrcPort: 50000, DstPort: uint16(1000 + rng.IntN(30000)), TCPFlags: 0x1b, Bytes: 700, Packets: 6,
				TCP: flow.TCPPerf{RTTServer: rtt}}
		}
		e.Write(recs)
		for _, p := range e.rttPend {
			if p != nil {
				most = max(most, len(p.bins)+len(p.series)/8)
			}
		}
	}
	if most > 2*e.rttCompactFrom {
		t.Errorf("held lists reached %d entries, want at most %d", most, 2*e.rttCompactFrom)
	}
	for _, p := range e.rttPend {
		// 3 bins for each series at most.
		if p != nil && p.sums.used > 3*len(e.all) {
			t.Errorf("summed held RTTs: %d (series, bin) pairs, want at most %d", p.sums.used, 3*len(e.all))
		}
	}
	s := e.Tick(at(108))
	r := row(s, ScopeExporter, exp1.String())
	if r == nil {
		t.Fatal("no exporter row")
	}
	if p50, ok := r.Values.Get(RTTp50); !ok || math.Abs(p50-11) > 0.2 {
		t.Errorf("exporter RTT p50 %v (%v), want 11 ms", p50, ok)
	}
}
