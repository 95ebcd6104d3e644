package ring_test

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/exporter/ring"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// frame is what goes into the ring and what a query must give back.
type frame struct {
	Time   int64
	Length int
	Link   uint32
	Data   []byte
}

// fill writes frames into a ring the way the exporter does: each decoded
// to its flow key, appended, the ring closed at the end.
func fill(t testing.TB, cfg ring.Configuration, frames []frame) ring.Stats {
	t.Helper()
	g, err := ring.Open(reporter.NewForTest(io.Discard), cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := g.NewAppender()
	a.Wait = true
	d := decode.New()
	var p decode.Packet
	for _, f := range frames {
		var key uint64
		if d.Decode(f.Link, f.Data, f.Length, &p) == decode.ReasonOK {
			key = ring.PacketKey(&p)
		}
		a.Append(f.Time, f.Length, f.Link, 0, key, f.Data)
	}
	a.Flush()
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	return g.Stats()
}

func search(t testing.TB, dir string, q ring.Query) ([]frame, []string) {
	t.Helper()
	var warnings []string
	pkts, _, err := ring.Search(dir, q, func(s string) { warnings = append(warnings, s) })
	if err != nil {
		t.Fatal(err)
	}
	return frames(pkts), warnings
}

func frames(pkts []ring.Packet) []frame {
	out := []frame{}
	for _, p := range pkts {
		out = append(out, frame{Time: p.Time, Length: p.Length, Link: p.LinkType, Data: p.Data})
	}
	return out
}

func readFrames(t testing.TB, path string) []frame {
	t.Helper()
	out := []frame{}
	for _, p := range testutil.ReadPcap(t, path) {
		out = append(out, frame{Time: p.Time.UnixNano(), Length: p.Length, Link: p.LinkType, Data: p.Data})
	}
	return out
}

// diffFrames is go-cmp's diff of two frame lists, computed only when they
// differ (go-cmp is slow on thousands of frames).
func diffFrames(got, want []frame) string {
	if slices.EqualFunc(got, want, func(a, b frame) bool {
		return a.Time == b.Time && a.Length == b.Length && a.Link == b.Link && bytes.Equal(a.Data, b.Data)
	}) {
		return ""
	}
	return testutil.Diff(got, want)
}

// timeOrder is the order a query returns: by time, ties as captured.
func timeOrder(f []frame) []frame {
	f = slices.Clone(f)
	slices.SortStableFunc(f, func(a, b frame) int { return cmp.Compare(a.Time, b.Time) })
	return f
}

func config(dir string) ring.Configuration {
	return ring.Configuration{Dir: dir, Size: ring.MinSize, Codec: ring.CodecZstd, BlockSize: 16 << 10}
}

// sharedCaptures are the mirrored-traffic captures of ../shared/testdata.
func sharedCaptures(t *testing.T) []string {
	dir := testutil.SharedTestdata(t)
	var out []string
	for _, pat := range []string{"mirror/*/*.pcap", "mirror/*/*.pcapng"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		out = append(out, m...)
	}
	if len(out) < 20 {
		t.Fatalf("only %d mirrored captures in %s", len(out), dir)
	}
	return out
}

// TestEveryCaptureComesBack: every frame of every mirrored capture,
// written into a ring (several blocks, compressed or not), comes back
// byte-identical with its time and length, in time order.
func TestEveryCaptureComesBack(t *testing.T) {
	for _, path := range sharedCaptures(t) {
		name := strings.TrimPrefix(path, filepath.Dir(filepath.Dir(path))+"/")
		in := readFrames(t, path)
		codecs := []ring.Codec{ring.CodecZstd}
		if strings.Contains(name, "bigtcp-ipv4-vxlan") || strings.Contains(name, "ipfixprobe") || strings.HasSuffix(name, ".pcapng") {
			codecs = append(codecs, ring.CodecNone) // the uncompressed path on a few
		}
		for _, codec := range codecs {
			t.Run(name+"/"+codec.String(), func(t *testing.T) {
				cfg := config(t.TempDir())
				cfg.Codec = codec
				st := fill(t, cfg, in)
				if st.Frames != uint64(len(in)) || st.Dropped != 0 {
					t.Fatalf("ring kept %d frames and dropped %d of %d", st.Frames, st.Dropped, len(in))
				}
				got, warnings := search(t, cfg.Dir, ring.Query{})
				if len(warnings) > 0 {
					t.Errorf("warnings: %q", warnings)
				}
				if diff := diffFrames(got, timeOrder(in)); diff != "" {
					t.Errorf("frames (-got, +want):\n%s", diff)
				}
			})
		}
	}
}

// tsharkFlows lists the TCP and UDP conversations tshark finds in a
// capture, as display filters and as 5-tuples.
func tsharkFlows(t *testing.T, tshark, path string) (filters, tuples []string) {
	out, err := exec.Command(tshark, "-r", path, "-T", "fields", "-E", "separator=,", "-Y", "(ip or ipv6) and (tcp or udp) and not icmp and not icmpv6 and not ip.flags.mf == 1 and not ip.frag_offset > 0",
		"-e", "ip.src", "-e", "ip.dst", "-e", "ipv6.src", "-e", "ipv6.dst", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "udp.srcport", "-e", "udp.dstport").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, ",")
		if len(f) != 8 {
			continue
		}
		// One IP layer and one transport layer only: tshark's filters match
		// any layer, the ring's flows the innermost.
		var src, dst, proto, sp, dp string
		switch {
		case f[0] != "" && !strings.Contains(f[0]+f[1], ";") && f[2] == "":
			src, dst = f[0], f[1]
		case f[2] != "" && !strings.Contains(f[2]+f[3], ";") && f[0] == "":
			src, dst = "["+f[2]+"]", "["+f[3]+"]"
		default:
			continue
		}
		switch {
		case f[4] != "" && f[6] == "":
			proto, sp, dp = "tcp", f[4], f[5]
		case f[6] != "" && f[4] == "" && !strings.Contains(f[6], ";"):
			proto, sp, dp = "udp", f[6], f[7]
		default:
			continue
		}
		tuple := fmt.Sprintf("%s %s:%s %s:%s", proto, src, sp, dst, dp)
		if seen[tuple] || seen[fmt.Sprintf("%s %s:%s %s:%s", proto, dst, dp, src, sp)] {
			continue
		}
		seen[tuple] = true
		addr := "ip.addr"
		if strings.HasPrefix(src, "[") {
			addr = "ipv6.addr"
		}
		a, b := strings.Trim(src, "[]"), strings.Trim(dst, "[]")
		filters = append(filters, fmt.Sprintf("%s==%s and %s==%s and %s.port==%s and %s.port==%s and not icmp and not icmpv6", addr, a, addr, b, proto, sp, proto, dp))
		tuples = append(tuples, tuple)
	}
	return filters, tuples
}

// TestFlowQueryMatchesTshark: for every TCP and UDP conversation of the
// plain captures, the one-flow query returns exactly the frames that
// tshark's filter of the same conversation selects from the capture.
func TestFlowQueryMatchesTshark(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	dir := testutil.SharedTestdata(t)
	caps := []string{"mirror/ipfixprobe/mixed.pcap", "mirror/ipfixprobe/http.pcap", "mirror/ipfixprobe/vlan.pcap", "mirror/tcpdump/dns_tcp.pcap"}
	checked := 0
	for _, c := range caps {
		path := filepath.Join(dir, c)
		in := readFrames(t, path)
		cfg := config(t.TempDir())
		fill(t, cfg, in)
		filters, tuples := tsharkFlows(t, tshark, path)
		for i, tuple := range tuples {
			key, _, err := ring.ParseFlow(tuple)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := search(t, cfg.Dir, ring.Query{Key: key})
			wantFile := filepath.Join(t.TempDir(), "want.pcap")
			if out, err := exec.Command(tshark, "-r", path, "-Y", filters[i], "-w", wantFile).CombinedOutput(); err != nil {
				t.Fatalf("tshark -Y %q: %v\n%s", filters[i], err, out)
			}
			want := timeOrder(readFrames(t, wantFile))
			if diff := diffFrames(got, want); diff != "" {
				t.Errorf("%s: flow %s: frames (-got, +want, tshark -Y %q):\n%s", c, tuple, filters[i], diff)
			}
			checked++
		}
	}
	if checked < 20 {
		t.Errorf("only %d flows compared", checked)
	}
	t.Logf("%d flows compared with tshark", checked)
}

// TestFilterQueryMatchesTshark: a --filter (BPF) query returns what
// tshark's equivalent display filter selects from the capture (frames as
// mirrored: the BPF filter sees the outer headers; the cases are chosen so
// that tshark's, which sees every layer, means the same).
func TestFilterQueryMatchesTshark(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	dir := testutil.SharedTestdata(t)
	cases := []struct{ capture, bpf, display string }{
		{"mirror/ipfixprobe/http.pcap", "tcp port 80", "tcp.port==80"},
		{"mirror/ipfixprobe/http.pcap", "host 54.175.219.8", "ip.addr==54.175.219.8"},
		{"mirror/ipfixprobe/mixed.pcap", "arp", "arp"},
		{"mirror/ipfixprobe/mixed.pcap", "ip6", "ipv6"},
		{"mirror/ipfixprobe/vlan.pcap", "vlan and udp port 53", "vlan and udp.port==53"},
		{"mirror/tcpdump/dns_tcp.pcap", "tcp[tcpflags] & tcp-syn != 0", "tcp.flags.syn==1"},
		{"mirror/ndpi/vxlan.pcap", "vlan and udp port 4789", "vlan and udp.port==4789"}, // the outer frames are 802.1Q-tagged,
	}
	for _, c := range cases {
		path := filepath.Join(dir, c.capture)
		cfg := config(t.TempDir())
		fill(t, cfg, readFrames(t, path))
		f, err := ring.NewFilter(c.bpf)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := search(t, cfg.Dir, ring.Query{Match: f.Match})
		wantFile := filepath.Join(t.TempDir(), "want.pcap")
		if out, err := exec.Command(tshark, "-r", path, "-Y", c.display, "-w", wantFile).CombinedOutput(); err != nil {
			t.Fatalf("tshark -Y %q: %v\n%s", c.display, err, out)
		}
		want := timeOrder(readFrames(t, wantFile))
		if len(want) == 0 {
			t.Errorf("%s %q: tshark selects nothing: a useless case", c.capture, c.display)
		}
		if diff := diffFrames(got, want); diff != "" {
			t.Errorf("%s %q: frames (-got, +want from tshark -Y %q):\n%s", c.capture, c.bpf, c.display, diff)
		}
	}
}

// TestFilterQueryReadsWireLength: in a ring that keeps 96 bytes of each
// frame, `greater` and `less` judge the frame's length on the wire, as
// tcpdump does on the capture: the answer is tshark's frame.len selection,
// each frame cut to 96 bytes.
func TestFilterQueryReadsWireLength(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	path := filepath.Join(testutil.SharedTestdata(t), "mirror/ipfixprobe/http.pcap")
	cfg := config(t.TempDir())
	cfg.SnapLen = 96
	fill(t, cfg, readFrames(t, path))
	for _, c := range []struct{ bpf, display string }{
		{"greater 1000", "frame.len >= 1000"},
		{"less 200", "frame.len <= 200"},
		{"tcp port 80 and greater 600", "tcp.port==80 and frame.len >= 600"},
	} {
		f, err := ring.NewFilter(c.bpf)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := search(t, cfg.Dir, ring.Query{Match: f.Match})
		wantFile := filepath.Join(t.TempDir(), "want.pcap")
		if out, err := exec.Command(tshark, "-r", path, "-Y", c.display, "-w", wantFile).CombinedOutput(); err != nil {
			t.Fatalf("tshark -Y %q: %v\n%s", c.display, err, out)
		}
		want := timeOrder(readFrames(t, wantFile))
		for i := range want {
			want[i].Data = want[i].Data[:min(len(want[i].Data), cfg.SnapLen)]
		}
		if len(want) == 0 || len(want) == len(readFrames(t, path)) {
			t.Errorf("%q: tshark selects %d frames: a useless case", c.display, len(want))
		}
		if diff := diffFrames(got, want); diff != "" {
			t.Errorf("%q: frames (-got, +want from tshark -Y %q):\n%s", c.bpf, c.display, diff)
		}
	}
}

// generated is traffic whose flows the test knows: n flows (TCP and UDP,
// IPv4 and IPv6, a third inside VXLAN) interleaved at random; each frame
// is labelled with its flow's 5-tuple.
func generated(n, packets int, start time.Time) ([]frame, []string) {
	rng := rand.New(rand.NewPCG(7, 9))
	type fl struct {
		a, b   netip.Addr
		sp, dp uint16
		proto  uint8
		vxlan  bool
	}
	var flows []fl
	for i := range n {
		f := fl{sp: uint16(20000 + i), dp: []uint16{443, 5432, 53, 8080}[i%4], proto: []uint8{6, 17}[i%2], vxlan: i%3 == 0}
		if i%5 == 0 {
			f.a, f.b = netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", i+1)), netip.MustParseAddr("2001:db8:1::10")
		} else {
			f.a, f.b = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), netip.MustParseAddr("10.9.0.10")
		}
		flows = append(flows, f)
	}
	var out []frame
	var labels []string
	ts := start.UnixNano()
	for i := range packets {
		f := flows[rng.IntN(len(flows))]
		s, d, sp, dp := f.a, f.b, f.sp, f.dp
		if rng.IntN(2) == 0 {
			s, d, sp, dp = d, s, dp, sp
		}
		size := 40 + rng.IntN(1200)
		var l4 []byte
		if f.proto == 6 {
			l4 = synth.TCP(sp, dp, uint32(i), 1, 0x18, 65535, size)
		} else {
			l4 = synth.UDP(sp, dp, make([]byte, size))
		}
		var ip []byte
		etype := uint16(0x0800)
		if s.Is4() {
			ip = synth.IPv4(s, d, f.proto, 0, uint16(i), 0, false, l4)
		} else {
			ip, etype = synth.IPv6(s, d, f.proto, 0, l4), 0x86dd
		}
		data := synth.Ethernet(synth.MAC(1), synth.MAC(2), nil, etype, ip)
		if f.vxlan {
			outer := synth.UDP(40000, 4789, synth.VXLAN(5001, data))
			data = synth.Ethernet(synth.MAC(3), synth.MAC(4), nil, 0x0800, synth.IPv4(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), 17, 0, 0, 0, false, outer))
		}
		ts += int64(rng.IntN(20000))
		out = append(out, frame{Time: ts, Length: len(data), Link: 1, Data: data})
		labels = append(labels, fmt.Sprintf("%s %s %s", map[uint8]string{6: "tcp", 17: "udp"}[f.proto], netip.AddrPortFrom(f.a, f.sp), netip.AddrPortFrom(f.b, f.dp)))
	}
	return out, labels
}

// TestGeneratedFlows: in generated traffic, a one-flow query returns
// exactly that flow's frames (inner flows of VXLAN too), byte-identical
// and in order, and a time-window query exactly the window's frames.
func TestGeneratedFlows(t *testing.T) {
	start := time.Date(2026, 12, 5, 2, 13, 0, 0, time.UTC)
	in, labels := generated(300, 40000, start)
	cfg := config(t.TempDir())
	cfg.BlockSize = 256 << 10
	st := fill(t, cfg, in)
	if st.Blocks < 10 {
		t.Fatalf("only %d blocks: the test needs several", st.Blocks)
	}
	for _, tuple := range []string{labels[0], labels[1], labels[7], labels[100], labels[len(labels)-1]} {
		want := []frame{}
		for i, l := range labels {
			if l == tuple {
				want = append(want, in[i])
			}
		}
		key, _, err := ring.ParseFlow(tuple)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := search(t, cfg.Dir, ring.Query{Key: key})
		if diff := diffFrames(got, want); diff != "" {
			t.Errorf("flow %s (-got, +want):\n%s", tuple, diff)
		}
		// The same flow named the other way round.
		f := strings.Fields(tuple)
		if key2, _, _ := ring.ParseFlow(f[0] + " " + f[2] + " " + f[1]); key2 != key {
			t.Errorf("flow %s: reversed tuple has another key", tuple)
		}
	}
	from, to := in[10000].Time, in[12345].Time
	got, _ := search(t, cfg.Dir, ring.Query{From: from, To: to})
	if diff := diffFrames(got, in[10000:12345]); diff != "" {
		t.Errorf("window (-got, +want):\n%s", diff)
	}
	idx := float64(st.IndexBytes) / float64(st.StoredBytes+st.IndexBytes)
	t.Logf("%d frames, %d blocks, compression %.2fx, index %.3f%% of stored bytes", st.Frames, st.Blocks, float64(st.RawBytes)/float64(st.StoredBytes), 100*idx)
}

func dirSize(t testing.TB, dir string) int64 {
	var n int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".seg") {
			if info, err := e.Info(); err == nil {
				n += info.Size()
			}
		}
	}
	return n
}

// TestRingStaysWithinSize: writing three times the ring's size keeps the
// segments within it; a query of the overwritten time says the packets
// are gone, and one of the time kept answers.
func TestRingStaysWithinSize(t *testing.T) {
	cfg := ring.Configuration{Dir: t.TempDir(), Size: ring.MinSize, Codec: ring.CodecNone, BlockSize: 256 << 10}
	g, err := ring.Open(reporter.NewForTest(io.Discard), cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := g.NewAppender()
	a.Wait = true // this test is about size, not drops
	rng := rand.New(rand.NewPCG(1, 1))
	pool := make([]byte, 1<<20) // incompressible frames, cut from a random pool
	for i := range pool {
		pool[i] = byte(rng.Uint32())
	}
	data := make([]byte, 1000)
	var written, largest int64
	ts := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC).UnixNano()
	var times []int64
	for written < 3*cfg.Size {
		off := rng.IntN(len(pool) - len(data))
		copy(data, pool[off:])
		ts += 1000
		a.Append(ts, len(data), 1, 0, 0, data)
		times = append(times, ts)
		written += int64(len(data))
		if len(times)%4096 == 0 {
			largest = max(largest, dirSize(t, cfg.Dir))
		}
	}
	a.Flush()
	g.Close()
	st := g.Stats()
	largest = max(largest, dirSize(t, cfg.Dir))
	if largest > cfg.Size {
		t.Errorf("the ring took %d bytes, over its size %d", largest, cfg.Size)
	}
	if st.SegmentsRemoved == 0 || st.Truncated == 0 {
		t.Fatalf("nothing removed: %+v", st)
	}
	// The first frames are gone: a query of their time says so.
	_, _, err = ring.Search(cfg.Dir, ring.Query{From: times[0], To: times[100]}, func(string) {})
	if !errors.Is(err, ring.ErrGone) {
		t.Errorf("query of overwritten time: err %v, want ErrGone", err)
	}
	// The last ones answer.
	got, _ := search(t, cfg.Dir, ring.Query{From: times[len(times)-100]})
	if len(got) != 100 {
		t.Errorf("query of the last 100 frames: %d", len(got))
	}
	// A window that straddles the removal answers with a warning.
	_, warnings := search(t, cfg.Dir, ring.Query{From: times[0]})
	if len(warnings) == 0 {
		t.Error("query from before the removal: no warning that packets are gone")
	}
	// Reopening takes stock of what is there and keeps to the size.
	g, err = ring.Open(reporter.NewForTest(io.Discard), cfg)
	if err != nil {
		t.Fatal(err)
	}
	a = g.NewAppender()
	a.Wait = true
	for range 20000 {
		ts += 1000
		a.Append(ts, len(data), 1, 0, 0, data)
		if ts%(256*1000) == 0 && dirSize(t, cfg.Dir) > cfg.Size {
			t.Fatalf("after reopening, the ring took %d bytes", dirSize(t, cfg.Dir))
		}
	}
	a.Flush()
	g.Close()
	if n := dirSize(t, cfg.Dir); n > cfg.Size {
		t.Errorf("after reopening, the ring took %d bytes", n)
	}
}

// TestDamagedSegments: a segment cut mid-block (a crash) and one with
// garbage appended are skipped from the damage on, with a warning; every
// block before the damage still answers, and the other segments too.
func TestDamagedSegments(t *testing.T) {
	start := time.Date(2026, 12, 5, 2, 13, 0, 0, time.UTC)
	in, _ := generated(50, 6000, start)
	cfg := config(t.TempDir())
	cfg.BlockSize = 64 << 10
	// Three runs: three segments.
	third := len(in) / 3
	for i := range 3 {
		fill(t, cfg, in[i*third:(i+1)*third])
	}
	segs, _, err := ring.List(cfg.Dir, func(string) {})
	if err != nil || len(segs) != 3 {
		t.Fatalf("segments %v, %v", segs, err)
	}
	// Cut the first one in its last block; append garbage to the second.
	cut := segs[0].Size - 100
	if err := os.Truncate(segs[0].Path, cut); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(segs[1].Path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(bytes.Repeat([]byte("garbage!"), 1000))
	f.Close()
	// A file that is no segment at all.
	os.WriteFile(filepath.Join(cfg.Dir, "0000000000000099.seg"), []byte("nothing"), 0o644)

	got, warnings := search(t, cfg.Dir, ring.Query{})
	if len(warnings) != 3 {
		t.Errorf("warnings: %q, want one per damaged segment", warnings)
	}
	// Every frame of segments 2 and 3 is back; of segment 1, all but its
	// last block's.
	list, _, _ := ring.List(cfg.Dir, func(string) {})
	lost := third - int(list[0].Packets)
	if lost <= 0 || lost > third/2 {
		t.Errorf("segment 1 lost %d of %d frames", lost, third)
	}
	want := append(slices.Clone(in[:int(list[0].Packets)]), in[third:3*third]...)
	if diff := diffFrames(got, want); diff != "" {
		t.Errorf("frames (-got, +want):\n%s", diff)
	}
	for _, s := range list[:2] {
		if s.Damage == "" {
			t.Errorf("%s: no damage listed", s.Path)
		}
	}
	// The ring opens and writes on after the damage.
	fill(t, cfg, in[:10])
}

// TestDropsAreCounted: without waiting (a live capture), Append never
// blocks, and every frame is either kept or counted as dropped.
func TestDropsAreCounted(t *testing.T) {
	in, _ := generated(100, 20000, time.Date(2026, 12, 5, 2, 13, 0, 0, time.UTC))
	cfg := config(t.TempDir())
	cfg.BlockSize = 4 << 10 // many small blocks: the writer falls behind
	g, err := ring.Open(reporter.NewForTest(io.Discard), cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := g.NewAppender()
	const rounds = 5
	for range rounds {
		for _, f := range in {
			a.Append(f.Time, f.Length, f.Link, 0, 0, f.Data)
		}
	}
	a.Flush()
	g.Close()
	st := g.Stats()
	if st.Frames+st.Dropped != rounds*uint64(len(in)) {
		t.Errorf("%d kept + %d dropped, want %d appended", st.Frames, st.Dropped, rounds*len(in))
	}
	got, _ := search(t, cfg.Dir, ring.Query{})
	if uint64(len(got)) != st.Frames {
		t.Errorf("%d frames in the ring, %d counted as kept", len(got), st.Frames)
	}
	t.Logf("%d kept, %d dropped", st.Frames, st.Dropped)
}

// TestPins: a pinned time range stays while retention removes the
// segments around it; unpinned, it goes like the others; a ring whose
// every segment is pinned drops and counts new frames rather than grow.
func TestPins(t *testing.T) {
	cfg := ring.Configuration{Dir: t.TempDir(), Size: ring.MinSize, Codec: ring.CodecNone, BlockSize: 256 << 10}
	w := newRandomFrames(t, cfg, 2, 0)
	from, to := w.write(4 << 20)
	if err := ring.AddPin(cfg.Dir, ring.Pin{From: from, To: to + 1, Name: "payment-0213"}); err != nil {
		t.Fatal(err)
	}
	w.write(3 * cfg.Size)
	if n := dirSize(t, cfg.Dir); n > cfg.Size {
		t.Errorf("ring took %d bytes, over its size", n)
	}
	got, _ := search(t, cfg.Dir, ring.Query{From: from, To: to + 1})
	if len(got) != 4<<20/1000+1 {
		t.Errorf("pinned range: %d frames, want %d", len(got), 4<<20/1000+1)
	}
	segs, _, _ := ring.List(cfg.Dir, func(string) {})
	if !segs[0].Pinned {
		t.Errorf("oldest segment not listed as pinned: %+v", segs[0])
	}
	if err := ring.RemovePin(cfg.Dir, "payment-0213"); err != nil {
		t.Fatal(err)
	}
	if err := ring.RemovePin(cfg.Dir, "payment-0213"); err == nil {
		t.Error("removing a pin twice: no error")
	}
	w.write(cfg.Size)
	if _, _, err := ring.Search(cfg.Dir, ring.Query{From: from, To: to + 1}, func(string) {}); !errors.Is(err, ring.ErrGone) {
		t.Errorf("unpinned range after a ring's worth of writes: %v, want ErrGone", err)
	}
	// Pin everything: new frames are dropped and counted, the size holds.
	if err := ring.AddPin(cfg.Dir, ring.Pin{From: 1, To: 1 << 62, Name: "all"}); err != nil {
		t.Fatal(err)
	}
	g, err := ring.Open(reporter.NewForTest(io.Discard), cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := g.NewAppender()
	a.Wait = true
	for range 20000 {
		w.ts += 1000
		a.Append(w.ts, 1000, 1, 0, 0, w.pool[:1000])
	}
	a.Flush()
	g.Close()
	if st := g.Stats(); st.Dropped == 0 || st.Frames+st.Dropped != 20000 {
		t.Errorf("all pinned: %d kept, %d dropped of 20000", st.Frames, st.Dropped)
	}
	if n := dirSize(t, cfg.Dir); n > cfg.Size {
		t.Errorf("all pinned: ring took %d bytes, over its size", n)
	}
	for _, bad := range []ring.Pin{{From: 5, To: 5, Name: "x"}, {From: 1, To: 2, Name: "two words"}, {From: 1, To: 2}} {
		if err := ring.AddPin(cfg.Dir, bad); err == nil {
			t.Errorf("%+v: accepted", bad)
		}
	}
}

// TestMetrics: the ring's metrics pass promlint, and count what the ring did.
func TestMetrics(t *testing.T) {
	r := reporter.NewForTest(io.Discard)
	cfg := config(t.TempDir())
	g, err := ring.Open(r, cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := g.NewAppender()
	a.Wait = true
	in, _ := generated(10, 500, time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC))
	for _, f := range in {
		a.Append(f.Time, f.Length, f.Link, 0, 1, f.Data)
	}
	a.Flush()
	g.Close()
	if n := testutil.LintMetrics(t, r.Registry, "spanflow_packet_ring_"); n != 8 {
		t.Errorf("%d metric families, want 8", n)
	}
	families, err := r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "spanflow_packet_ring_frames_total" {
			if got := f.GetMetric()[0].GetCounter().GetValue(); got != 500 {
				t.Errorf("frames_total %v, want 500", got)
			}
		}
	}
}

// TestSearchBounded: a query whose answer would pass Query.MaxBytes stops
// there with the oldest packets found, in order, and warns; without the
// bound it holds every packet.
func TestSearchBounded(t *testing.T) {
	dir := t.TempDir()
	var in []frame
	for i := range 4000 {
		data := make([]byte, 1000)
		data[0], data[999] = byte(i), byte(i>>8)
		in = append(in, frame{Time: int64(1e18) + int64(i)*1000, Length: 1000, Link: 1, Data: data})
	}
	fill(t, config(dir), in)
	all, warnings := search(t, dir, ring.Query{})
	if diff := diffFrames(all, in); diff != "" || len(warnings) != 0 {
		t.Fatalf("unbounded: %d frames, warnings %v, diff %s", len(all), warnings, diff)
	}
	got, warnings := search(t, dir, ring.Query{MaxBytes: 1 << 20})
	if len(got) == 0 || len(got) >= len(in) || len(got)*1000 > 1<<20 {
		t.Fatalf("bounded to 1 MiB: %d frames of 1,000 bytes", len(got))
	}
	if diff := diffFrames(got, in[:len(got)]); diff != "" {
		t.Errorf("bounded answer is not the oldest frames in order: %s", diff)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "stops at 1 MiB") {
		t.Errorf("warnings %q, want one saying where the answer stops", warnings)
	}
}

// randomFrames appends frames of 1000 random bytes, a microsecond apart
// from ts on, to the ring of cfg, opened for each write and closed after.
type randomFrames struct {
	t    *testing.T
	cfg  ring.Configuration
	rng  *rand.Rand
	pool []byte
	key  uint64
	ts   int64 // the last frame's time
}

func newRandomFrames(t *testing.T, cfg ring.Configuration, seed, key uint64) *randomFrames {
	w := &randomFrames{t: t, cfg: cfg, rng: rand.New(rand.NewPCG(seed, seed)), pool: make([]byte, 1<<20), key: key,
		ts: time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC).UnixNano()}
	for i := range w.pool {
		w.pool[i] = byte(w.rng.Uint32())
	}
	return w
}

// write appends bytes of frames and returns the first and last frame's
// times.
func (w *randomFrames) write(bytes int64) (first, last int64) {
	g, err := ring.Open(reporter.NewForTest(io.Discard), w.cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	a := g.NewAppender()
	a.Wait = true
	first = w.ts + 1000
	for n := int64(0); n < bytes; n += 1000 {
		w.ts += 1000
		off := w.rng.IntN(len(w.pool) - 1000)
		a.Append(w.ts, 1000, 1, 0, w.key, w.pool[off:off+1000])
	}
	a.Flush()
	g.Close()
	return first, w.ts
}
