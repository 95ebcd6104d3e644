package ring_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/exporter/ring"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// mixedFrames is "the mixed capture" of the benchmarks: every frame of the
// shared mirrored captures (real traffic and payloads, tunnels of every
// kind), with its flow key.
func mixedFrames(b *testing.B) ([]frame, []uint64) {
	dir := testutil.SharedTestdata(b)
	var in []frame
	for _, pat := range []string{"mirror/*/*.pcap", "mirror/*/*.pcapng"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		for _, p := range m {
			in = append(in, readFrames(b, p)...)
		}
	}
	d := decode.New()
	var p decode.Packet
	keys := make([]uint64, len(in))
	for i, f := range in {
		if d.Decode(f.Link, f.Data, f.Length, &p) == decode.ReasonOK {
			keys[i] = ring.PacketKey(&p)
		}
	}
	return in, keys
}

// BenchmarkWrite is the ring's writer on one core: frames of the mixed
// capture appended (copy, compression, index, write to the page cache),
// wire bytes per second as MB/s; with its peer, the same frames written
// as a plain pcap file (what tcpdump -w does).
func BenchmarkWrite(b *testing.B) {
	in, keys := mixedFrames(b)
	var captured int64
	for _, f := range in {
		captured += int64(len(f.Data))
	}
	for _, codec := range []ring.Codec{ring.CodecZstd, ring.CodecNone} {
		b.Run(codec.String(), func(b *testing.B) {
			cfg := ring.Configuration{Dir: b.TempDir(), Size: 1 << 30, Codec: codec}
			g, err := ring.Open(reporter.NewForTest(io.Discard), cfg)
			if err != nil {
				b.Fatal(err)
			}
			a := g.NewAppender()
			a.Wait = true // measure the writer's pace, not how many it drops
			b.SetBytes(captured)
			b.ResetTimer()
			cpu0, wall0 := testutil.CPUTime(), time.Now()
			for i := 0; i < b.N; i++ {
				base := int64(i) * int64(time.Hour)
				for j, f := range in {
					a.Append(base+f.Time, f.Length, f.Link, 0, keys[j], f.Data)
				}
			}
			a.Flush()
			g.Close()
			b.StopTimer()
			// Cores busy (process CPU time over wall-clock time), and Gbit/s
			// of captured bytes per core busy.
			cpu, wall := testutil.CPUTime()-cpu0, time.Since(wall0)
			b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cores")
			b.ReportMetric(float64(captured)*float64(b.N)*8/1e9/cpu.Seconds(), "Gbit/s/core")
			st := g.Stats()
			b.ReportMetric(float64(st.RawBytes)/float64(st.StoredBytes), "compression")
			b.ReportMetric(100*float64(st.IndexBytes)/float64(st.StoredBytes+st.IndexBytes), "index%")
		})
	}
	b.Run("peer=pcap-file", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "peer.pcap"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		w := bufio.NewWriterSize(f, 1<<20)
		w.Write(make([]byte, 24))
		b.SetBytes(captured)
		b.ResetTimer()
		cpu0 := testutil.CPUTime()
		var hdr [16]byte
		for i := 0; i < b.N; i++ {
			for _, fr := range in {
				binary.LittleEndian.PutUint64(hdr[0:], uint64(fr.Time))
				binary.LittleEndian.PutUint32(hdr[8:], uint32(len(fr.Data)))
				binary.LittleEndian.PutUint32(hdr[12:], uint32(fr.Length))
				w.Write(hdr[:])
				w.Write(fr.Data)
			}
		}
		w.Flush()
		b.ReportMetric(float64(captured)*float64(b.N)*8/1e9/(testutil.CPUTime()-cpu0).Seconds(), "Gbit/s/core")
	})
}

// bulkRing fills a ring of SPANFLOW_RING_BENCH_MIB (default 1024) MiB, in
// blocks of SPANFLOW_RING_BENCH_BLOCK_KIB (default DefaultBlockSize),
// with generated traffic (8000 concurrent connections, tunnels, payloads
// made incompressible), an hour long, without overwriting, and writes the same frames as a
// pcap for the peer. It returns the ring, the pcap and a flow in it.
func bulkRing(b *testing.B) (dir, pcap, flow, display string) {
	mib := 1024
	if s := os.Getenv("SPANFLOW_RING_BENCH_MIB"); s != "" {
		mib, _ = strconv.Atoi(s)
	}
	root := b.TempDir()
	dir, pcap = filepath.Join(root, "ring"), filepath.Join(root, "bulk.pcap")
	cfg := ring.Configuration{Dir: dir, Size: int64(mib) << 20, Codec: ring.CodecZstd}
	if s := os.Getenv("SPANFLOW_RING_BENCH_BLOCK_KIB"); s != "" {
		kib, _ := strconv.Atoi(s)
		cfg.BlockSize = kib << 10
	}
	g, err := ring.Open(reporter.NewForTest(io.Discard), cfg)
	if err != nil {
		b.Fatal(err)
	}
	a := g.NewAppender()
	a.Wait = true
	pf, err := os.Create(pcap)
	if err != nil {
		b.Fatal(err)
	}
	pw := bufio.NewWriterSize(pf, 1<<20)
	synth.WritePcap(pw, nil)
	start := time.Date(2026, 12, 5, 1, 0, 0, 0, time.UTC)
	gen := synth.NewBulk(start)
	rng := rand.New(rand.NewPCG(5, 6))
	d := decode.New()
	var p decode.Packet
	var raw int64
	// The payloads hardly compress: writing 90 % of the ring's size keeps
	// every frame, so that the peer's pcap holds the same ones.
	target := int64(mib) << 20 * 9 / 10
	n := 0
	for raw < target {
		pkt := gen.Next()
		data := pkt.Data
		for i := 160; i+8 <= len(data); i += 8 { // past the deepest headers the generator writes
			binary.LittleEndian.PutUint64(data[i:], rng.Uint64())
		}
		var key uint64
		if d.Decode(1, data, len(data), &p) == decode.ReasonOK {
			key = ring.PacketKey(&p)
			if flow == "" && raw > target/2 && p.Proto == 6 {
				flow = fmt.Sprintf("%d %s %s", p.Proto, addrPort(&p, true), addrPort(&p, false))
				ip, l4 := "ip", map[uint8]string{6: "tcp", 17: "udp"}[p.Proto]
				if p.IPv6 {
					ip = "ipv6"
				}
				sa, da := addrPort(&p, true), addrPort(&p, false)
				display = fmt.Sprintf("%s.addr==%s and %s.addr==%s and %s.port==%d and %s.port==%d", ip, trimPort(sa), ip, trimPort(da), l4, p.SrcPort, l4, p.DstPort)
			}
		}
		n++
		// One hour: spread the timestamps.
		ts := start.UnixNano() + int64(float64(raw)/float64(target)*float64(time.Hour))
		a.Append(ts, len(data), 1, 0, key, data)
		var hdr [16]byte
		binary.LittleEndian.PutUint32(hdr[0:], uint32(ts/1e9))
		binary.LittleEndian.PutUint32(hdr[4:], uint32(ts%1e9))
		binary.LittleEndian.PutUint32(hdr[8:], uint32(len(data)))
		binary.LittleEndian.PutUint32(hdr[12:], uint32(len(data)))
		pw.Write(hdr[:])
		pw.Write(data)
		raw += int64(len(data)) + 28
	}
	a.Flush()
	g.Close()
	pw.Flush()
	pf.Close()
	st := g.Stats()
	b.Logf("ring: %d frames, %d MiB on disk, %d segments removed, compression %.2fx, index %.3f%%",
		st.Frames, st.DiskBytes>>20, st.SegmentsRemoved, float64(st.RawBytes)/float64(st.StoredBytes), 100*float64(st.IndexBytes)/float64(st.StoredBytes+st.IndexBytes))
	return dir, pcap, flow, display
}

func addrPort(p *decode.Packet, src bool) string {
	a, port := p.SrcAddr, p.SrcPort
	if !src {
		a, port = p.DstAddr, p.DstPort
	}
	if p.IPv6 {
		return fmt.Sprintf("[%x:%x:%x:%x:%x:%x:%x:%x]:%d", binary.BigEndian.Uint16(a[0:]), binary.BigEndian.Uint16(a[2:]), binary.BigEndian.Uint16(a[4:]), binary.BigEndian.Uint16(a[6:]),
			binary.BigEndian.Uint16(a[8:]), binary.BigEndian.Uint16(a[10:]), binary.BigEndian.Uint16(a[12:]), binary.BigEndian.Uint16(a[14:]), port)
	}
	return fmt.Sprintf("%d.%d.%d.%d:%d", a[0], a[1], a[2], a[3], port)
}

// BenchmarkQueryOneFlow is one flow's frames out of a large ring covering
// an hour (page cache warm, as on a probe that just wrote them); its peer
// is tshark's display filter over the same frames as one pcap file, which
// is how they would be found without the ring's index.
func BenchmarkQueryOneFlow(b *testing.B) {
	dir, pcap, flow, display := bulkRing(b)
	key, _, err := ring.ParseFlow(flow)
	if err != nil {
		b.Fatal(err)
	}
	var found int
	b.Run("ring", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			pkts, st, err := ring.Search(dir, ring.Query{Key: key}, func(string) {})
			if err != nil {
				b.Fatal(err)
			}
			found = len(pkts)
			b.ReportMetric(float64(st.BlocksRead), "blocks-read")
			b.ReportMetric(float64(st.Blocks), "blocks")
		}
		b.ReportMetric(float64(found), "frames")
	})
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		b.Skip("tshark not found: no peer")
	}
	b.Run("peer=tshark", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			out, err := exec.Command(tshark, "-r", pcap, "-Y", display, "-T", "fields", "-e", "frame.number").Output()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(countLines(out)), "frames")
		}
	})
}

func trimPort(s string) string {
	i := strings.LastIndexByte(s, ':')
	return strings.Trim(s[:i], "[]")
}

func countLines(b []byte) int {
	n := 0
	for _, c := range b {
		if c == '\n' {
			n++
		}
	}
	return n
}

// BenchmarkPacketKey is what the capture goroutine adds per frame when
// the ring is on: the flow key (a Community ID hash) of a decoded packet.
func BenchmarkPacketKey(b *testing.B) {
	in, _ := mixedFrames(b)
	d := decode.New()
	var pkts []decode.Packet
	for _, f := range in {
		var p decode.Packet
		if d.Decode(f.Link, f.Data, f.Length, &p) == decode.ReasonOK {
			pkts = append(pkts, p)
		}
	}
	b.ResetTimer()
	var sink uint64
	for i := 0; i < b.N; i++ {
		sink += ring.PacketKey(&pkts[i%len(pkts)])
	}
	_ = sink
}
