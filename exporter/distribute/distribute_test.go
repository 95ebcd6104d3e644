//go:build linux && cgo

package distribute_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/spanflow/spanflow/exporter"
	"github.com/spanflow/spanflow/exporter/capture"
	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/exporter/distribute"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

type discard struct{}

func (discard) Send([]byte) error { return nil }

// sink is a VXLAN receiver on 127.0.0.1: it keeps the inner frames and
// checks each header.
type sink struct {
	conn   *net.UDPConn
	mu     sync.Mutex
	frames [][]byte
	bad    int
	vni    uint32
}

func newSink(t *testing.T, vni uint32) *sink {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadBuffer(4 << 20)
	s := &sink{conn: conn, vni: vni}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			if n < 8 || binary.BigEndian.Uint32(buf) != 0x08000000 || binary.BigEndian.Uint32(buf[4:]) != s.vni<<8 {
				s.bad++
			} else {
				s.frames = append(s.frames, bytes.Clone(buf[8:n]))
			}
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *sink) to() string {
	return "vxlan://" + s.conn.LocalAddr().String() + "?vni=" + strconv.Itoa(int(s.vni))
}

// wait returns the frames once n came, or what came within 5 s.
func (s *sink) wait(n int) [][]byte {
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		got := len(s.frames)
		s.mu.Unlock()
		if got >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // anything more than n?
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.frames)
}

// distribute runs the exporter over a capture with the rules and returns
// its summary.
func distributeFile(t *testing.T, pcap string, rules ...distribute.Rule) exporter.Summary {
	t.Helper()
	cfg := exporter.DefaultConfiguration()
	cfg.Pcap = pcap
	cfg.Distribute = rules
	src, err := capture.OpenFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	x, err := exporter.New(reporter.NewForTest(nil), cfg, discard{})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := x.Run(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func mirror(t *testing.T, name string) string {
	return filepath.Join(testutil.SharedTestdata(t), "mirror", name)
}

// tcpdumpFilter is the ground truth of a filter: the frames tcpdump keeps.
func tcpdumpFilter(t *testing.T, pcap, filter string) [][]byte {
	t.Helper()
	tcpdump := testutil.Command(t, "tcpdump")
	out := filepath.Join(t.TempDir(), "want.pcap")
	if b, err := exec.Command(tcpdump, "-r", pcap, "-w", out, filter).CombinedOutput(); err != nil {
		t.Fatalf("tcpdump: %v: %s", err, b)
	}
	return frames(testutil.ReadPcap(t, out))
}

func frames(pkts []testutil.Packet) [][]byte {
	var out [][]byte
	for _, p := range pkts {
		out = append(out, p.Data)
	}
	return out
}

func totalBytes(fs [][]byte) (n uint64) {
	for _, f := range fs {
		n += uint64(len(f))
	}
	return n
}

// sameFrames compares frames in order, saying the first difference.
func sameFrames(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d frames (%d bytes), want %d (%d bytes)", len(got), totalBytes(got), len(want), totalBytes(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d differs:\n got %x\nwant %x", i+1, got[i], want[i])
		}
	}
}

func TestFilterAndSnapLengthEqualTcpdump(t *testing.T) {
	pcap := mirror(t, "ipfixprobe/mixed.pcap")
	for _, tc := range []struct {
		name, filter string
		snap         int
	}{
		{name: "icmp", filter: "icmp"},
		{name: "arp", filter: "arp"},
		{name: "udp-or-icmp", filter: "udp or icmp or icmp6"},
		{name: "ipv6-snap", filter: "ip6", snap: 64},
		{name: "all-snap", snap: 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := frames(testutil.ReadPcap(t, pcap))
			if tc.filter != "" {
				want = tcpdumpFilter(t, pcap, tc.filter)
			}
			if len(want) == 0 {
				t.Fatal("the ground truth is empty: pick another filter")
			}
			for i, f := range want {
				if tc.snap > 0 && len(f) > tc.snap {
					want[i] = f[:tc.snap]
				}
			}
			s := newSink(t, 42)
			sum := distributeFile(t, pcap, distribute.Rule{Name: "ids", To: s.to(), Filter: tc.filter, SnapLength: tc.snap, Rate: 20000})
			sameFrames(t, s.wait(len(want)), want)
			d := sum.Distribution[0]
			if d.Sent != uint64(len(want)) || d.Bytes != totalBytes(want) || d.Dropped() != 0 || d.Matched != d.Sent {
				t.Errorf("counters %+v, want %d sent (%d bytes), none dropped", d, len(want), totalBytes(want))
			}
		})
	}
}

// TestNetsEqualTshark: a CIDR list chooses the packets tshark's address
// filter does.
func TestNetsEqualTshark(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	pcap := mirror(t, "ipfixprobe/mixed.pcap")
	out := filepath.Join(t.TempDir(), "want.pcap")
	const display = "ip.addr==10.5.5.0/24 || ipv6.addr==fe80::/10"
	if b, err := exec.Command(tshark, "-r", pcap, "-Y", display, "-w", out).CombinedOutput(); err != nil {
		t.Fatalf("tshark: %v: %s", err, b)
	}
	want := frames(testutil.ReadPcap(t, out))
	if len(want) == 0 {
		t.Fatal("the ground truth is empty")
	}
	s := newSink(t, 7)
	sum := distributeFile(t, pcap, distribute.Rule{To: s.to(), Nets: []string{"10.5.5.0/24", "fe80::/10"}, Rate: 20000})
	sameFrames(t, s.wait(len(want)), want)
	if d := sum.Distribution[0]; d.Sent != uint64(len(want)) {
		t.Errorf("counters %+v, want %d sent", d, len(want))
	}
}

// TestDedupEqualsEditcap: the duplicates of a real capture (an SSH session
// with every packet twice) are the ones editcap's time-window
// deduplication removes.
func TestDedupEqualsEditcap(t *testing.T) {
	editcap := testutil.Command(t, "editcap")
	pcap := mirror(t, "zeek/tcp-ssh-dups.pcap")
	out := filepath.Join(t.TempDir(), "want.pcap")
	if b, err := exec.Command(editcap, "-w", "0.01", pcap, out).CombinedOutput(); err != nil {
		t.Fatalf("editcap: %v: %s", err, b)
	}
	want := frames(testutil.ReadPcap(t, out))
	all := testutil.ReadPcap(t, pcap)
	s := newSink(t, 1)
	sum := distributeFile(t, pcap, distribute.Rule{To: s.to(), Dedup: distribute.Duration(10 * time.Millisecond), Rate: 20000})
	sameFrames(t, s.wait(len(want)), want)
	d := sum.Distribution[0]
	if d.Deduplicated != uint64(len(all)-len(want)) || d.Sent != uint64(len(want)) {
		t.Errorf("counters %+v, want %d deduplicated, %d sent", d, len(all)-len(want), len(want))
	}
}

// TestDedupBothEnds: a capture mirrored from both ends (each packet again
// 20 µs later, one router hop further: other MACs, TTL one lower, new IP
// checksum) goes out once; metering is the same as without distribution.
func TestDedupBothEnds(t *testing.T) {
	pcap := mirror(t, "zeek/tcp-timestamp.pcap")
	orig := testutil.ReadPcap(t, pcap)
	var both []synth.Packet
	for _, p := range orig {
		ts := p.Time.UnixNano()
		both = append(both, synth.Packet{Time: ts, Data: p.Data})
		c := bytes.Clone(p.Data)
		copy(c[0:6], []byte{2, 0, 0, 0, 0, 1})
		copy(c[6:12], []byte{2, 0, 0, 0, 0, 2})
		c[14+8]--
		c[14+10], c[14+11] = 0, 0
		binary.BigEndian.PutUint16(c[14+10:], ipChecksum(c[14:34]))
		both = append(both, synth.Packet{Time: ts + 20_000, Data: c})
	}
	in := filepath.Join(t.TempDir(), "both.pcap")
	if err := synth.WritePcapFile(in, both); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, 2)
	sum := distributeFile(t, in, distribute.Rule{To: s.to(), Dedup: distribute.Duration(time.Millisecond), Rate: 50000})
	sameFrames(t, s.wait(len(orig)), frames(orig))
	if d := sum.Distribution[0]; d.Deduplicated != uint64(len(orig)) {
		t.Errorf("counters %+v, want %d deduplicated", d, len(orig))
	}
	// Without dedup every copy goes.
	s2 := newSink(t, 3)
	sum2 := distributeFile(t, in, distribute.Rule{To: s2.to(), Rate: 50000})
	if got := len(s2.wait(len(both))); got != len(both) {
		t.Errorf("without dedup: %d frames, want %d", got, len(both))
	}
	if sum.Flows != sum2.Flows || sum.Frames != sum2.Frames {
		t.Errorf("metering changed with dedup: %d/%d flows, %d/%d frames", sum.Flows, sum2.Flows, sum.Frames, sum2.Frames)
	}
}

func ipChecksum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// TestStripTunnelEqualsTshark: with strip-tunnel, the mirrored frames
// inside ERSPAN leave byte-identical to the inner Ethernet frames tshark
// finds (from its inner eth layer's position to the end).
func TestStripTunnelEqualsTshark(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	for _, name := range []string{"zeek/erspan.pcap", "ndpi/vxlan.pcap"} {
		t.Run(filepath.Base(name), func(t *testing.T) {
			pcap := mirror(t, name)
			pdml, err := exec.Command(tshark, "-r", pcap, "-T", "pdml").Output()
			if err != nil {
				t.Fatal(err)
			}
			all := testutil.ReadPcap(t, pcap)
			// Each packet's second eth layer: the inner frame, except in
			// fragments, which tshark reassembles (positions are then in
			// the reassembled packet).
			ethPos := regexp.MustCompile(`<proto name="eth" [^>]*pos="(\d+)"`)
			var want [][]byte
			for i, pkt := range strings.Split(string(pdml), "<packet>")[1:] {
				m := ethPos.FindAllStringSubmatch(pkt, -1)
				if len(m) < 2 || strings.Contains(pkt, `name="ip.fragments"`) {
					continue
				}
				pos, _ := strconv.Atoi(m[1][1])
				want = append(want, all[i].Data[pos:])
			}
			if len(want) == 0 {
				t.Fatal("tshark found no inner frame")
			}
			s := newSink(t, 9)
			// The unstripped first fragments of GRE packets are not chosen.
			sum := distributeFile(t, pcap, distribute.Rule{To: s.to(), StripTunnel: true, Filter: "not ip proto 47", Rate: 20000})
			sameFrames(t, s.wait(len(want)), want)
			if d := sum.Distribution[0]; d.Sent != uint64(len(want)) {
				t.Errorf("counters %+v, want %d sent", d, len(want))
			}
		})
	}
}

// TestSampleOneInN sends the 1st, N+1th... matching frame.
// TestDedupThenSample: with both on, sampling counts the packets left
// after deduplication (1 in 3 of those editcap keeps), as when both ran
// on the capture goroutine.
func TestDedupThenSample(t *testing.T) {
	editcap := testutil.Command(t, "editcap")
	pcap := mirror(t, "zeek/tcp-ssh-dups.pcap")
	out := filepath.Join(t.TempDir(), "unique.pcap")
	if b, err := exec.Command(editcap, "-w", "0.01", pcap, out).CombinedOutput(); err != nil {
		t.Fatalf("editcap: %v: %s", err, b)
	}
	unique := frames(testutil.ReadPcap(t, out))
	var want [][]byte
	for i := 0; i < len(unique); i += 3 {
		want = append(want, unique[i])
	}
	all := testutil.ReadPcap(t, pcap)
	s := newSink(t, 1)
	sum := distributeFile(t, pcap, distribute.Rule{To: s.to(), Dedup: distribute.Duration(10 * time.Millisecond), Sample: 3, Rate: 20000})
	sameFrames(t, s.wait(len(want)), want)
	d := sum.Distribution[0]
	if d.Deduplicated != uint64(len(all)-len(unique)) || d.SampledOut != uint64(len(unique)-len(want)) || d.Sent != uint64(len(want)) {
		t.Errorf("counters %+v, want %d deduplicated, %d sampled out, %d sent", d, len(all)-len(unique), len(unique)-len(want), len(want))
	}
}

func TestSampleOneInN(t *testing.T) {
	pcap := mirror(t, "zeek/tcp-timestamp.pcap")
	all := frames(testutil.ReadPcap(t, pcap))
	var want [][]byte
	for i := 0; i < len(all); i += 10 {
		want = append(want, all[i])
	}
	s := newSink(t, 4)
	sum := distributeFile(t, pcap, distribute.Rule{To: s.to(), Sample: 10, Rate: 20000})
	sameFrames(t, s.wait(len(want)), want)
	if d := sum.Distribution[0]; d.SampledOut != uint64(len(all)-len(want)) {
		t.Errorf("counters %+v, want %d sampled out", d, len(all)-len(want))
	}
}

// TestSlowAndDeadDestinations: a destination that refuses (nothing
// listens: ICMP port unreachable) and one slower than the capture (rate
// 50/s, queue of 8) lose frames, counted; the healthy one and metering get
// everything.
func TestSlowAndDeadDestinations(t *testing.T) {
	pcap := mirror(t, "zeek/tcp-timestamp.pcap")
	all := frames(testutil.ReadPcap(t, pcap))
	dead, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().String()
	dead.Close()
	good, slow := newSink(t, 5), newSink(t, 6)
	base := distributeFile(t, pcap)
	sum := distributeFile(t, pcap,
		distribute.Rule{Name: "dead", To: "vxlan://" + deadAddr, Rate: 20000},
		distribute.Rule{Name: "slow", To: slow.to(), Rate: 50, QueueSize: 8},
		distribute.Rule{Name: "good", To: good.to(), Rate: 20000},
	)
	sameFrames(t, good.wait(len(all)), all)
	byName := map[string]distribute.Stats{}
	for _, d := range sum.Distribution {
		byName[d.Rule] = d
		if d.Sent+d.Dropped() != uint64(len(all)) {
			t.Errorf("%s: %+v: sent+dropped is not the %d frames", d.Rule, d, len(all))
		}
	}
	if d := byName["dead"]; d.SendErrors == 0 {
		t.Errorf("dead destination: %+v, want send errors counted", d)
	}
	if d := byName["slow"]; d.QueueFull == 0 || d.Sent == 0 {
		t.Errorf("slow destination: %+v, want some sent and queue-full drops", d)
	}
	if got := len(slow.wait(int(byName["slow"].Sent))); uint64(got) != byName["slow"].Sent {
		t.Errorf("slow destination got %d frames, counted %d sent", got, byName["slow"].Sent)
	}
	if sum.Flows != base.Flows || sum.Frames != base.Frames {
		t.Errorf("metering changed: %d/%d flows, %d/%d frames", sum.Flows, base.Flows, sum.Frames, base.Frames)
	}
}

func TestParseFlag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want distribute.Rule
		err  string
	}{
		{in: "iface:veth1", want: distribute.Rule{Name: "distribute", To: "iface:veth1"}},
		{in: "vxlan://10.0.0.9?vni=7&dedup=10ms&snap-length=128&strip-tunnel=true tcp port 80",
			want: distribute.Rule{Name: "distribute", To: "vxlan://10.0.0.9?vni=7", Filter: "tcp port 80", Dedup: distribute.Duration(10 * time.Millisecond), SnapLength: 128, StripTunnel: true}},
		{in: "erspan3://10.0.0.9?session=3&sample=10&rate=1000&queue-size=64 not port 22",
			want: distribute.Rule{Name: "distribute", To: "erspan3://10.0.0.9?session=3", Filter: "not port 22", Sample: 10, Rate: 1000, QueueSize: 64}},
		{in: "vxlan://10.0.0.9?snap-length=x", err: "snap-length"},
		{in: "vxlan://10.0.0.9?dedup=soon", err: "dedup"},
	} {
		got, err := distribute.ParseFlag(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want one about %s", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("%q: %v", tc.in, err)
		}
	}
}

func TestValidateSaysWhatIsWrong(t *testing.T) {
	for _, tc := range []struct {
		rule distribute.Rule
		err  string
	}{
		{distribute.Rule{}, "no destination"},
		{distribute.Rule{To: "http://x"}, "unknown kind"},
		{distribute.Rule{To: "iface:"}, "iface:NAME"},
		{distribute.Rule{To: "gre://10.0.0.1:99"}, "only vxlan has a port"},
		{distribute.Rule{To: "vxlan://10.0.0.1?vni=99999999"}, "vni"},
		{distribute.Rule{To: "erspan2://10.0.0.1?session=1024"}, "session"},
		{distribute.Rule{To: "erspan3://10.0.0.1?sesion=1"}, "unknown parameter"},
		{distribute.Rule{To: "iface:x", Nets: []string{"10.0.0.0/33"}}, "nets"},
		{distribute.Rule{To: "iface:x", SnapLength: 5}, "snap-length"},
		{distribute.Rule{To: "iface:x", Dedup: -1}, "dedup"},
		{distribute.Rule{To: "iface:x", Sample: -2}, "sample"},
		{distribute.Rule{To: "iface:x", Rate: -1}, "rate"},
	} {
		err := tc.rule.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") && !strings.Contains(tc.err, "\n") && len(strings.Split(err.Error(), "\n")) > 2 {
			t.Errorf("%+v: %v, want an error about %q", tc.rule, err, tc.err)
		}
	}
	if err := distribute.ValidateRules([]distribute.Rule{{Name: "a", To: "iface:x"}, {Name: "a", To: "iface:y"}}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("same name twice: %v", err)
	}
}

// TestReload: new rules take over from the next frame, keep the counters
// of rules of the same name; rules that do not build leave the old ones in
// force and say why.
func TestReload(t *testing.T) {
	pcap := mirror(t, "zeek/tcp-timestamp.pcap")
	all := testutil.ReadPcap(t, pcap)
	a, b := newSink(t, 1), newSink(t, 2)
	d, err := distribute.New(slog.New(slog.DiscardHandler), []distribute.Rule{{Name: "tool", To: a.to(), Rate: 20000}})
	if err != nil {
		t.Fatal(err)
	}
	dec := decode.New()
	var p decode.Packet
	offer := func(pkts []testutil.Packet) {
		for _, pk := range pkts {
			fr := capture.Frame{Data: pk.Data, Length: pk.Length, LinkType: pk.LinkType, Timestamp: pk.Time.UnixNano()}
			d.Offer(&fr, &p, dec.Decode(fr.LinkType, fr.Data, fr.Length, &p))
		}
	}
	half := len(all) / 2
	offer(all[:half])
	if err := d.Reload([]distribute.Rule{{Name: "tool", To: b.to(), Filter: "tcp and (", Rate: 20000}}); err == nil || !strings.Contains(err.Error(), "tool") {
		t.Fatalf("a filter that does not compile: %v", err)
	}
	if err := d.Reload([]distribute.Rule{{Name: "tool", To: b.to(), Rate: 20000}}); err != nil {
		t.Fatal(err)
	}
	offer(all[half:])
	d.Close(5 * time.Second)
	if got, want := len(a.wait(half)), half; got != want {
		t.Errorf("old destination: %d frames, want %d", got, want)
	}
	if got, want := len(b.wait(len(all)-half)), len(all)-half; got != want {
		t.Errorf("new destination: %d frames, want %d", got, want)
	}
	if st := d.Stats(); len(st) != 1 || st[0].Sent != uint64(len(all)) {
		t.Errorf("counters %+v, want %d sent over both", st, len(all))
	}
}

// TestMetricsLint: the rules' metrics pass promlint and carry the counters.
func TestMetricsLint(t *testing.T) {
	s := newSink(t, 1)
	d, err := distribute.New(slog.New(slog.DiscardHandler), []distribute.Rule{{Name: "ids", To: s.to(), Filter: "tcp"}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(time.Second)
	reg := prometheus.NewRegistry()
	reg.MustRegister(d.Collector())
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %+v", err, problems)
	}
	if len(families) != 6 {
		t.Errorf("%d metric families, want 6", len(families))
	}
}

func TestFilterErrorSaysWhy(t *testing.T) {
	err := distribute.Rule{Name: "ids", To: "iface:x", Filter: "tcp and ("}.Validate()
	if err == nil || !strings.Contains(err.Error(), "ids") || !strings.Contains(err.Error(), "syntax error") {
		t.Errorf("error %v, want the rule's name and libpcap's reason", err)
	}
}

// TestEveryChosenFrameAccounted: every frame a rule matches is
// deduplicated, sampled out, sent or dropped, counted once; a frame with
// no captured bytes (a pcap record of length 0) is not chosen at all.
func TestEveryChosenFrameAccounted(t *testing.T) {
	all := frames(testutil.ReadPcap(t, mirror(t, "zeek/tcp-timestamp.pcap")))
	var withEmpty [][]byte
	for i, f := range all {
		withEmpty = append(withEmpty, f)
		if i%7 == 0 {
			withEmpty = append(withEmpty, []byte{})
		}
	}
	pcap := filepath.Join(t.TempDir(), "empty.pcap")
	testutil.WritePcap(t, pcap, 1, time.Unix(1_700_000_000, 0), withEmpty)
	for _, rule := range []distribute.Rule{{Sample: 3}, {Dedup: distribute.Duration(10 * time.Millisecond)}, {}} {
		s := newSink(t, 5)
		rule.To, rule.Rate = s.to(), 20000
		sum := distributeFile(t, pcap, rule)
		d := sum.Distribution[0]
		if d.Matched != uint64(len(all)) {
			t.Errorf("%+v: matched %d, want the %d frames with bytes", rule, d.Matched, len(all))
		}
		if got := d.Deduplicated + d.SampledOut + d.Sent + d.QueueFull + d.SendErrors; got != d.Matched {
			t.Errorf("%+v: counters %+v account for %d of %d matched frames", rule, d, got, d.Matched)
		}
		if n := len(s.wait(int(d.Sent))); n != int(d.Sent) {
			t.Errorf("%+v: %d frames arrived, %d counted as sent", rule, n, d.Sent)
		}
	}
}
