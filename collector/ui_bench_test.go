package collector

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/noc"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// estateTraffic is a tenth of a second of a busier estate: 1,000 flows on
// 200 lines from 2,000 addresses of the two projects, so that frames carry
// 50 charted lines with their talkers (about 40 kB).
func estateTraffic(now time.Time, round int) []flow.Record {
	var recs []flow.Record
	for i := range 1000 {
		n := round*1000 + i
		recs = append(recs, flow.Record{Start: now, End: now, SrcAddr: netip.AddrFrom4([4]byte{10, 2, byte(1 + n%2), byte(n % 250)}),
			DstAddr: netip.AddrFrom4([4]byte{10, 2, 2, byte(n % 97)}), SrcPort: uint16(40000 + n%1000), DstPort: uint16(n % 300),
			Proto: 6, InIf: uint32(n%200 + 1), Bytes: uint64(1000 + n%9000), Packets: 10, TCPFlags: 0x18})
	}
	return recs
}

// BenchmarkLiveViewClients reports the collector's extra CPU with 50
// screens connected: the same traffic (every 100 ms) for the same time
// with no client, then with 50 clients reading the stream: curl processes,
// or 50 pages of the live view at 1920×1080 in one headless Chromium
// (separate processes, so this process's CPU time is the collector's). It
// checks every client got the frames. Run it with -benchtime 1x.
func BenchmarkLiveViewClients(b *testing.B) {
	b.Run("small", func(b *testing.B) {
		benchClients(b, func(now time.Time, _ int) []flow.Record { return liveTraffic(now) }, false)
	})
	b.Run("estate", func(b *testing.B) { benchClients(b, estateTraffic, false) })
	b.Run("estate-chromium", func(b *testing.B) { benchClients(b, estateTraffic, true) })
}

func benchClients(b *testing.B, traffic func(time.Time, int) []flow.Record, browsers bool) {
	if browsers {
		benchBrowsers(b, traffic)
		return
	}
	curl := testutil.Command(b, "curl")
	cfg := liveViewSetup(b)
	cfg.UI.MaxClients = 64
	dir := b.TempDir()
	c, err := New(reporter.NewForTest(nil), cfg, Dependencies{Stdout: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Start(); err != nil {
		b.Fatal(err)
	}
	defer c.Stop()
	s := newSender(b, c.Addrs()[0].String())
	const window = 10 * time.Second
	measure := func() time.Duration {
		cpu0 := testutil.CPUTime()
		for i, end := 0, time.Now().Add(window); time.Now().Before(end); i++ {
			s.send(b, time.Now(), traffic(time.Now(), i))
			time.Sleep(100 * time.Millisecond)
		}
		return testutil.CPUTime() - cpu0
	}
	for range b.N {
		idle := measure()
		var cmds []*exec.Cmd
		for i := range 50 {
			cmd := exec.Command(curl, "-sN", "-o", filepath.Join(dir, "client-"+string(rune('A'+i%26))+string(rune('a'+i/26))), c.UI().URL()+"api/events")
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			cmds = append(cmds, cmd)
		}
		for range 100 {
			var f noc.Frame
			resp, err := http.Get(c.UI().URL() + "api/frame")
			if err == nil {
				json.NewDecoder(resp.Body).Decode(&f)
				resp.Body.Close()
			}
			if f.Health.Clients == 50 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		busy := measure()
		for _, cmd := range cmds {
			cmd.Process.Signal(os.Interrupt)
			cmd.Wait()
		}
		entries, _ := os.ReadDir(dir)
		least := -1
		for _, e := range entries {
			data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
			if n := strings.Count(string(data), "event: frame"); least < 0 || n < least {
				least = n
			}
		}
		var f noc.Frame
		if resp, err := http.Get(c.UI().URL() + "api/frame"); err == nil {
			json.NewDecoder(resp.Body).Decode(&f)
			resp.Body.Close()
		}
		if len(entries) != 50 || least < int(window/time.Second)-1 {
			b.Fatalf("%d clients, the poorest got %d frames in %s", len(entries), least, window)
		}
		extra := (busy - idle).Seconds() / window.Seconds()
		b.ReportMetric(idle.Seconds()/window.Seconds()*100, "%cpu-0-clients")
		b.ReportMetric(busy.Seconds()/window.Seconds()*100, "%cpu-50-clients")
		b.ReportMetric(extra*100, "%cpu-extra")
		b.ReportMetric(float64(least), "frames-least-client")
		b.ReportMetric(float64(f.Health.FramesDropped), "frames-dropped")
		if raw, err := json.Marshal(f); err == nil {
			b.ReportMetric(float64(len(raw)), "frame-bytes")
		}
	}
}

// benchBrowsers is benchClients with 50 pages in one headless Chromium.
func benchBrowsers(b *testing.B, traffic func(time.Time, int) []flow.Record) {
	testutil.Command(b, "chromium")
	cfg := liveViewSetup(b)
	cfg.UI.MaxClients = 64
	c, err := New(reporter.NewForTest(nil), cfg, Dependencies{Stdout: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Start(); err != nil {
		b.Fatal(err)
	}
	defer c.Stop()
	s := newSender(b, c.Addrs()[0].String())
	const window = 10 * time.Second
	// measure returns the CPU time of the window and the rounds of
	// traffic sent in it: with 50 pages drawing, the machine's 2 cores
	// are saturated and fewer rounds go out, so CPU is compared per round.
	measure := func() (time.Duration, int) {
		cpu0 := testutil.CPUTime()
		rounds := 0
		for end := time.Now().Add(window); time.Now().Before(end); rounds++ {
			s.send(b, time.Now(), traffic(time.Now(), rounds))
			time.Sleep(100 * time.Millisecond)
		}
		return testutil.CPUTime() - cpu0, rounds
	}
	frame := func() noc.Frame {
		var f noc.Frame
		if resp, err := http.Get(c.UI().URL() + "api/frame"); err == nil {
			json.NewDecoder(resp.Body).Decode(&f)
			resp.Body.Close()
		}
		return f
	}
	for range b.N {
		idle, idleRounds := measure()
		// A browser opens at most 6 connections to one host, and each page
		// holds one open (the stream): every page gets its own host name,
		// all resolved to the collector's address.
		_, port, _ := net.SplitHostPort(c.UI().Addr())
		url := func(i int) string { return fmt.Sprintf("http://screen%d.test:%s/", i, port) }
		br := testutil.Chromium(b, url(0), 1920, 1080, "--host-resolver-rules=MAP *.test 127.0.0.1")
		for i := 1; i < 50; i++ {
			br.OpenPages(url(i), 1, 1920, 1080)
		}
		for range 600 {
			if frame().Health.Clients == 50 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if n := frame().Health.Clients; n != 50 {
			b.Fatalf("%d pages connected, want 50", n)
		}
		dropped0 := frame().Health.FramesDropped
		var seq0, seq1 float64
		br.Eval(`+document.body.dataset.seq`, &seq0)
		busy, busyRounds := measure()
		br.Eval(`+document.body.dataset.seq`, &seq1)
		f := frame()
		// 50 pages drawing at 1920×1080 take more than 2 cores: a page
		// may draw fewer frames than the server sent (its own backlog);
		// what the server could not queue is in frames-dropped.
		if seq1 <= seq0 {
			b.Fatalf("the first page stayed at frame %v for %s", seq0, window)
		}
		if console := br.Console(); len(console) > 0 {
			b.Errorf("console: %v", console)
		}
		// The extra CPU of 50 screens at the idle run's rate of traffic.
		perIdle, perBusy := idle.Seconds()/float64(idleRounds), busy.Seconds()/float64(busyRounds)
		extra := (perBusy - perIdle) * float64(idleRounds) / window.Seconds()
		b.ReportMetric(idle.Seconds()/window.Seconds()*100, "%cpu-0-clients")
		b.ReportMetric(busy.Seconds()/window.Seconds()*100, "%cpu-50-clients")
		b.ReportMetric(float64(idleRounds), "rounds-0-clients")
		b.ReportMetric(float64(busyRounds), "rounds-50-clients")
		b.ReportMetric(extra*100, "%cpu-extra")
		b.ReportMetric(seq1-seq0, "frames-first-page")
		b.ReportMetric(float64(f.Health.FramesDropped-dropped0), "frames-dropped")
		if raw, err := json.Marshal(f); err == nil {
			b.ReportMetric(float64(len(raw)), "frame-bytes")
		}
	}
}

// BenchmarkArrivalToScreen measures the time from a datagram's sending to
// the first frame of the stream that carries its bytes, for datagrams sent
// at every phase of the second (ns/op is that time, on average; max-ms the
// longest): with the default rollup-delay and ui-delay, and, as the peer,
// with the view following the rollups' own ticks at rollup-delay 1s (what
// a screen within 2 s needed before ui-delay).
func BenchmarkArrivalToScreen(b *testing.B) {
	b.Run("default", func(b *testing.B) {
		cfg := liveViewSetup(b)
		cfg.Rollups.Delay, cfg.UI.Delay = DefaultConfiguration().Rollups.Delay, DefaultConfiguration().UI.Delay
		arrivalToScreen(b, cfg)
	})
	b.Run("peer-rollup-ticks-delay-1s", func(b *testing.B) {
		cfg := liveViewSetup(b)
		cfg.Rollups.Delay, cfg.UI.Delay = time.Second, time.Second
		arrivalToScreen(b, cfg)
	})
}

func arrivalToScreen(b *testing.B, cfg Configuration) {
	c, err := New(reporter.NewForTest(nil), cfg, Dependencies{Stdout: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Start(); err != nil {
		b.Fatal(err)
	}
	defer c.Stop()
	resp, err := http.Get(c.UI().URL() + "api/events")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	events := make(chan sseEvent, 100)
	go readSSE(resp.Body, events)
	s := newSender(b, c.Addrs()[0].String())
	var total, worst time.Duration
	b.ResetTimer()
	for i := range b.N {
		// Wait for a quiet frame, then a phase of the second.
		for quiet := false; !quiet; {
			var f noc.Frame
			json.Unmarshal([]byte((<-events).data), &f)
			quiet = len(f.Lines) == 0 || f.Lines[0].Bps == 0
		}
		time.Sleep(time.Duration(i%10) * 100 * time.Millisecond)
		sent := time.Now()
		s.send(b, sent, liveTraffic(sent))
		for {
			ev := <-events
			var f noc.Frame
			json.Unmarshal([]byte(ev.data), &f)
			if len(f.Lines) > 0 && f.Lines[0].Bps > 0 {
				d := time.Since(sent)
				total += d
				worst = max(worst, d)
				break
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/op")
	b.ReportMetric(float64(worst.Milliseconds()), "max-ms")
}
