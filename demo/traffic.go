package demo

import (
	"container/heap"
	"context"
	"io"
	"math/rand/v2"
	"net/netip"
	"sort"
	"sync/atomic"
	"time"

	"github.com/spanflow/spanflow/exporter/capture"
	"github.com/spanflow/spanflow/exporter/synth"
)

// The demo's traffic: sessions between the estate's VMs and their peers,
// as the probe receives them (each host mirrors its uplink in ERSPAN II).
// The generator is deterministic for a seed, rate and duration, and
// streams: only the sessions in progress are in memory, whatever the
// duration.

// TrafficConfiguration says how much traffic to make.
type TrafficConfiguration struct {
	Seed     uint64
	Rate     int           // packets per second, on average
	Duration time.Duration // no session starts after Duration-sessionTail
	Base     time.Time     // time origin of the schedule
}

// sessionTail is the longest a session lasts: none starts later than this
// before the end, so the traffic ends within the duration.
const sessionTail = 1500 * time.Millisecond

// Packet is one mirrored frame.
type Packet struct {
	Time  int64  // ns since the epoch
	Frame []byte // Ethernet / IPv4 / GRE / ERSPAN II / Ethernet / 802.1Q / IP
}

type endpoint struct {
	addr netip.Addr
	mac  [6]byte
}

// pkt is one packet of a session, from its A (client) or B side.
type pkt struct {
	at       int64 // ns after the schedule's origin
	fromA    bool
	flags    uint8
	seq, ack uint32
	payload  int
	icmpType uint8
}

type conn struct {
	a, b         endpoint
	sport, dport uint16
	proto        uint8
	host         *Host  // whose uplink mirrors the session
	vlan         uint16 // port group VLAN of the mirrored VM
	pkts         []pkt
	next         int
}

type connHeap []*conn

func (h connHeap) Len() int           { return len(h) }
func (h connHeap) Less(i, j int) bool { return h[i].pkts[h[i].next].at < h[j].pkts[h[j].next].at }
func (h connHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *connHeap) Push(x any)        { *h = append(*h, x.(*conn)) }
func (h *connHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	*h = old[:len(old)-1]
	return s
}

// Traffic generates the packets.
type Traffic struct {
	e      *Estate
	cfg    TrafficConfiguration
	rng    *rand.Rand
	base   int64
	cursor int64 // start of the next session, ns after base
	end    int64 // no session starts at or after this
	step   float64

	started bool
	pending *conn
	active  connHeap
	ports   map[netip.Addr]uint16
	greSeq  uint32
	ipID    uint16

	roles map[string][]*VM
}

// NewTraffic returns a generator for the estate.
func NewTraffic(e *Estate, cfg TrafficConfiguration) *Traffic {
	g := &Traffic{e: e, cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x5eed)),
		base: cfg.Base.UnixNano(), end: int64(cfg.Duration - sessionTail),
		step: float64(time.Second) / float64(max(cfg.Rate, 1)), ports: map[netip.Addr]uint16{}, roles: map[string][]*VM{}}
	for _, vm := range e.VMs {
		role := vm.Name[:len(vm.Name)-3] // pay-api-01 -> pay-api
		g.roles[role] = append(g.roles[role], vm)
	}
	return g
}

// Next fills p with the next packet in time order; false at the end.
func (g *Traffic) Next(p *Packet) bool {
	if !g.started {
		g.started = true
		g.pending = g.replication()
	}
	for g.pending != nil && (len(g.active) == 0 || g.pending.pkts[0].at <= g.active[0].pkts[g.active[0].next].at) {
		heap.Push(&g.active, g.pending)
		g.pending = g.newSession()
	}
	if len(g.active) == 0 {
		return false
	}
	s := g.active[0]
	k := s.pkts[s.next]
	s.next++
	if s.next == len(s.pkts) {
		heap.Pop(&g.active)
	} else {
		heap.Fix(&g.active, 0)
	}
	p.Time = g.base + k.at
	p.Frame = g.frame(s, &k)
	return true
}

// frame builds the mirrored frame of k.
func (g *Traffic) frame(s *conn, k *pkt) []byte {
	src, dst, sport, dport := s.a, s.b, s.sport, s.dport
	if !k.fromA {
		src, dst, sport, dport = s.b, s.a, s.dport, s.sport
	}
	var l4 []byte
	switch s.proto {
	case 6:
		l4 = synth.TCP(sport, dport, k.seq, k.ack, k.flags, 65535, k.payload)
	case 17:
		l4 = synth.UDP(sport, dport, make([]byte, k.payload))
	default:
		l4 = synth.ICMP(k.icmpType, 0, k.payload)
	}
	var ip []byte
	etherType := uint16(0x0800)
	if src.addr.Is4() {
		g.ipID++
		ip = synth.IPv4(src.addr, dst.addr, s.proto, 0, g.ipID, 0, false, l4)
	} else {
		etherType = 0x86dd
		ip = synth.IPv6(src.addr, dst.addr, s.proto, 0, l4)
	}
	inner := synth.Ethernet(src.mac, dst.mac, []synth.Tag{{TPID: 0x8100, VID: s.vlan}}, etherType, ip)
	g.greSeq++
	seq := g.greSeq
	gre := synth.GRE(0x88be, nil, &seq, synth.ERSPAN2(s.host.Session, s.vlan, s.host.IfIndex, inner))
	g.ipID++
	outer := synth.IPv4(s.host.Vmk, g.e.ProbeAddr, 47, 0, g.ipID, 0, false, gre)
	hostMAC := [6]byte{0x00, 0x50, 0x56, 0x0f, 0x00, byte(s.host.Session)}
	return synth.Ethernet(hostMAC, g.e.ProbeMAC, nil, 0x0800, outer)
}

// Helpers to draw values.
func (g *Traffic) between(lo, hi int) int  { return lo + g.rng.IntN(hi-lo+1) }
func (g *Traffic) chance(percent int) bool { return g.rng.IntN(100) < percent }
func (g *Traffic) pick(role string) *VM {
	vms := g.roles[role]
	return vms[g.rng.IntN(len(vms))]
}
func us(n int) int64 { return int64(n) * int64(time.Microsecond) }

// port returns the next ephemeral port of a client address.
func (g *Traffic) port(a netip.Addr) uint16 {
	p := g.ports[a]
	if p < 32768 || p >= 60999 {
		p = 32768 + uint16(g.rng.IntN(2000))
	}
	p++
	g.ports[a] = p
	return p
}

func (g *Traffic) vmEnd(vm *VM, v6 bool) endpoint {
	if v6 && vm.IPv6.IsValid() {
		return endpoint{vm.IPv6, vm.MAC}
	}
	return endpoint{vm.IPv4, vm.MAC}
}

// peerEnd is an address behind the router: frames carry the gateway's MAC.
func (g *Traffic) peerEnd(a netip.Addr) endpoint { return endpoint{a, g.e.GatewayMAC} }

// vmPair returns both ends; v6 when asked and both VMs have IPv6.
func (g *Traffic) vmPair(a, b *VM, v6 bool) (endpoint, endpoint) {
	v6 = v6 && a.IPv6.IsValid() && b.IPv6.IsValid()
	ea, eb := g.vmEnd(a, v6), g.vmEnd(b, v6)
	if a.Project != b.Project {
		// Routed between project networks: each side sees the gateway.
		ea.mac, eb.mac = a.MAC, g.e.GatewayMAC
	}
	return ea, eb
}

// kinds of sessions and their weights.
var sessionKinds = []struct {
	weight int
	make   func(g *Traffic, t0 int64) *conn
}{
	{30, (*Traffic).webNorthSouth},
	{3, (*Traffic).portScan},
	{14, (*Traffic).webToApp},
	{9, (*Traffic).appToPayments},
	{13, (*Traffic).paymentsDB},
	{8, (*Traffic).paymentsCache},
	{4, (*Traffic).paymentsPartner},
	{6, (*Traffic).batchTransfer},
	{2, (*Traffic).batchBackup},
	{12, (*Traffic).dns},
	{2, (*Traffic).ntp},
	{3, (*Traffic).ping},
}

func (g *Traffic) newSession() *conn {
	if g.cursor >= g.end {
		return nil
	}
	total := 0
	for _, k := range sessionKinds {
		total += k.weight
	}
	w := g.rng.IntN(total)
	var s *conn
	for _, k := range sessionKinds {
		if w < k.weight {
			s = k.make(g, g.cursor)
			break
		}
		w -= k.weight
	}
	// Sessions start at the pace that gives the configured packet rate.
	g.cursor += int64(float64(len(s.pkts)) * g.step * (0.5 + g.rng.Float64()))
	sort.SliceStable(s.pkts, func(i, j int) bool { return s.pkts[i].at < s.pkts[j].at })
	return s
}

// tcpShape is how one TCP session goes.
type tcpShape struct {
	rttServer, rttClient int64 // SYN→SYN-ACK and SYN-ACK→ACK as the probe sees them
	think                int64 // server time before answering
	gap                  int64 // between back-to-back segments
	reqSegs, reqSize     int   // client data
	respSegs, respSize   int   // server data
	retransA, retransB   int   // segments the client / server sends twice
}

// tcp builds a session: handshake, the client's request, the server's
// answer (each side acknowledging every second segment), retransmissions
// of the first segments when asked, FIN from both sides and the last ACK.
func (g *Traffic) tcp(t0 int64, host *Host, vlan uint16, a, b endpoint, dport uint16, sh tcpShape) *conn {
	s := &conn{a: a, b: b, sport: g.port(a.addr), dport: dport, proto: 6, host: host, vlan: vlan}
	seqA, seqB := g.rng.Uint32(), g.rng.Uint32()
	add := func(at int64, fromA bool, flags uint8, seq, ack uint32, n int) {
		s.pkts = append(s.pkts, pkt{at: at, fromA: fromA, flags: flags, seq: seq, ack: ack, payload: n})
	}
	t := t0
	add(t, true, 0x02, seqA, 0, 0)
	t += sh.rttServer
	add(t, false, 0x12, seqB, seqA+1, 0)
	t += sh.rttClient
	add(t, true, 0x10, seqA+1, seqB+1, 0)
	nextA, nextB := seqA+1, seqB+1
	// data sends n segments of size from one side, acknowledged by the
	// other side's latency later; retrans of the first segments are sent
	// again after the last one.
	data := func(fromA bool, n, size, retrans int, lat int64) {
		next, other := &nextA, &nextB
		if !fromA {
			next, other = &nextB, &nextA
		}
		first := *next
		for i := 0; i < n; i++ {
			t += sh.gap
			add(t, fromA, 0x18, *next, 0, size)
			*next += uint32(size)
			if i%2 == 1 || i == n-1 {
				// The ACK carries its sender's next sequence number, as
				// TCP's do: a meter reads sequence space from ACKs too.
				add(t+lat, !fromA, 0x10, *other, *next, 0)
			}
		}
		for i := 0; i < retrans && i < n; i++ {
			t += sh.gap
			add(t, fromA, 0x18, first+uint32(i*size), 0, size)
		}
		t += lat
	}
	data(true, sh.reqSegs, sh.reqSize, sh.retransA, sh.rttServer)
	t += sh.think
	data(false, sh.respSegs, sh.respSize, sh.retransB, sh.rttClient)
	t += sh.gap
	add(t, true, 0x11, nextA, nextB, 0)
	t += sh.rttServer
	add(t, false, 0x11, nextB, nextA+1, 0)
	t += sh.rttClient
	add(t, true, 0x10, nextA+1, nextB+1, 0)
	return s
}

func (g *Traffic) internetClient() netip.Addr {
	return g.e.InternetClients[g.rng.IntN(len(g.e.InternetClients))]
}

// webNorthSouth: a client on the internet loads a page from a web VM; the
// probe sees it at the web VM's host, so the internet RTT is on the client
// side of the handshake.
func (g *Traffic) webNorthSouth(t0 int64) *conn {
	web := g.pick("web")
	c := g.internetClient()
	b := g.vmEnd(web, c.Is6())
	a := g.peerEnd(c)
	sh := tcpShape{rttServer: us(g.between(60, 250)), rttClient: us(g.between(15000, 90000)), think: us(g.between(500, 4000)),
		gap: us(g.between(40, 150)), reqSegs: 1, reqSize: g.between(300, 900), respSegs: g.between(3, 14), respSize: 1400}
	if g.chance(8) {
		sh.retransB = g.between(1, 2)
	}
	return g.tcp(t0, web.Host, web.Project.VLAN, a, b, 443, sh)
}

// portScan: a SYN from the internet answered by a RST.
func (g *Traffic) portScan(t0 int64) *conn {
	web := g.pick("web")
	c := g.internetClient()
	a, b := g.peerEnd(c), g.vmEnd(web, c.Is6())
	s := &conn{a: a, b: b, sport: g.port(c), dport: []uint16{22, 23, 3389, 5900}[g.rng.IntN(4)], proto: 6, host: web.Host, vlan: web.Project.VLAN}
	seq := g.rng.Uint32()
	s.pkts = []pkt{{at: t0, fromA: true, flags: 0x02, seq: seq}, {at: t0 + us(g.between(50, 200)), flags: 0x14, ack: seq + 1}}
	return s
}

func (g *Traffic) webToApp(t0 int64) *conn {
	web, app := g.pick("web"), g.pick("portal-app")
	a, b := g.vmPair(web, app, g.chance(40))
	sh := tcpShape{rttServer: us(g.between(150, 600)), rttClient: us(g.between(20, 80)), think: us(g.between(800, 6000)),
		gap: us(g.between(20, 80)), reqSegs: 1, reqSize: g.between(300, 1200), respSegs: g.between(1, 6), respSize: 1400}
	return g.tcp(t0, web.Host, web.Project.VLAN, a, b, 8080, sh)
}

func (g *Traffic) appToPayments(t0 int64) *conn {
	app, api := g.pick("portal-app"), g.pick("pay-api")
	a, b := g.vmPair(app, api, g.chance(30))
	sh := tcpShape{rttServer: us(g.between(300, 900)), rttClient: us(g.between(20, 80)), think: us(g.between(2000, 15000)),
		gap: us(g.between(20, 80)), reqSegs: 1, reqSize: g.between(400, 1400), respSegs: g.between(1, 3), respSize: g.between(200, 1400)}
	if g.chance(3) {
		sh.retransA = 1
	}
	return g.tcp(t0, app.Host, app.Project.VLAN, a, b, 8443, sh)
}

func (g *Traffic) paymentsDB(t0 int64) *conn {
	api, db := g.pick("pay-api"), g.pick("pay-db")
	a, b := g.vmPair(api, db, false)
	sh := tcpShape{rttServer: us(g.between(150, 450)), rttClient: us(g.between(15, 60)), think: us(g.between(300, 8000)),
		gap: us(g.between(15, 60)), reqSegs: g.between(1, 2), reqSize: g.between(150, 900), respSegs: g.between(1, 6), respSize: 1400}
	if g.chance(2) {
		sh.retransB = 1
	}
	return g.tcp(t0, api.Host, api.Project.VLAN, a, b, 5432, sh)
}

func (g *Traffic) paymentsCache(t0 int64) *conn {
	api, cache := g.pick("pay-api"), g.pick("pay-cache")
	a, b := g.vmPair(api, cache, false)
	sh := tcpShape{rttServer: us(g.between(80, 250)), rttClient: us(g.between(10, 40)), think: us(g.between(50, 300)),
		gap: us(g.between(10, 40)), reqSegs: 1, reqSize: g.between(40, 200), respSegs: 1, respSize: g.between(100, 1400)}
	return g.tcp(t0, api.Host, api.Project.VLAN, a, b, 6379, sh)
}

func (g *Traffic) paymentsPartner(t0 int64) *conn {
	api := g.pick("pay-api")
	a, b := g.vmEnd(api, false), g.peerEnd(g.e.Partner)
	sh := tcpShape{rttServer: us(g.between(12000, 28000)), rttClient: us(g.between(15, 60)), think: us(g.between(5000, 40000)),
		gap: us(g.between(30, 90)), reqSegs: g.between(1, 2), reqSize: g.between(500, 1400), respSegs: g.between(1, 2), respSize: g.between(300, 1400)}
	if g.chance(15) {
		sh.retransA = 1
	}
	return g.tcp(t0, api.Host, api.Project.VLAN, a, b, 443, sh)
}

func (g *Traffic) batchTransfer(t0 int64) *conn {
	w, etl := g.pick("batch-worker"), g.pick("etl")
	a, b := g.vmPair(w, etl, false)
	sh := tcpShape{rttServer: us(g.between(300, 1500)), rttClient: us(g.between(20, 100)), think: us(g.between(100, 1000)),
		gap: us(g.between(30, 120)), reqSegs: g.between(20, 90), reqSize: 1400, respSegs: 1, respSize: 64}
	if g.chance(25) {
		sh.retransA = g.between(1, 4)
	}
	return g.tcp(t0, w.Host, w.Project.VLAN, a, b, 9000, sh)
}

func (g *Traffic) batchBackup(t0 int64) *conn {
	etl := g.pick("etl")
	a, b := g.vmEnd(etl, false), g.peerEnd(g.e.ObjectStore)
	sh := tcpShape{rttServer: us(g.between(8000, 16000)), rttClient: us(g.between(20, 80)), think: us(g.between(1000, 5000)),
		gap: us(g.between(40, 120)), reqSegs: g.between(40, 120), reqSize: 1400, respSegs: 1, respSize: g.between(200, 400)}
	if g.chance(12) {
		sh.retransA = g.between(1, 3)
	}
	return g.tcp(t0, etl.Host, etl.Project.VLAN, a, b, 443, sh)
}

// udp is a request and its answer.
func (g *Traffic) udp(t0 int64, vm *VM, server netip.Addr, dport uint16, req, resp int, lat int64) *conn {
	a, b := g.vmEnd(vm, false), g.peerEnd(server)
	s := &conn{a: a, b: b, sport: g.port(a.addr), dport: dport, proto: 17, host: vm.Host, vlan: vm.Project.VLAN}
	s.pkts = []pkt{{at: t0, fromA: true, payload: req}, {at: t0 + lat, payload: resp}}
	return s
}

func (g *Traffic) anyVM() *VM { return g.e.VMs[g.rng.IntN(len(g.e.VMs))] }

func (g *Traffic) dns(t0 int64) *conn {
	return g.udp(t0, g.anyVM(), g.e.DNS, 53, g.between(30, 60), g.between(60, 300), us(g.between(200, 2000)))
}

func (g *Traffic) ntp(t0 int64) *conn {
	return g.udp(t0, g.anyVM(), g.e.NTP, 123, 48, 48, us(g.between(200, 800)))
}

// ping: the scheduler checks a worker (IPv4), or a portal app a web VM (IPv6).
func (g *Traffic) ping(t0 int64) *conn {
	var from, to *VM
	v6 := g.chance(50)
	if v6 {
		from, to = g.pick("portal-app"), g.pick("web")
	} else {
		from, to = g.pick("batch-sched"), g.pick("batch-worker")
	}
	a, b := g.vmPair(from, to, v6)
	proto, req, rep := uint8(1), uint8(8), uint8(0)
	if v6 {
		proto, req, rep = 58, 128, 129
	}
	s := &conn{a: a, b: b, proto: proto, host: from.Host, vlan: from.Project.VLAN}
	for i := 0; i < 3; i++ {
		at := t0 + int64(i)*int64(200*time.Millisecond)
		s.pkts = append(s.pkts, pkt{at: at, fromA: true, icmpType: req, payload: 56}, pkt{at: at + us(g.between(80, 300)), icmpType: rep, payload: 56})
	}
	return s
}

// replication is one long TCP connection from the primary database to its
// replica for the whole run: it crosses the active timeout, so it is
// reported in several records.
func (g *Traffic) replication() *conn {
	p, r := g.roles["pay-db"][0], g.roles["pay-db"][1]
	a, b := g.vmPair(p, r, false)
	t0 := int64(50 * time.Millisecond)
	n := int((time.Duration(g.end) - 100*time.Millisecond) / (40 * time.Millisecond))
	sh := tcpShape{rttServer: us(180), rttClient: us(25), gap: int64(40 * time.Millisecond),
		reqSegs: max(n, 1), reqSize: 1200, respSegs: 1, respSize: 32}
	s := g.tcp(t0, p.Host, p.Project.VLAN, a, b, 5432, sh)
	sort.SliceStable(s.pkts, func(i, j int) bool { return s.pkts[i].at < s.pkts[j].at })
	return s
}

// pacedSource plays the traffic in real time as a capture source: each
// frame is returned when the wall clock reaches its time (the schedule's
// origin is when the source was made), and Next returns io.EOF at the
// traffic's end or when ctx is cancelled.
type pacedSource struct {
	ctx     context.Context
	g       *Traffic
	copy    *pcapWriter // nil, or where every frame is also written
	wall    time.Time
	p       Packet
	packets atomic.Uint64
	bytes   atomic.Uint64
}

var _ capture.Source = (*pacedSource)(nil)

func newPacedSource(ctx context.Context, g *Traffic) *pacedSource {
	return &pacedSource{ctx: ctx, g: g, wall: time.Unix(0, g.base)}
}

func (s *pacedSource) Next(f *capture.Frame) error {
	if s.ctx.Err() != nil || !s.g.Next(&s.p) {
		return io.EOF
	}
	// Sleep only when more than 2 ms ahead: a timer per packet would cost
	// more than the pipeline it feeds.
	if wait := time.Until(time.Unix(0, s.p.Time)); wait > 2*time.Millisecond {
		t := time.NewTimer(wait)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return io.EOF
		case <-t.C:
		}
	}
	f.Data, f.Timestamp, f.Length, f.LinkType = s.p.Frame, s.p.Time, len(s.p.Frame), 1
	if s.copy != nil {
		s.copy.write(s.p.Time, s.p.Frame)
	}
	s.packets.Add(1)
	s.bytes.Add(uint64(len(s.p.Frame)))
	return nil
}

func (s *pacedSource) Close() error { return nil }
