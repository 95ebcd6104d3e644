//go:build linux && cgo

package capture_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"golang.org/x/sys/unix"

	"github.com/spanflow/spanflow/exporter"
	"github.com/spanflow/spanflow/exporter/capture"
	"github.com/spanflow/spanflow/exporter/internal/verify"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// netns is a network namespace holding a veth pair: frames replayed into
// "vA" arrive on "vB", where the exporter captures.
type netns struct{ name string }

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newNetns creates the namespace and its veth pair; it is deleted when the
// test ends, failed or not. IPv6 is off so that the kernel sends nothing
// of its own (router solicitations) on the pair.
func newNetns(t *testing.T) *netns {
	t.Helper()
	testutil.Root(t)
	testutil.Command(t, "ip")
	n := &netns{name: fmt.Sprintf("sfcap-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)}
	run(t, "ip", "netns", "add", n.name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.name).Run() })
	run(t, "ip", "netns", "exec", n.name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	run(t, "ip", "-n", n.name, "link", "add", "vA", "type", "veth", "peer", "name", "vB")
	run(t, "ip", "-n", n.name, "link", "add", "vC", "type", "veth", "peer", "name", "vD")
	for _, l := range []string{"vA", "vB", "vC", "vD", "lo"} {
		if l != "lo" {
			run(t, "ip", "-n", n.name, "link", "set", l, "mtu", "9000")
		}
		run(t, "ip", "-n", n.name, "link", "set", l, "up")
	}
	return n
}

// ifIndex is the index of interface name in the namespace.
func (n *netns) ifIndex(t *testing.T, name string) uint32 {
	t.Helper()
	var i *net.Interface
	var err error
	n.do(t, func() { i, err = net.InterfaceByName(name) })
	if err != nil {
		t.Fatal(err)
	}
	return uint32(i.Index)
}

// do runs fn with the calling thread in the namespace: sockets it opens
// belong to the namespace for good.
func (n *netns) do(t *testing.T, fn func()) {
	t.Helper()
	if err := n.run(fn); err != nil {
		t.Fatal(err)
	}
}

// run calls fn on a thread in the namespace.
func (n *netns) run(fn func()) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return err
	}
	defer orig.Close()
	target, err := os.Open(filepath.Join("/var/run/netns", n.name))
	if err != nil {
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return err
	}
	defer func() {
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			panic(err) // the thread must not go back to the pool in the namespace
		}
	}()
	fn()
	return nil
}

// replay sends the capture into vA (and the other given interfaces) at
// tcpreplay's top speed.
func (n *netns) replay(t *testing.T, pcap string, ifaces ...string) {
	t.Helper()
	tcpreplay := testutil.Command(t, "tcpreplay")
	if len(ifaces) == 0 {
		ifaces = []string{"vA"}
	}
	for _, i := range ifaces {
		run(t, "ip", "netns", "exec", n.name, tcpreplay, "-q", "--topspeed", "-i", i, pcap)
	}
}

// collector is a UDP socket gathering IPFIX messages.
type collector struct {
	conn *net.UDPConn
	mu   sync.Mutex
	msgs [][]byte
}

func newCollector(t *testing.T) *collector {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadBuffer(8 << 20)
	c := &collector{conn: conn}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			c.mu.Lock()
			c.msgs = append(c.msgs, append([]byte(nil), buf[:n]...))
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *collector) addr() string { return c.conn.LocalAddr().String() }

// wait returns the messages once n arrived (or after 2 s).
func (c *collector) wait(n int) [][]byte {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		c.mu.Lock()
		got := len(c.msgs)
		c.mu.Unlock()
		if got >= n {
			break
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.msgs...)
}

// live normalises flows for a live replay: tcpreplay --topspeed squeezes
// the capture's minutes into milliseconds, so times, end reasons and
// handshake RTTs are those of the replay, and a flow the capture splits on
// its active timeout is one record. What must be equal is everything else,
// per flow key: packets, bytes, flags, TOS, MACs, VLANs, tunnel ids,
// retransmissions and zero windows.
func live(fs []synth.Flow) []synth.Flow {
	merged := map[synth.Flow]*synth.Flow{}
	var order []synth.Flow
	for _, f := range fs {
		k := f
		k.Packets, k.Bytes, k.StartMs, k.EndMs, k.EndReason = 0, 0, 0, 0, 0
		k.RTTClientUs, k.RTTServerUs, k.TCPFlags, k.Retrans, k.ZeroWindows, k.TOS = 0, 0, 0, 0, 0, 0
		m, ok := merged[k]
		if !ok {
			c := k
			m = &c
			merged[k] = m
			order = append(order, k)
		}
		m.Packets += f.Packets
		m.Bytes += f.Bytes
		m.TCPFlags |= f.TCPFlags
		m.Retrans += f.Retrans
		m.ZeroWindows += f.ZeroWindows
		m.TOS = f.TOS
	}
	out := make([]synth.Flow, 0, len(order))
	for _, k := range order {
		out = append(out, *merged[k])
	}
	synth.Sort(out)
	return out
}

// captureLive replays pkts into the namespace's veth while the exporter
// captures on the other end, and returns the flows goflow2 decodes from what
// the collector received.
// wholeFrames drops the synthetic capture's snap lengths: a live capture
// takes whole frames, and a frame cut short before tcpreplay sends it is a
// short frame on the wire, whose IP length beyond it does not count.
func wholeFrames(pkts []synth.Packet) []synth.Packet {
	out := make([]synth.Packet, len(pkts))
	for i, p := range pkts {
		p.SnapLen = 0
		out[i] = p
	}
	return out
}

func captureLive(t *testing.T, pkts []synth.Packet, filter string, ifaces ...string) ([]synth.Flow, exporter.Summary, map[string]uint32) {
	if len(ifaces) == 0 {
		ifaces = []string{"vB"}
	}
	n := newNetns(t)
	pcap := filepath.Join(t.TempDir(), "replay.pcap")
	if err := synth.WritePcapFile(pcap, wholeFrames(pkts)); err != nil {
		t.Fatal(err)
	}
	col := newCollector(t)
	cfg := exporter.DefaultConfiguration()
	cfg.Interfaces, cfg.Filter, cfg.Collectors = ifaces, filter, []string{col.addr()}
	x, err := exporter.New(reporter.NewForTest(os.Stderr), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	lives, err := cfg.Live()
	if err != nil {
		t.Fatal(err)
	}
	var srcs []capture.LiveSource
	n.do(t, func() {
		for _, l := range lives {
			var s *capture.Live
			if s, err = capture.OpenLive(l, 0); err != nil {
				return
			}
			srcs = append(srcs, s)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	var src capture.LiveSource = srcs[0]
	if len(srcs) > 1 {
		src = capture.Merge(srcs...)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan exporter.Summary)
	go func() {
		sum, err := x.Run(ctx, src)
		if err != nil {
			t.Errorf("run: %v", err)
		}
		src.Close()
		done <- sum
	}()
	sent := map[string]string{"vB": "vA", "vD": "vC"}
	var into []string
	for _, i := range ifaces {
		into = append(into, sent[strings.Split(i, "=")[0]])
	}
	n.replay(t, pcap, into...)
	// Every frame the kernel received is read before the run ends.
	// (tcpreplay has returned: the frames are in the ring or read.)
	want := uint64(len(pkts) * len(ifaces))
	last, still := uint64(0), 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		got := x.Frames()
		if got >= want {
			break
		}
		if got == last {
			if still++; still > 50 { // a filter keeps some out
				break
			}
		} else {
			last, still = got, 0
		}
	}
	time.Sleep(200 * time.Millisecond) // frames beyond those replayed would show up
	cancel()
	sum := <-done
	if sum.KernelDropped != 0 {
		t.Errorf("kernel dropped %d frames", sum.KernelDropped)
	}
	msgs := col.wait(int(sum.Messages))
	flows, _, _, err := verify.Goflow2(msgs)
	if err != nil {
		t.Fatal(err)
	}
	checkTemplates(t, msgs, flows)
	index := map[string]uint32{}
	for _, i := range []string{"vB", "vD"} {
		index[i] = n.ifIndex(t, i)
	}
	return flows, sum, index
}

// checkTemplates checks that the live capture's records, which all carry
// an observation point, go in the smallest template that holds them: the
// full one (256/257) only with a VLAN or a segment id, and that tshark
// reads the same flows as goflow2 from every template.
func checkTemplates(t *testing.T, msgs [][]byte, flows []synth.Flow) {
	t.Helper()
	tshark := testutil.Command(t, "tshark")
	full := 0
	for _, m := range msgs {
		for b := m[min(16, len(m)):]; len(b) >= 4; {
			id, n := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
			if n < 4 || n > len(b) {
				break
			}
			if id == 256 || id == 257 {
				full += (n - 4) / map[uint16]int{256: 103, 257: 127}[id]
			}
			b = b[n:]
		}
	}
	wantFull := 0
	for _, f := range flows {
		if f.Session == 0 {
			t.Errorf("flow without an observation point: %+v", f)
		}
		if f.VLAN != 0 || f.InnerVLAN != 0 || f.Segment != 0 {
			wantFull++
		}
	}
	if full != wantFull {
		t.Errorf("%d records in the full templates, want %d (those with a VLAN or a segment id) of %d", full, wantFull, len(flows))
	}
	path := filepath.Join(t.TempDir(), "ipfix.pcap")
	if err := verify.Datagrams(path, msgs, 4739, time.Now()); err != nil {
		t.Fatal(err)
	}
	res, err := verify.Tshark(tshark, path, 4739)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Problems {
		t.Error(p)
	}
	want := append([]synth.Flow(nil), flows...)
	synth.Sort(want)
	synth.Sort(res.Flows)
	if d := testutil.FlowsDiff(res.Flows, want); d != "" {
		t.Errorf("tshark and goflow2 (-tshark +goflow2):\n%s", d)
	}
}

// atPoint is the flows as seen on an interface with observation point id
// point and index ifIndex: flows outside ERSPAN take the point, and
// those whose frames name no interface (all but ERSPAN II's) the index.
func atPoint(fs []synth.Flow, point uint64, ifIndex uint32) []synth.Flow {
	out := append([]synth.Flow(nil), fs...)
	for i := range out {
		if out[i].Session == 0 {
			out[i].Session = point
		}
		if out[i].InIf == 0 {
			out[i].InIf = ifIndex
		}
	}
	return out
}

func TestLiveCaptureEqualsGroundTruth(t *testing.T) {
	c := synth.Mixed(time.Unix(1700000000, 0))
	flows, sum, index := captureLive(t, c.Packets, "")
	if sum.Frames != uint64(len(c.Packets)) {
		t.Errorf("captured %d frames, replayed %d", sum.Frames, len(c.Packets))
	}
	if d := testutil.FlowsDiff(live(flows), live(atPoint(c.Flows, 1024, index["vB"]))); d != "" {
		t.Errorf("flows at the collector (-got +want):\n%s", d)
	}
}

// TestLiveCaptureTwoInterfaces: two mirror ports at once, each its own
// observation point; the same traffic on both makes two sets of flows
// (the ERSPAN ones, whose session id wins, add up).
func TestLiveCaptureTwoInterfaces(t *testing.T) {
	c := synth.Mixed(time.Unix(1700000000, 0))
	flows, sum, index := captureLive(t, c.Packets, "", "vB", "vD=7001")
	if sum.Frames != uint64(2*len(c.Packets)) || sum.KernelDropped != 0 {
		t.Errorf("captured %d frames (%d dropped), replayed %d twice", sum.Frames, sum.KernelDropped, len(c.Packets))
	}
	// An ERSPAN session's flows are one flow whatever port they come in by,
	// so the capture interface they name is the one of their last frame,
	// either (ERSPAN II's own port index stays): left out here.
	anyPort := func(fs []synth.Flow) []synth.Flow {
		for i := range fs {
			if fs[i].Session < capturePointBase && (fs[i].InIf == index["vB"] || fs[i].InIf == index["vD"]) {
				fs[i].InIf = 0
			}
		}
		return fs
	}
	want := live(anyPort(append(atPoint(c.Flows, 1024, index["vB"]), atPoint(c.Flows, 7001, index["vD"])...)))
	got := live(anyPort(flows))
	// The second copy of their TCP segments are retransmissions to the
	// meter, which the ground truth of one copy does not say.
	for _, fs := range [][]synth.Flow{want, got} {
		for i := range fs {
			if fs[i].Session < capturePointBase {
				fs[i].Retrans = 0
			}
		}
	}
	if d := testutil.FlowsDiff(got, want); d != "" {
		t.Errorf("flows at the collector (-got +want):\n%s", d)
	}
}

func TestLiveCaptureERSPAN(t *testing.T) {
	// Every frame of the capture arrives as a vSphere distributed switch
	// sends it in an "encapsulated remote mirroring (L3)" session: ERSPAN
	// type III in GRE in IPv4, session 33.
	c := synth.Mixed(time.Unix(1700000000, 0))
	pkts := make([]synth.Packet, len(c.Packets))
	a, b := netipMust("192.0.2.101"), netipMust("192.0.2.102")
	for i, p := range c.Packets {
		seq := uint32(i)
		frame := p.Data
		outer := synth.IPv4(a, b, 47, 0, uint16(i), 0, false, synth.GRE(0x22eb, nil, &seq, synth.ERSPAN3(33, 0, uint32(i), frame)))
		pkts[i] = synth.Packet{Time: p.Time, Data: synth.Ethernet(synth.MAC(0xe1), synth.MAC(0xe2), nil, 0x0800, outer)}
	}
	// The mirrored frames' own ERSPAN sessions stay (the innermost wins).
	flows, _, index := captureLive(t, pkts, "")
	want := atPoint(c.Flows, 33, index["vB"])
	if d := testutil.FlowsDiff(live(flows), live(want)); d != "" {
		t.Errorf("flows at the collector (-got +want):\n%s", d)
	}
}

func TestLiveCaptureFilter(t *testing.T) {
	// The kernel filter drops plain ICMP and ICMPv6: the ICMP flow inside
	// GRE (key 77) stays, as the filter sees the outer headers.
	c := synth.Mixed(time.Unix(1700000000, 0))
	flows, _, index := captureLive(t, c.Packets, "not icmp and not icmp6")
	var want []synth.Flow
	for _, f := range c.Flows {
		if (f.Proto != 1 && f.Proto != 58) || f.Segment == 77 {
			want = append(want, f)
		}
	}
	if len(want) == len(c.Flows) {
		t.Fatal("the filter would drop nothing")
	}
	if d := testutil.FlowsDiff(live(flows), live(atPoint(want, 1024, index["vB"]))); d != "" {
		t.Errorf("flows at the collector (-got +want):\n%s", d)
	}
}

// TestKernelDropsCounted: a ring of one 1 MiB block that nobody reads
// while a capture of several MiB is replayed into it. The kernel keeps
// what fits and drops the rest; its counters (which reset on each read)
// must add up across reads: every frame sent is received, and the frames
// left to read plus those dropped are exactly those sent.
func TestKernelDropsCounted(t *testing.T) {
	n := newNetns(t)
	const sent = 30000
	pcap := filepath.Join(t.TempDir(), "bulk.pcap")
	if err := synth.WriteBulkFile(pcap, time.Unix(1700000000, 0), sent); err != nil {
		t.Fatal(err)
	}
	var l *capture.Live
	var err error
	n.do(t, func() {
		l, err = capture.OpenLive(capture.LiveConfiguration{Interface: "vB", RingSize: 1 << 20}, 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	n.replay(t, pcap)
	// tcpreplay has returned, but the kernel may still be handing frames
	// to the socket on a loaded machine: wait until it has counted all.
	var first capture.LiveStats
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if first = l.Stats(); first.Received >= sent {
			break
		}
	}
	again := l.Stats()
	if first != again {
		t.Errorf("counters changed between two reads with no traffic: %+v then %+v", first, again)
	}
	if first.Received != sent || first.Dropped == 0 || first.Dropped >= sent {
		t.Fatalf("kernel counted %+v; want %d received, some but not all dropped", first, sent)
	}
	var read uint64
	var f capture.Frame
	for {
		err := l.Next(&f)
		if err == capture.ErrIdle {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		read++
	}
	if read+first.Dropped != sent {
		t.Errorf("read %d frames, the kernel dropped %d: %d, sent %d", read, first.Dropped, read+first.Dropped, sent)
	}
	t.Logf("%d frames read from the ring, %d dropped", read, first.Dropped)
}

// TestLiveLinkDownAndGone: the capture interface goes down, comes back,
// goes down again and is deleted. Down, Next waits (no busy loop: the
// kernel's ENETDOWN on the socket is read and cleared) and the event is
// counted; up again, frames come again; deleted, Next fails with an error
// that says so instead of waiting for ever.
func TestLiveLinkDownAndGone(t *testing.T) {
	n := newNetns(t)
	pcap := filepath.Join(t.TempDir(), "mixed.pcap")
	c := synth.Mixed(time.Unix(1700000000, 0))
	if err := synth.WritePcapFile(pcap, wholeFrames(c.Packets)); err != nil {
		t.Fatal(err)
	}
	var l *capture.Live
	var err error
	// Eight 1 MiB blocks: with a one-block ring, the kernel drops what
	// comes while the reader holds the block (a loaded CI runner lost all
	// but one frame that way).
	n.do(t, func() { l, err = capture.OpenLive(capture.LiveConfiguration{Interface: "vB", RingSize: 8 << 20}, 0) })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var f capture.Frame
	// readFor calls Next for d and counts frames, idles and the first other error.
	readFor := func(d time.Duration) (frames, idles int, err error) {
		for end := time.Now().Add(d); time.Now().Before(end); {
			switch e := l.Next(&f); {
			case e == nil:
				frames++
			case e == capture.ErrIdle:
				idles++
			default:
				return frames, idles, e
			}
		}
		return frames, idles, nil
	}
	// replayAndRead reads until every replayed frame is in, read or
	// counted as dropped by the kernel (a loaded machine may take
	// seconds), then 100 ms more for any extra frame. Some must be read.
	replayAndRead := func(what string) {
		t.Helper()
		before := l.Stats().Dropped
		n.replay(t, pcap)
		frames := 0
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
			switch e := l.Next(&f); {
			case e == nil:
				frames++
			case e == capture.ErrIdle:
				if uint64(frames)+l.Stats().Dropped-before >= uint64(len(c.Packets)) {
					end = time.Now()
				}
			default:
				t.Fatalf("%s: after %d frames: %v", what, frames, e)
			}
		}
		more, _, err := readFor(100 * time.Millisecond)
		frames += more
		dropped := l.Stats().Dropped - before
		if err != nil || frames == 0 || uint64(frames)+dropped != uint64(len(c.Packets)) {
			t.Fatalf("%s: read %d frames (error %v), the kernel dropped %d, replayed %d", what, frames, err, dropped, len(c.Packets))
		}
		if dropped > 0 {
			t.Logf("%s: the kernel dropped %d of %d frames (a loaded machine)", what, dropped, len(c.Packets))
		}
	}
	replayAndRead("before")
	for round := 1; round <= 2; round++ {
		run(t, "ip", "-n", n.name, "link", "set", "vB", "down")
		frames, idles, err := readFor(500 * time.Millisecond)
		if err != nil || frames != 0 || idles > 10 {
			t.Fatalf("down %d: %d frames, %d idle returns in 500 ms (a busy loop?), error %v", round, frames, idles, err)
		}
		if s := l.Stats(); s.LinkDowns != uint64(round) {
			t.Errorf("down %d: %d link downs counted", round, s.LinkDowns)
		}
		if round == 1 {
			run(t, "ip", "-n", n.name, "link", "set", "vB", "up")
			time.Sleep(100 * time.Millisecond)
			replayAndRead("up again")
		}
	}
	// Deleted while down: the kernel raises no error then.
	run(t, "ip", "-n", n.name, "link", "del", "vA")
	_, idles, err := readFor(time.Second)
	if err == nil || !strings.Contains(err.Error(), "vB") || !strings.Contains(err.Error(), "gone") {
		t.Fatalf("after the interface was deleted: error %v after %d idle returns; want one naming vB and saying it is gone", err, idles)
	}
	t.Logf("deleted: %v", err)
}

func TestCompileFilterErrors(t *testing.T) {
	if _, err := capture.CompileFilter("not port 22"); err != nil {
		t.Skipf("no libpcap: %v", err)
	}
	_, err := capture.CompileFilter("port banana")
	if err == nil || strings.Contains(err.Error(), "\n") {
		t.Fatalf("want a one-line error, got %v", err)
	}
}

// TestSIGTERMFlushes runs the real binary, with one capture worker and with
// two (PACKET_FANOUT), and stops it with SIGTERM during the capture.
func TestSIGTERMFlushes(t *testing.T) {
	for _, fanout := range []string{"1", "2"} {
		t.Run("fanout="+fanout, func(t *testing.T) { sigtermFlushes(t, fanout) })
	}
}

func sigtermFlushes(t *testing.T, fanout string) {
	n := newNetns(t)
	bin := filepath.Join(t.TempDir(), "spanflow")
	build := exec.Command("go", "build", "-o", bin, "github.com/spanflow/spanflow/cmd/spanflow")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	c := synth.Mixed(time.Unix(1700000000, 0))
	pcap := filepath.Join(t.TempDir(), "replay.pcap")
	if err := synth.WritePcapFile(pcap, wholeFrames(c.Packets)); err != nil {
		t.Fatal(err)
	}
	// The collector listens in the namespace, where the exporter runs.
	var col *collector
	n.do(t, func() { col = newCollector(t) })
	// Metrics on their default address, 127.0.0.1:9108, in the namespace.
	cmd := exec.Command("ip", "netns", "exec", n.name, bin, "exporter", "run", "--interface", "vB",
		"--collector", col.addr(), "--fanout", fanout)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// The metrics server starts once the rings are open.
	if _, err := n.scrapeWithin(10*time.Second, "127.0.0.1:9108", ""); err != nil {
		t.Fatalf("the exporter never served metrics: %v: %s", err, out.String())
	}
	n.replay(t, pcap)
	// A tick (1 s) publishes the counters; a loaded machine may take more.
	// A scrape reads each series at its own moment (the registry gathers
	// them in parallel), so it waits for both series the replay ends.
	framesLine := fmt.Sprintf("spanflow_decode_frames_total %d\n", len(c.Packets))
	notIPLine := fmt.Sprintf("spanflow_decode_frames_not_ip_total %d\n", c.NotIP)
	metrics, err := n.scrapeWithin(10*time.Second, "127.0.0.1:9108", framesLine, notIPLine)
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.New(strings.NewReader(metrics)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, want := range []string{
		framesLine,
		"spanflow_capture_kernel_drops_total 0\n",
		"spanflow_meter_flows ",
		"spanflow_meter_flows_exported_total",
		notIPLine,
		`spanflow_export_collector_messages_sent_total{collector="` + col.addr() + `",transport="udp"}`,
		`spanflow_export_collector_records_sent_total{collector="` + col.addr() + `",transport="udp"}`,
		`spanflow_export_collector_send_errors_total{collector="` + col.addr() + `",transport="udp"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// The default timeouts (15 s idle, 60 s active) keep every flow in the
	// table: only the flush on SIGTERM exports them.
	if err := cmd.Process.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exporter: %v: %s", err, out.String())
	}
	t.Log(strings.TrimSpace(out.String()))
	if !strings.Contains(out.String(), fmt.Sprintf("%d packets,", len(c.Packets))) || !strings.Contains(out.String(), "0 packets dropped by the kernel") {
		t.Errorf("summary: %s", out.String())
	}
	msgs := col.wait(1 << 30)
	flows, infos, options, err := verify.Goflow2(msgs)
	if err != nil {
		t.Fatal(err)
	}
	vB := n.ifIndex(t, "vB")
	if d := testutil.FlowsDiff(live(flows), live(atPoint(c.Flows, 1024, vB))); d != "" {
		t.Errorf("flows at the collector (-got +want):\n%s", d)
	}
	// Each worker names the capture interface in an interface options
	// record: ingressInterface (10) its index, interfaceName (82) "vB".
	named := 0
	for _, o := range options {
		if _, ok := o[10]; ok {
			if o[10] != uint64(vB) || o[82] != uint64('v')<<8|'B' {
				t.Errorf("interface options record %v, want index %d and name vB", o, vB)
			}
			named++
		}
	}
	if named < 1 {
		t.Errorf("no interface options record names vB (options records: %v)", options)
	}
	// Each worker exports in its own observation domain.
	domains := map[uint32]bool{}
	for _, m := range infos {
		domains[m.Domain] = true
	}
	if fmt.Sprint(len(domains)) != fanout {
		t.Errorf("observation domains %v, want %s", domains, fanout)
	}
	// Both directions of a connection reach the same worker: the
	// handshake RTT, which needs both, is measured.
	for _, f := range flows {
		if f.Proto == 6 && f.SrcPort == 40001 && (f.RTTServerUs == 0 || f.RTTClientUs == 0) {
			t.Errorf("handshake RTT not measured: %+v", f)
		}
	}
}

// scrapeWithin fetches http://addr/metrics from inside the namespace until
// the page contains want, or d has passed; it returns the last page.
func (n *netns) scrapeWithin(d time.Duration, addr string, wants ...string) (string, error) {
	var page string
	var err error
	for end := time.Now().Add(d); ; time.Sleep(50 * time.Millisecond) {
		page, err = n.scrape(addr)
		missing := ""
		for _, want := range wants {
			if err == nil && !strings.Contains(page, want) {
				missing = want
				break
			}
		}
		if err == nil && missing == "" {
			return page, nil
		}
		if time.Now().After(end) {
			if err == nil {
				err = fmt.Errorf("metrics at %s lack %q after %v", addr, strings.TrimSpace(missing), d)
			}
			return page, err
		}
	}
}

// scrape fetches http://addr/metrics once from inside the namespace.
func (n *netns) scrape(addr string) (string, error) {
	var conn net.Conn
	var err error
	if e := n.run(func() { conn, err = net.Dial("tcp", addr) }); e != nil {
		return "", e
	}
	if err != nil {
		return "", fmt.Errorf("metrics: %w", err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", addr)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

const capturePointBase = 1024 // below: ERSPAN session ids

func netipMust(s string) netip.Addr { return netip.MustParseAddr(s) }
