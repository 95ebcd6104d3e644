package demo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/spanflow/spanflow/internal/reporter"
)

// The ground truth of a run, computed from the generated frames decoded by
// gopacket (not by spanflow's decoder), with the estate's names, and the
// flow records an IPFIX meter with the run's timeouts must make of them.

// gtKey is what a meter keys a flow on.
type gtKey struct {
	session, vlan    uint16
	src, dst         netip.Addr
	proto            uint8
	sport, dport     uint16 // ICMP: 0 and type<<8|code
	ifIndex          uint32
	tcp              bool
	synTime, ackTime int64
}

type gtRecord struct {
	key         gtKey
	first, last int64
	packets     uint64
	bytes       uint64
	retrans     uint64
}

type gtFlowKey struct {
	session, vlan uint16
	src, dst      netip.Addr
	proto         uint8
	sport, dport  uint16
}

type connKey struct {
	a, b         netip.Addr
	aport, bport uint16
}

func canonConn(src, dst netip.Addr, sport, dport uint16) connKey {
	if src.Less(dst) || (src == dst && sport < dport) {
		return connKey{src, dst, sport, dport}
	}
	return connKey{dst, src, dport, sport}
}

type handshake struct{ syn, synack, ack int64 }

// groundTruth replays the traffic the run generated and returns the records
// a meter must export, with the handshake of each TCP connection.
func groundTruth(t *testing.T, res *Result) ([]gtRecord, map[connKey]*handshake, int) {
	t.Helper()
	cfg := res.Configuration
	g := NewTraffic(res.Estate, TrafficConfiguration{Seed: cfg.Seed, Rate: cfg.Rate, Duration: cfg.Duration, Base: res.Base})
	open := map[gtFlowKey]*gtRecord{}
	highest := map[gtFlowKey]uint32{}
	seqInit := map[gtFlowKey]bool{}
	hs := map[connKey]*handshake{}
	var done []gtRecord
	var (
		eth, inner    layers.Ethernet
		outer4, ip4   layers.IPv4
		ip6           layers.IPv6
		gre           layers.GRE
		erspan        layers.ERSPANII
		dot1q         layers.Dot1Q
		tcp           layers.TCP
		udp           layers.UDP
		icmp4         layers.ICMPv4
		icmp6         layers.ICMPv6
		payload       gopacket.Payload
		decodedLayers []gopacket.LayerType
	)
	// Two parsers: the outer one stops at ERSPAN, the inner one reads the
	// mirrored frame.
	outerParser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &outer4, &gre, &erspan)
	outerParser.IgnoreUnsupported = true
	innerParser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &inner, &dot1q, &ip4, &ip6, &tcp, &udp, &icmp4, &icmp6, &payload)
	innerParser.IgnoreUnsupported = true
	var p Packet
	n := 0
	for g.Next(&p) {
		n++
		if err := outerParser.DecodeLayers(p.Frame, &decodedLayers); err != nil {
			t.Fatalf("packet %d: outer: %v", n, err)
		}
		if err := innerParser.DecodeLayers(erspan.LayerPayload(), &decodedLayers); err != nil {
			t.Fatalf("packet %d: inner: %v", n, err)
		}
		k := gtFlowKey{session: erspan.SessionID, vlan: dot1q.VLANIdentifier}
		if dot1q.VLANIdentifier != erspan.VLANIdentifier {
			t.Fatalf("packet %d: VLAN %d inside, %d in ERSPAN", n, dot1q.VLANIdentifier, erspan.VLANIdentifier)
		}
		var ipLen uint64
		var l4 gopacket.LayerType
		for _, lt := range decodedLayers {
			switch lt {
			case layers.LayerTypeIPv4:
				k.src, _ = netip.AddrFromSlice(ip4.SrcIP.To4())
				k.dst, _ = netip.AddrFromSlice(ip4.DstIP.To4())
				k.proto, ipLen = uint8(ip4.Protocol), uint64(ip4.Length)
			case layers.LayerTypeIPv6:
				k.src, _ = netip.AddrFromSlice(ip6.SrcIP)
				k.dst, _ = netip.AddrFromSlice(ip6.DstIP)
				k.proto, ipLen = uint8(ip6.NextHeader), uint64(ip6.Length)+40
			case layers.LayerTypeTCP, layers.LayerTypeUDP, layers.LayerTypeICMPv4, layers.LayerTypeICMPv6:
				l4 = lt
			}
		}
		switch l4 {
		case layers.LayerTypeTCP:
			k.sport, k.dport = uint16(tcp.SrcPort), uint16(tcp.DstPort)
		case layers.LayerTypeUDP:
			k.sport, k.dport = uint16(udp.SrcPort), uint16(udp.DstPort)
		case layers.LayerTypeICMPv4:
			k.dport = uint16(icmp4.TypeCode)
		case layers.LayerTypeICMPv6:
			k.dport = uint16(icmp6.TypeCode)
		default:
			t.Fatalf("packet %d: no transport layer in %v", n, decodedLayers)
		}
		ts := p.Time
		r := open[k]
		if r != nil && (ts-r.last >= int64(cfg.IdleTimeout) || ts-r.first >= int64(cfg.ActiveTimeout)) {
			done = append(done, *r)
			r = nil
		}
		if r == nil {
			r = &gtRecord{key: gtKey{session: k.session, vlan: k.vlan, src: k.src, dst: k.dst, proto: k.proto,
				sport: k.sport, dport: k.dport, ifIndex: erspan.Index, tcp: l4 == layers.LayerTypeTCP}, first: ts}
			open[k] = r
		}
		r.last = ts
		r.packets++
		r.bytes += ipLen
		if l4 == layers.LayerTypeTCP {
			// A retransmission: a segment whose sequence space ends at or
			// before the highest end this direction has sent.
			segLen := uint32(len(tcp.Payload))
			if tcp.SYN {
				segLen++
			}
			if tcp.FIN {
				segLen++
			}
			if segLen > 0 {
				end := tcp.Seq + segLen
				if !seqInit[k] {
					seqInit[k], highest[k] = true, end
				} else if int32(end-highest[k]) <= 0 {
					r.retrans++
				} else {
					highest[k] = end
				}
			}
			c := canonConn(k.src, k.dst, k.sport, k.dport)
			h := hs[c]
			if h == nil {
				h = &handshake{}
				hs[c] = h
			}
			switch {
			case tcp.SYN && !tcp.ACK:
				h.syn = ts
			case tcp.SYN && tcp.ACK:
				h.synack = ts
			case tcp.ACK && h.synack != 0 && h.ack == 0:
				h.ack = ts
			}
		}
	}
	for _, r := range open {
		done = append(done, *r)
	}
	return done, hs, n
}

// party names an address as the summary must: the estate's VM, or the address.
func party(e *Estate, a netip.Addr) Party {
	if vm := e.VMByAddr(a); vm != nil {
		return Party{Name: vm.Name, Project: vm.Project.Name, VM: true}
	}
	return Party{Name: a.String()}
}

// expectedSummary is the summary the ground truth gives.
func expectedSummary(e *Estate, recs []gtRecord, hs map[connKey]*handshake) *Summary {
	s := &Summary{Directions: map[string]Totals{}}
	convs := map[[2]Party]*Conversation{}
	lines := map[uint32]*Line{}
	projects := map[string]*ProjectTCP{}
	for _, r := range recs {
		t := Totals{Flows: 1, Packets: r.packets, Bytes: r.bytes}
		addTo := func(x *Totals) { x.Flows += t.Flows; x.Packets += t.Packets; x.Bytes += t.Bytes }
		addTo(&s.Total)
		dir := "unknown"
		switch in1, in2 := e.Internal(r.key.src), e.Internal(r.key.dst); {
		case in1 && in2:
			dir = "east-west"
		case in1 || in2:
			dir = "north-south"
		}
		d := s.Directions[dir]
		addTo(&d)
		s.Directions[dir] = d
		a, b := party(e, r.key.src), party(e, r.key.dst)
		if a.VM || b.VM {
			s.WithVM++
			if partyLess(b, a) {
				a, b = b, a
			}
			c := convs[[2]Party{a, b}]
			if c == nil {
				c = &Conversation{A: a, B: b}
				convs[[2]Party{a, b}] = c
			}
			addTo(&c.Totals)
		}
		l := lines[r.key.ifIndex]
		if l == nil {
			l = &Line{Exporter: "127.0.0.1", ID: fmt.Sprint(r.key.ifIndex), Name: e.HostByIfIndex(r.key.ifIndex).LineName()}
			lines[r.key.ifIndex] = l
		}
		addTo(&l.Totals)
		if r.key.tcp {
			var rtt time.Duration
			if h := hs[canonConn(r.key.src, r.key.dst, r.key.sport, r.key.dport)]; h != nil && h.syn != 0 && h.synack != 0 && h.ack != 0 {
				rtt = time.Duration(h.ack-h.syn) / time.Microsecond * time.Microsecond
			}
			seen := map[string]bool{}
			for _, a := range []netip.Addr{r.key.src, r.key.dst} {
				vm := e.VMByAddr(a)
				if vm == nil || seen[vm.Project.Name] {
					continue
				}
				seen[vm.Project.Name] = true
				p := projects[vm.Project.Name]
				if p == nil {
					p = &ProjectTCP{Project: vm.Project.Name}
					projects[vm.Project.Name] = p
				}
				p.Flows++
				p.Packets += r.packets
				p.Retransmissions += r.retrans
				if rtt > 0 {
					p.RTTFlows++
					p.RTTSum += rtt
				}
			}
		}
	}
	finish(s, convs, lines, projects)
	return s
}

// goroutinesSettle waits for the goroutine count to come back to before,
// and dumps the stacks when it does not.
func goroutinesSettle(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Errorf("%d goroutines left running (%d before the demo):\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// portsFree checks that the run's ports can be bound again.
func portsFree(t *testing.T, res *Result) {
	t.Helper()
	if c, err := net.ListenPacket("udp", res.CollectorAddr); err != nil {
		t.Errorf("IPFIX port still held after the demo: %v", err)
	} else {
		c.Close()
	}
	u := strings.TrimPrefix(strings.TrimSuffix(res.VCenterURL, "/sdk"), "http://")
	if l, err := net.Listen("tcp", u); err != nil {
		t.Errorf("vCenter port still held after the demo: %v", err)
	} else {
		l.Close()
	}
}

func testConfiguration(t *testing.T) Configuration {
	cfg := DefaultConfiguration()
	cfg.Duration, cfg.Rate = 10*time.Second, 3000
	cfg.Port, cfg.VCenterPort = 0, 0
	cfg.Output = filepath.Join(t.TempDir(), "flows.ndjson")
	return cfg
}

// lineWithFields reports whether out has a line made of exactly these
// fields (spaces between them do not matter).
func lineWithFields(out string, fields ...string) bool {
	want := strings.Join(fields, " ")
	for _, l := range strings.Split(out, "\n") {
		if strings.Join(strings.Fields(l), " ") == want {
			return true
		}
	}
	return false
}

func TestDemoMatchesGroundTruth(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 10 s of traffic: skipped under -short")
	}
	before := runtime.NumGoroutine()
	cfg := testConfiguration(t)
	cfg.ObservationDomain = 4242
	cfg.ActiveTimeout = 4 * time.Second // the replication stream is reported in several records
	// An earlier run's document in the file: appended to, not counted.
	earlier := `{"event":{"kind":"event"},"netflow":{"observation_domain_id":1},"network":{"bytes":5,"packets":1},"source":{"ip":"10.10.110.11"},"destination":{"ip":"10.0.0.53"}}` + "\n"
	if err := os.WriteFile(cfg.Output, []byte(earlier), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	res, err := Run(context.Background(), reporter.NewForTest(nil), cfg, Streams{Out: &out, Err: &errOut})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, errOut.String())
	}
	t.Logf("stderr:\n%s\nstdout:\n%s", errOut.String(), out.String())
	goroutinesSettle(t, before)
	portsFree(t, res)

	recs, hs, packets := groundTruth(t, res)
	if res.Exporter.Frames != uint64(packets) {
		t.Errorf("exporter read %d packets, the traffic has %d", res.Exporter.Frames, packets)
	}
	if res.Exporter.NotDecodable() != 0 {
		t.Errorf("%d packets not decodable", res.Exporter.NotDecodable())
	}
	want := expectedSummary(res.Estate, recs, hs)
	want.Domains, want.Other = map[uint64]bool{4242: true}, 1

	// Every document: VM, host, cluster, port group and project for the
	// VM ends, nothing for the others.
	f, err := os.Open(cfg.Output)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	bad := 0
	for n := 1; sc.Scan(); n++ {
		var d document
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		if n == 1 || d.Event.Kind != "event" {
			continue // the earlier run's, or exporter statistics
		}
		for _, e := range []*endDoc{&d.Source, &d.Destination} {
			a := netip.MustParseAddr(e.IP)
			vm := res.Estate.VMByAddr(a)
			var got, exp []string
			if e.VSphere != nil {
				got = []string{e.VSphere.VM.Name, e.VSphere.Project, e.VSphere.Host.Name, e.VSphere.Cluster.Name, e.VSphere.Network.Name}
			}
			if vm != nil {
				exp = []string{vm.Name, vm.Project.Name, vm.Host.Name, vm.Host.Cluster, vm.Project.PortGroup}
			}
			if d := cmp.Diff(got, exp); d != "" && bad < 10 {
				bad++
				t.Errorf("line %d, %s: vsphere (-got, +want):\n%s", n, a, d)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}

	got, err := Summarize(cfg.Output, 4242)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(got, want); d != "" {
		t.Errorf("flows written (-got, +ground truth):\n%s", d)
	}
	if d := cmp.Diff(res.Summary, got); d != "" {
		t.Errorf("summary printed differs from the file (-printed, +file):\n%s", d)
	}

	// The printed summary shows the ground truth's numbers.
	text := out.String()
	if !strings.Contains(text, "also holds 1 documents of earlier runs") {
		t.Errorf("summary does not say the file holds an earlier run's document")
	}
	if !strings.Contains(text, Group(want.Total.Flows)+" flow documents") {
		t.Errorf("summary does not say %s flow documents", Group(want.Total.Flows))
	}
	for i, c := range want.Conversation[:min(topRows, len(want.Conversation))] {
		fields := append([]string{Group(c.Bytes), Group(c.Packets), Group(c.Flows)}, strings.Fields(c.A.String()+" ↔ "+c.B.String())...)
		if !lineWithFields(text, fields...) {
			t.Errorf("conversation %d not printed: %q", i+1, strings.Join(fields, " "))
		}
	}
	for dir, tot := range want.Directions {
		share := 100 * float64(tot.Bytes) / float64(want.Total.Bytes)
		if !lineWithFields(text, dir, Percent(share), Group(tot.Bytes), Group(tot.Packets), Group(tot.Flows)) {
			t.Errorf("direction %s not printed with %s of the bytes, %d bytes", dir, Percent(share), tot.Bytes)
		}
	}
	for _, l := range want.Lines[:min(topRows, len(want.Lines))] {
		fields := append([]string{Group(l.Bytes), Group(l.Packets), Group(l.Flows)}, strings.Fields(l.Label())...)
		if !lineWithFields(text, fields...) {
			t.Errorf("line not printed: %q", strings.Join(fields, " "))
		}
	}
	for _, p := range want.Projects {
		fields := append([]string{p.Project, Group(p.Flows)}, strings.Fields(Millis(p.AvgRTT()))...)
		fields = append(fields, Group(p.Retransmissions), Percent(p.RetransmissionRate()))
		if !lineWithFields(text, fields...) {
			t.Errorf("project not printed: %q", strings.Join(fields, " "))
		}
	}
	// The traffic is what the demo says it is.
	if want.Directions["north-south"].Flows == 0 || want.Directions["east-west"].Flows == 0 {
		t.Errorf("want both east-west and north-south traffic: %v", want.Directions)
	}
	if c := want.Conversation; !slicesContainsFlows(c, "pay-db-01", "pay-db-02", 6) {
		t.Errorf("want the replication stream in 6 records (active timeout), got %+v", c)
	}
	retrans := uint64(0)
	for _, p := range want.Projects {
		retrans += p.Retransmissions
	}
	if len(want.Projects) != 3 || retrans == 0 {
		t.Errorf("want TCP in 3 projects with retransmissions: %+v", want.Projects)
	}
}

func slicesContainsFlows(cs []Conversation, a, b string, flows uint64) bool {
	for _, c := range cs {
		if c.A.Name == a && c.B.Name == b {
			return c.Flows == flows
		}
	}
	return false
}
