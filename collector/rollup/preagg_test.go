package rollup

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"

	"github.com/spanflow/spanflow/internal/flow"
)

// oracleKeys lists the rows a record counts in, worked out from its fields
// alone (scope|key), as the rollups document them.
func oracleKeys(r *flow.Record) []string {
	var out []string
	ifc := func(name string, index uint32) string {
		if name == "" {
			name = strconv.Itoa(int(index))
		}
		return ScopeLine + "|" + r.ObserverIP.String() + " " + name
	}
	if r.InIf != 0 || r.InIfName != "" {
		out = append(out, ifc(r.InIfName, r.InIf))
	}
	if (r.OutIf != 0 || r.OutIfName != "") && (r.OutIf != r.InIf || r.OutIfName != r.InIfName) {
		out = append(out, ifc(r.OutIfName, r.OutIf))
	}
	proj := func(ep *flow.Endpoint) string {
		if ep.VSphere != nil && ep.VSphere.Project != "" {
			return ep.VSphere.Project
		}
		if ep.Network != nil {
			return ep.Network.Project
		}
		return ""
	}
	sp, dp := proj(&r.Src), proj(&r.Dst)
	if sp != "" {
		out = append(out, ScopeProject+"|"+sp)
	}
	if dp != "" && dp != sp {
		out = append(out, ScopeProject+"|"+dp)
	}
	var sv, dv string
	if r.Src.VSphere != nil {
		sv = r.Src.VSphere.VMName
	}
	if r.Dst.VSphere != nil {
		dv = r.Dst.VSphere.VMName
	}
	if sv != "" {
		out = append(out, ScopeVM+"|"+sv)
	}
	if dv != "" && dv != sv {
		out = append(out, ScopeVM+"|"+dv)
	}
	port := 0
	if r.Proto == 6 || r.Proto == 17 {
		port = int(min(r.SrcPort, r.DstPort)) // both below 32768 here
	}
	if r.Proto == 6 && r.TCPFlags&0x12 == 0x12 && r.Packets == 1 {
		port = int(r.SrcPort) // the server's SYN-ACK
	}
	out = append(out, ScopeService+"|"+protoName(r.Proto)+"/"+strconv.Itoa(port))
	return append(out, ScopeExporter+"|"+r.ObserverIP.String())
}

type oracleBucket struct {
	bytes, packets                                     float64
	flows, retrans, handshakes, syns, tcpPackets, zero float64
	rtts                                               []float64 // handshake RTTs (ms) of the records ending in the bucket
}

// TestFoldMatchesRecords writes random records (spans of 0–8 s, shared and
// unshared enrichment values, TCP and not) through an engine whose
// pre-aggregation tables are tiny, so they fold many times within each
// tick, and compares every row of every tick with sums worked out record
// by record, and the RTT quantiles with a sketch fed record by record.
func TestFoldMatchesRecords(t *testing.T) {
	for _, tiny := range []bool{false, true} {
		t.Run(fmt.Sprintf("tiny=%v", tiny), func(t *testing.T) { testFold(t, tiny) })
	}
}

func testFold(t *testing.T, tiny bool) {
	const delay = 3
	e := newTestEngine(t, func(c *Configuration) {
		c.Delay, c.RTTWindow, c.SmoothingWindow = delay*time.Second, time.Hour, time.Second
	})
	if tiny {
		e.pre.max = 4
		e.pre.slots = make([]uint64, 8)
		e.pre.rtt = newCountTable(16, 16)
		e.pre.talkers = newTalkerTable(16, 16)
		e.rttCompactFrom = 8
	}
	rng := rand.New(rand.NewPCG(7, 8))
	exps := []netip.Addr{exp1, netip.MustParseAddr("10.0.0.2")}
	names := []string{"", "eth0", "eth1"}
	vms := []*flow.VSphere{{VMName: "a", Project: "p0"}, {VMName: "b", Project: "p1"}, {VMName: "c", Project: "p1"}, {VMName: "d"}}
	nets := []*flow.NetworkInfo{{Project: "net-a"}, {Project: ""}}
	expect := map[int64]map[string]*oracleBucket{}
	rtts := map[string]*ddsketch.DDSketch{}
	var lateRecords uint64

	e.Tick(at(100))
	now := 100.0
	for sec := int64(100); sec < 130; sec++ {
		for i := range 300 {
			now = float64(sec) + (float64(i)+rng.Float64())/300
			if rng.IntN(50) == 0 {
				now -= 5 // late: before the open buckets
			}
			r := flow.Record{ObserverIP: exps[rng.IntN(2)], Received: at(now),
				SrcAddr: addrN(uint32(rng.IntN(50))), DstAddr: addrN(1000),
				InIf: uint32(rng.IntN(3)), OutIf: uint32(rng.IntN(3)),
				InIfName: names[rng.IntN(3)], OutIfName: names[rng.IntN(3)],
				Bytes: uint64(rng.IntN(10000)), Packets: uint64(rng.IntN(20))}
			switch rng.IntN(3) {
			case 0:
				r.Proto, r.SrcPort, r.DstPort = 6, uint16(1000+rng.IntN(3)), 443
			case 1:
				r.Proto, r.SrcPort, r.DstPort = 17, 53, uint16(2000+rng.IntN(3))
			default:
				r.Proto = 1
			}
			if x := rng.IntN(6); x < len(vms) {
				r.Src.VSphere = vms[x]
			} else if x == 4 {
				v := *vms[rng.IntN(len(vms))] // same values, another address
				r.Src.VSphere = &v
			}
			if x := rng.IntN(4); x < len(nets) {
				r.Dst.Network = nets[x]
			} else if x == 2 {
				r.Dst.VSphere = vms[rng.IntN(len(vms))]
			}
			if r.Proto == 6 {
				r.TCPFlags = []uint16{0x02, 0x12, 0x1b}[rng.IntN(3)]
				r.TCP.Retransmissions = uint32(rng.IntN(3))
				r.TCP.ZeroWindows = uint32(rng.IntN(2))
				if rng.IntN(2) == 0 {
					r.TCP.RTTServer = time.Duration(rng.IntN(50_000_000) + 1000)
				}
			}
			dur := time.Duration(0)
			if rng.IntN(4) != 0 {
				dur = time.Duration(rng.Int64N(int64(8 * time.Second)))
			}
			r.End, r.Start = r.Received, r.Received.Add(-dur)

			// The oracle: the open buckets are lo..hi (Tick(sec) closed
			// every bucket before sec-delay).
			lo, hi := sec-delay, sec-delay+int64(e.ringLen)-1
			end := r.Received.UnixNano()
			start := end - int64(dur)
			sIdx, eIdx := floorDiv(start, 1e9), floorDiv(end, 1e9)
			if err := e.Write([]flow.Record{r}); err != nil {
				t.Fatal(err)
			}
			if eIdx < lo {
				lateRecords++
				continue
			}
			keys := oracleKeys(&r)
			for b := max(sIdx, lo); b <= min(eIdx, hi); b++ {
				share := 1.0
				if dur > 0 {
					share = float64(min((b+1)*1e9, end)-max(b*1e9, start)) / float64(dur)
				}
				for _, k := range keys {
					ob := bucketOf(expect, b, k)
					ob.bytes += float64(r.Bytes) * share
					ob.packets += float64(r.Packets) * share
				}
			}
			for _, k := range keys {
				ob := bucketOf(expect, eIdx, k)
				ob.flows++
				if r.Proto == 6 {
					ob.retrans += float64(r.TCP.Retransmissions)
					ob.zero += float64(r.TCP.ZeroWindows)
					ob.tcpPackets += float64(r.Packets)
					if r.TCPFlags == 0x02 {
						ob.syns++
					}
					if r.TCP.RTTServer > 0 {
						// A handshake counts once: on the record with SYN
						// towards the server port (every flag set here has SYN).
						server := min(r.SrcPort, r.DstPort)
						if r.TCPFlags&0x12 == 0x12 && r.Packets == 1 {
							server = r.SrcPort
						}
						if r.DstPort == server {
							ob.handshakes++
						}
						// In the sketch once its bucket closes, with its bytes.
						ob.rtts = append(ob.rtts, float64(r.TCP.RTTServer)/1e6)
					}
				}
			}
		}
		s := e.Tick(at(float64(sec + 1)))
		closed := sec + 1 - delay - 1
		want := expect[closed]
		for k, ob := range want {
			for _, ms := range ob.rtts {
				if rtts[k] == nil {
					rtts[k] = newRTTState(e.cfg.RTTAccuracy).cur
				}
				_ = rtts[k].Add(ms)
			}
		}
		seen := map[string]bool{}
		for i := range s.Rows {
			row := &s.Rows[i]
			k := row.Scope + "|" + row.Key
			seen[k] = true
			ob := want[k]
			if ob == nil {
				ob = &oracleBucket{}
			}
			for name, w := range map[string]float64{BytesPerSecond: ob.bytes, PacketsPerSecond: ob.packets,
				FlowsPerSecond: ob.flows, RetransmittedPerSecond: ob.retrans, HandshakesPerSecond: ob.handshakes,
				UnansweredSYNsPerSecond: ob.syns, ZeroWindowsPerSecond: ob.zero} {
				if got := row.Values.Of(name); math.Abs(got-w) > 1e-9*max(1, w) {
					t.Errorf("tick %d %s %s = %v, want %v", closed, k, name, got, w)
				}
			}
			if ob.tcpPackets > 0 {
				if got, w := row.Values.Of(RetransmissionRatio), ob.retrans/ob.tcpPackets; math.Abs(got-w) > 1e-12 {
					t.Errorf("tick %d %s retransmission ratio = %v, want %v", closed, k, got, w)
				}
			}
			if sk := rtts[k]; sk != nil {
				q, err := sk.GetValuesAtQuantiles(quantiles)
				if err != nil {
					t.Fatal(err)
				}
				if got := []float64{row.Values.Of(RTTp50), row.Values.Of(RTTp95), row.Values.Of(RTTp99)}; fmt.Sprint(got) != fmt.Sprint(q) {
					t.Errorf("tick %d %s RTT quantiles %v, want %v", closed, k, got, q)
				}
			}
		}
		for k, ob := range want {
			if !seen[k] && ob.flows+ob.bytes > 0 {
				t.Errorf("tick %d: no row %s", closed, k)
			}
		}
	}
	if e.stats.lateRecords != lateRecords {
		t.Errorf("%d late records, want %d", e.stats.lateRecords, lateRecords)
	}
}

func bucketOf(m map[int64]map[string]*oracleBucket, b int64, k string) *oracleBucket {
	if m[b] == nil {
		m[b] = map[string]*oracleBucket{}
	}
	if m[b][k] == nil {
		m[b][k] = &oracleBucket{}
	}
	return m[b][k]
}

// TestSpaceSavingBatches checks the batched admission's promises on a Zipf
// stream cut into batches of distinct addresses (as the talker table hands
// them over): every count bounds the true weight from above, by at most its
// err, and every address heavier than total/k is held.
func TestSpaceSavingBatches(t *testing.T) {
	const k = 32
	s := newSpaceSaving(k)
	exact := map[netip.Addr]float64{}
	rng := rand.New(rand.NewPCG(9, 10))
	z := rand.NewZipf(rng, 1.1, 1, 99999)
	total := 0.0
	for batch := uint64(1); batch <= 400; batch++ {
		sums := map[netip.Addr]float64{}
		for range rng.IntN(2000) {
			a := addrN(uint32(z.Uint64()))
			w := float64(100 + rng.IntN(1400))
			sums[a] += w
			exact[a] += w
			total += w
		}
		for a, w := range sums {
			s.addBatch(a, addrHash(a), w, batch)
		}
		s.endBatch()
	}
	if len(s.slots) != k || s.index.len() != k {
		t.Fatalf("%d counters, %d indexed; want %d", len(s.slots), s.index.len(), k)
	}
	for _, c := range s.slots {
		truth := exact[c.addr]
		if i, ok := s.held(c.addr, addrHash(c.addr)); !ok || s.slots[i].addr != c.addr {
			t.Errorf("%v: not indexed", c.addr)
		}
		if c.count < truth-1e-6 || c.count-c.err > truth+1e-6 {
			t.Errorf("%v: count %v err %v, true %v", c.addr, c.count, c.err, truth)
		}
	}
	for a, w := range exact {
		if w > total/k && !s.holds(a) {
			t.Errorf("%v weighs %v > total/k = %v but is not held", a, w, total/k)
		}
	}
}

// TestTalkersBySeries: eachBySeries hands each series the same entries in
// the same order as each (slot order), only grouped, and both empty the
// table; sketches fed either way end the same.
func TestTalkersBySeries(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	ss := make([]*series, 300)
	for i := range ss {
		ss[i] = &series{pos: len(ss) - 1 - i, talkers: newSpaceSaving(16)}
	}
	var a, b talkerTable
	for round := range 5 {
		a, b = newTalkerTable(1<<10, 1<<17), newTalkerTable(1<<10, 1<<17)
		for range 3000 + round*2000 {
			pick := []*series{ss[rng.IntN(len(ss))], ss[rng.IntN(len(ss))]}
			addr := addrN(uint32(rng.IntN(5000)))
			w := float64(1 + rng.IntN(1500))
			for _, tt := range []*talkerTable{&a, &b} {
				if tt.full(len(pick)) {
					t.Fatal("table full")
				}
				tt.add(pick, addr, addrHash(addr), w)
			}
		}
		type entry struct {
			addr netip.Addr
			w    float64
		}
		bySlot, grouped := map[*series][]entry{}, map[*series][]entry{}
		var order []int
		a.each(func(s *series, addr netip.Addr, w float64) { bySlot[s] = append(bySlot[s], entry{addr, w}) })
		b.eachBySeries(func(s *series, addr netip.Addr, w float64) {
			if len(order) == 0 || order[len(order)-1] != s.pos {
				order = append(order, s.pos)
			}
			grouped[s] = append(grouped[s], entry{addr, w})
		})
		if len(bySlot) != len(grouped) {
			t.Fatalf("round %d: %d series by slot, %d grouped", round, len(bySlot), len(grouped))
		}
		for s, want := range bySlot {
			got := grouped[s]
			if len(got) != len(want) {
				t.Fatalf("round %d: series %d: %d entries grouped, %d by slot", round, s.pos, len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("round %d: series %d entry %d: %v grouped, %v by slot", round, s.pos, i, got[i], want[i])
				}
			}
		}
		for i := 1; i < len(order); i++ {
			if order[i] <= order[i-1] {
				t.Fatalf("round %d: series %d after %d: not grouped by pos", round, order[i], order[i-1])
			}
		}
		for _, tt := range []*talkerTable{&a, &b} {
			if tt.used != 0 {
				t.Fatalf("round %d: %d entries left", round, tt.used)
			}
			for _, en := range tt.entries {
				if en.s != nil {
					t.Fatalf("round %d: an entry left", round)
				}
			}
		}
	}
}

// TestTalkersAfterSeriesMove: a snapshot that reorders the series while
// the talker table holds entries (a tick that closes no bucket) must not
// lose any of them when the fold groups them by series position (more
// than groupTalkersAbove talker rows).
func TestTalkersAfterSeriesMove(t *testing.T) {
	e := newTestEngine(t, func(c *Configuration) { c.Delay = 0 })
	e.Tick(at(100))
	const lines = 2 * groupTalkersAbove
	write := func(line int, src uint32, bytes uint64) {
		r := lineRecord(at(100.5), 0, bytes)
		r.InIfName, r.SrcAddr = fmt.Sprintf("eth%03d", line), addrN(src)
		if err := e.Write([]flow.Record{r}); err != nil {
			t.Fatal(err)
		}
	}
	// Made last-first: the snapshot's order by key moves every one.
	for l := lines - 1; l >= 0; l-- {
		write(l, uint32(l), 1000)
	}
	e.Tick(at(100.6)) // no bucket closes: no fold, but a snapshot
	e.mu.Lock()
	held, first := e.pre.talkers.used, e.all[0].key
	e.mu.Unlock()
	// eth000, made last, first: the snapshot moved the series.
	if want := exp1.String() + " eth000"; held != lines || first != want {
		t.Fatalf("after the snapshot the table holds %d entries and the first series is %q; want %d and %q", held, first, lines, want)
	}
	for l := range lines {
		write(l, uint32(10000+l), 500)
	}
	s := e.Tick(at(102))
	seen := 0
	for _, row := range s.Rows {
		if row.Scope != ScopeLine {
			continue
		}
		var l int
		if _, err := fmt.Sscanf(row.Labels["interface"], "eth%d", &l); err != nil {
			t.Fatal(err)
		}
		if len(row.Top) != 2 || row.Top[0].Addr != addrN(uint32(l)) || row.Top[1].Addr != addrN(uint32(10000+l)) {
			t.Errorf("line %s: talkers %v, want %v then %v", row.Key, row.Top, addrN(uint32(l)), addrN(uint32(10000+l)))
		}
		seen++
	}
	if seen != lines {
		t.Errorf("%d line rows, want %d", seen, lines)
	}
}
