package collector

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/noc"
	"github.com/spanflow/spanflow/exporter/ipfix"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// sseEvent is one server-sent event.
type sseEvent struct{ name, data string }

// readSSE sends the events of an open stream to ch until it ends.
func readSSE(body io.Reader, ch chan<- sseEvent) {
	defer close(ch)
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var ev sseEvent
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "event: "):
			ev.name = strings.TrimPrefix(l, "event: ")
		case strings.HasPrefix(l, "data: "):
			ev.data = strings.TrimPrefix(l, "data: ")
		case l == "" && ev.name != "":
			ch <- ev
			ev = sseEvent{}
		}
	}
}

// liveViewSetup writes the networks, interface names and rules files of the
// live view tests: payments and web are projects, 127.0.0.1 (the exporter)
// has vmnic0 (100 Mbit/s) and vmnic1.
func liveViewSetup(t testing.TB) Configuration {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := DefaultConfiguration()
	cfg.Input.NetFlowListen, cfg.Input.IPFIXListen, cfg.Input.SFlowListen, cfg.Input.IPFIXTCPListen = []string{"127.0.0.1:0"}, nil, nil, nil
	cfg.Input.Sockets = 1
	cfg.MetricsListen = ""
	stats := time.Second
	cfg.Input.ExporterStatsInterval = &stats
	cfg.Enrichment.Networks = write("networks.yaml", "10.2.1.0/24: {name: pay, project: payments}\n10.2.2.0/24: {name: www, project: web}\n10.0.0.0/8: {name: dc}\n")
	cfg.Enrichment.InterfaceNames = write("ifnames.yaml", "127.0.0.1: {1: vmnic0, 2: vmnic1}\n")
	cfg.Alerts.Rules = write("rules.yaml", `lines:
  "127.0.0.1 vmnic0": {capacity: 100Mbit, name: esx-a01 vmnic0}
rules:
  - name: line_busy
    value: utilisation
    line: esx-a01 vmnic0
    above: 0.1
    for: 1s
    severity: warning
`)
	cfg.Alerts.KibanaURL = "http://kibana.example:5601"
	// Elasticsearch is down for the whole test: nothing listens there.
	cfg.Outputs.Output = []string{"elasticsearch"}
	cfg.Elasticsearch.Connection.URLs = []string{"http://127.0.0.1:1"}
	cfg.Elasticsearch.SpoolDir = filepath.Join(dir, "spool")
	cfg.Rollups.Delay = time.Second
	cfg.UI.Listen = "127.0.0.1:0"
	return cfg
}

// sender encodes records with the exporter's IPFIX encoder and sends each
// message as a UDP datagram, counting them.
type sender struct {
	conn *net.UDPConn
	enc  *ipfix.Encoder
	sent atomic.Int64
}

// n is the number of datagrams sent so far.
func (s *sender) n() int { return int(s.sent.Load()) }

func newSender(t testing.TB, addr string) *sender {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s := &sender{conn: conn}
	if s.enc, err = ipfix.New(reporter.NewForTest(nil), ipfix.DefaultConfiguration(), transportFunc(func(msg []byte) error {
		s.sent.Add(1)
		_, err := conn.Write(msg)
		return err
	})); err != nil {
		t.Fatal(err)
	}
	return s
}

// send may run on another goroutine than the test's: it reports with Error.
func (s *sender) send(t testing.TB, now time.Time, recs []flow.Record) {
	if err := s.enc.Write(now, recs); err != nil {
		t.Error(err)
	}
	s.enc.Flush(now)
}

// liveTraffic is one second of the generated traffic: on vmnic0, payments
// (10.2.1.10, 3 MB over TCP, 30 of 1000 packets retransmitted, RTT 20 ms;
// 10.2.1.11, 1 MB over UDP) to web; on vmnic1, web to the outside (2 MB).
// Each record spans no time, so its bytes fall in the second it arrives.
func liveTraffic(now time.Time) []flow.Record {
	a := netip.MustParseAddr
	rec := func(src, dst string, proto uint8, ifidx uint32, bytes uint64) flow.Record {
		return flow.Record{Start: now, End: now, SrcAddr: a(src), DstAddr: a(dst), SrcPort: 40000, DstPort: 443,
			Proto: proto, InIf: ifidx, Bytes: bytes, Packets: 1000, TCPFlags: 0x18}
	}
	tcp := rec("10.2.1.10", "10.2.2.20", 6, 1, 3e6)
	tcp.TCP.Retransmissions, tcp.TCP.RTTClient, tcp.TCP.RTTServer = 30, 15*time.Millisecond, 5*time.Millisecond
	return []flow.Record{tcp, rec("10.2.1.11", "10.2.2.21", 17, 1, 1e6), rec("10.2.2.30", "198.51.100.7", 17, 2, 2e6)}
}

// TestLiveView runs a collector with --ui and Elasticsearch down, sends
// it generated IPFIX over UDP, and reads the page's stream with an HTTP
// client: the line load history adds up to the bytes sent per line, the
// Sankey and the direction split to the bytes per project pair and
// direction, the top talker, RTT p95 and retransmission ratio are those of
// the traffic, the exporter's datagrams are those sent, and the alert on
// the line fires on screen. The page and its assets are served; writes are
// refused.
func TestLiveView(t *testing.T) {
	cfg := liveViewSetup(t)
	c, err := New(reporter.NewForTest(nil), cfg, Dependencies{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	base := c.UI().URL()

	for path, want := range map[string]string{"": "text/html", "noc.js": "text/javascript", "noc.css": "text/css"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), want) || len(b) < 500 {
			t.Errorf("GET /%s: %s %q, %d bytes", path, resp.Status, resp.Header.Get("Content-Type"), len(b))
		}
		if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("GET /%s: no content security policy", path)
		}
	}
	if resp, err := http.Post(base+"api/events", "text/plain", nil); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %v %v, want 405", resp.Status, err)
	}

	resp, err := http.Get(base + "api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("stream Content-Type %q", ct)
	}
	events := make(chan sseEvent, 1000)
	go readSSE(resp.Body, events)
	first := <-events
	var hello noc.Hello
	if err := json.Unmarshal([]byte(first.data), &hello); first.name != "hello" || err != nil {
		t.Fatalf("first event %s: %v", first.name, err)
	}
	if hello.Tick != 1 || hello.Points != 900 || hello.Kibana != "http://kibana.example:5601" {
		t.Errorf("hello: %+v", hello)
	}

	s := newSender(t, c.Addrs()[0].String())
	const rounds = 6
	go func() {
		for i := range rounds {
			s.send(t, time.Now(), liveTraffic(time.Now()))
			if i < rounds-1 {
				time.Sleep(time.Second)
			}
		}
	}()

	lineBits := map[string]float64{}
	var last noc.Frame
	var seqs []uint64
	alertSeen, quiet := false, 0
	rtt, retrans := map[float64]int{}, map[float64]int{}
	deadline := time.After(40 * time.Second)
	for quiet < 4 { // until four frames after the traffic with no bytes on any line
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("stream ended")
			}
			if ev.name != "frame" {
				continue
			}
			var f noc.Frame
			if err := json.Unmarshal([]byte(ev.data), &f); err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, f.Seq)
			total := 0.0
			for _, l := range f.Lines {
				lineBits[l.Name] += l.Bps * hello.Tick
				total += l.Bps
				if l.Name == "esx-a01 vmnic0" && l.Bps > 0 {
					if l.Capacity != 100e6 || l.Util == nil || math.Abs(*l.Util-l.Bps/100e6) > 1e-9 {
						t.Errorf("vmnic0 capacity %g util %v", l.Capacity, l.Util)
					}
					if len(l.Top) < 2 || l.Top[0].Addr != "10.2.1.10" || l.Top[1].Addr != "10.2.1.11" {
						t.Errorf("vmnic0 top talkers %+v, want 10.2.1.10 then 10.2.1.11", l.Top)
					}
				}
			}
			for _, p := range f.Projects {
				if p.Name == "payments" && p.RTTp95 != nil {
					rtt[math.Round(*p.RTTp95)]++
				}
				if p.Name == "payments" && p.Retrans != nil {
					retrans[*p.Retrans]++
				}
			}
			for _, a := range f.Alerts {
				if a.Rule == "line_busy" && a.Key == "127.0.0.1 vmnic0" && a.On == "esx-a01 vmnic0" && strings.Contains(a.Discover, "kibana.example") {
					alertSeen = true
				}
			}
			last = f
			if total == 0 && s.n() > 0 && c.Datagrams() >= uint64(s.n()) && len(lineBits) > 0 {
				quiet++
			} else {
				quiet = 0
			}
		case <-deadline:
			t.Fatalf("no quiet frame after the traffic: lines %v", lineBits)
		}
	}
	// Exporter statistics come every second: wait for those of the last datagrams.
	var exp noc.Exporter
	for range 5 {
		for _, e := range last.Exporters {
			if e.Addr == "127.0.0.1" {
				exp = e
			}
		}
		if exp.Datagrams >= uint64(s.n()) {
			break
		}
		ev := <-events
		json.Unmarshal([]byte(ev.data), &last)
	}

	t.Logf("%d frames, seq %d..%d; %d datagrams sent; lines (bits) %v; RTT p95 %v; retransmission ratios %v",
		len(seqs), seqs[0], seqs[len(seqs)-1], s.n(), lineBits, rtt, retrans)
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Errorf("frames %d then %d: the client lost frames", seqs[i-1], seqs[i])
		}
	}
	near := func(got, want float64) bool { return math.Abs(got-want) <= 1e-6*want }
	for name, bytes := range map[string]float64{"esx-a01 vmnic0": rounds * 4e6, "127.0.0.1 vmnic1": rounds * 2e6} {
		if !near(lineBits[name]/8, bytes) {
			t.Errorf("line %s: the stream carried %.0f bytes, %.0f were sent", name, lineBits[name]/8, bytes)
		}
	}
	links := map[string]float64{}
	for _, l := range last.Links {
		links[l.From+" → "+l.To] = l.Bytes
	}
	if !near(links["payments → web"], rounds*4e6) || !near(links["web → outside"], rounds*2e6) || len(links) != 2 {
		t.Errorf("Sankey links (bytes) %v, want payments → web %g, web → outside %g", links, rounds*4e6, rounds*2e6)
	}
	split := map[string]float64{}
	for _, r := range last.Split {
		split[r.Name] = r.Bytes
	}
	if !near(split["east-west"], rounds*4e6) || !near(split["north-south"], rounds*2e6) || split["other"] != 0 {
		t.Errorf("split (bytes) %v", split)
	}
	if len(rtt) != 1 || rtt[20] == 0 {
		t.Errorf("payments RTT p95 %v, want 20 ms", rtt)
	}
	if len(retrans) != 1 || retrans[0.03] == 0 {
		t.Errorf("payments retransmission ratio %v, want 0.03 (30 of 1000 TCP packets)", retrans)
	}
	if exp.Datagrams != uint64(s.n()) || exp.SequenceLosses != 0 || exp.Templates == 0 {
		t.Errorf("exporter 127.0.0.1: %+v; %d datagrams sent", exp, s.n())
	}
	if last.Health.Datagrams != uint64(s.n()) {
		t.Errorf("health: %d datagrams, %d sent", last.Health.Datagrams, s.n())
	}
	if !alertSeen {
		t.Error("the line_busy alert on vmnic0 never showed")
	}
}

// renamingProxy forwards to the test cluster, renaming every spanflow-
// index, template and policy to prefix+"spanflow-" (so the shared
// cluster's spanflow-flows-* are not written), until closed.
func renamingProxy(t *testing.T, es, prefix string) *http.Server {
	target, err := url.Parse(es)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	direct := rp.Director
	rp.Director = func(r *http.Request) {
		direct(r)
		r.URL.Path = strings.ReplaceAll(r.URL.Path, "spanflow-", prefix+"spanflow-")
		r.URL.RawPath = ""
		if r.Body != nil {
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			b = bytes.ReplaceAll(b, []byte(`"spanflow-`), []byte(`"`+prefix+"spanflow-"))
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
			r.Header.Del("Content-Length")
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rp, Addr: l.Addr().String()}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return srv
}

// TestLiveViewElasticsearchStops: flows are indexed through a proxy to the
// test cluster while the page's stream runs; then the proxy closes (the
// cluster is gone, as far as the collector can tell) and more traffic
// comes: the stream keeps a frame every tick, and its line bytes add up to
// all the traffic sent, before and during the outage, while the cluster
// got none of the outage's flows.
func TestLiveViewElasticsearchStops(t *testing.T) {
	es := testutil.Elasticsearch(t)
	prefix := fmt.Sprintf("noctest%d-", time.Now().UnixNano())
	proxy := renamingProxy(t, es, prefix)
	esDo := func(method, path string) []byte {
		req, _ := http.NewRequest(method, es+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return b
	}
	t.Cleanup(func() {
		for _, ix := range strings.Fields(string(esDo("GET", "/_cat/indices/"+prefix+"*?h=index"))) {
			esDo("DELETE", "/"+ix)
		}
		var tpl struct {
			IndexTemplates []struct{ Name string } `json:"index_templates"`
		}
		json.Unmarshal(esDo("GET", "/_index_template/"+prefix+"*"), &tpl)
		for _, x := range tpl.IndexTemplates {
			esDo("DELETE", "/_index_template/"+x.Name)
		}
	})
	count := func() int {
		esDo("POST", "/"+prefix+"spanflow-flows-*/_refresh")
		var c struct{ Count int }
		json.Unmarshal(esDo("GET", "/"+prefix+"spanflow-flows-*/_count?q=_exists_:network.bytes"), &c)
		return c.Count
	}

	cfg := liveViewSetup(t)
	cfg.Elasticsearch.Connection.URLs = []string{"http://" + proxy.Addr}
	cfg.Elasticsearch.Setup.Lifecycle, cfg.Elasticsearch.Setup.Replicas = "daily", 0
	cfg.Elasticsearch.FlushInterval = 200 * time.Millisecond
	c, err := New(reporter.NewForTest(nil), cfg, Dependencies{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	resp, err := http.Get(c.UI().URL() + "api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := make(chan sseEvent, 1000)
	go readSSE(resp.Body, events)
	<-events // hello

	var seqs []uint64
	bits := 0.0
	drain := func(until func() bool, what string) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for !until() {
			select {
			case ev := <-events:
				if ev.name != "frame" {
					continue
				}
				var f noc.Frame
				if err := json.Unmarshal([]byte(ev.data), &f); err != nil {
					t.Fatal(err)
				}
				seqs = append(seqs, f.Seq)
				for _, l := range f.Lines {
					bits += l.Bps
				}
			case <-deadline:
				t.Fatalf("waiting for %s: %d frames", what, len(seqs))
			}
		}
	}
	s := newSender(t, c.Addrs()[0].String())
	for range 3 {
		s.send(t, time.Now(), liveTraffic(time.Now()))
		drain(func() bool { return true }, "")
		time.Sleep(time.Second)
	}
	next := 0
	drain(func() bool {
		if next++; next%10 == 0 {
			return count() == 9
		}
		return false
	}, "the first 9 flows in Elasticsearch")
	if err := proxy.Close(); err != nil {
		t.Fatal(err)
	}
	before := len(seqs)
	for range 3 {
		s.send(t, time.Now(), liveTraffic(time.Now()))
		time.Sleep(time.Second)
	}
	const sent = 6 * 6e6 // bytes: six rounds on the two lines
	drain(func() bool { return math.Abs(bits/8-sent) < 1 && len(seqs) >= before+5 }, "the outage's traffic on the stream")
	t.Logf("%d frames before the cluster went away, %d since; %.0f bytes on the lines' streams, %.0f sent; %d flows in the cluster",
		before, len(seqs)-before, bits/8, float64(sent), count())
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Errorf("frames %d then %d: a tick without a frame", seqs[i-1], seqs[i])
		}
	}
	if n := count(); n != 9 {
		t.Errorf("%d flows in the cluster, want the 9 sent before it went away", n)
	}
}

// TestLiveViewAheadOfRollupDelay: with the default rollup-delay (5 s) the
// view still shows a second ui-delay after it ends: the first frame
// carrying a datagram's bytes is of the second it was sent in, and is
// built before the rollups close that second; its volume is the traffic's.
// With ui-delay at rollup-delay the view follows the rollups' own ticks
// instead (the control: then the frame comes rollup-delay late).
func TestLiveViewAheadOfRollupDelay(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ahead bool
	}{{"provisional", true}, {"rollups-ticks", false}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := liveViewSetup(t)
			cfg.Rollups.Delay = DefaultConfiguration().Rollups.Delay
			cfg.UI.Delay = DefaultConfiguration().UI.Delay
			if !tc.ahead {
				cfg.UI.Delay = cfg.Rollups.Delay
			}
			c, err := New(reporter.NewForTest(nil), cfg, Dependencies{Stdout: io.Discard})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			defer c.Stop()
			resp, err := http.Get(c.UI().URL() + "api/events")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			events := make(chan sseEvent, 100)
			go readSSE(resp.Body, events)
			s := newSender(t, c.Addrs()[0].String())
			sent := time.Now()
			s.send(t, sent, liveTraffic(sent))
			deadline := time.After(20 * time.Second)
			for {
				var ev sseEvent
				select {
				case ev = <-events:
				case <-deadline:
					t.Fatal("no frame carried the traffic in 20 s")
				}
				var f noc.Frame
				json.Unmarshal([]byte(ev.data), &f)
				if len(f.Lines) == 0 || f.Lines[0].Bps == 0 {
					continue
				}
				second := sent.Truncate(time.Second).Add(time.Second)
				closes := second.Add(cfg.Rollups.Delay)
				t.Logf("sent %s, frame of the second ending %s built %s (%s after sending)", sent.Format("15:04:05.000"),
					f.Time.Format("15:04:05"), f.Built.Format("15:04:05.000"), f.Built.Sub(sent).Round(time.Millisecond))
				if !f.Time.Equal(second) {
					t.Errorf("the first frame with the bytes is of the second ending %s, want %s", f.Time, second)
				}
				if early := f.Built.Before(closes); early != tc.ahead {
					t.Errorf("frame built at %s, the rollups close the second at %s: ahead %v, want %v", f.Built, closes, early, tc.ahead)
				}
				var bytes float64
				for _, l := range f.Lines {
					bytes += l.Bps / 8
				}
				if bytes != 6e6 {
					t.Errorf("the frame shows %.0f bytes in the second, sent 6e6", bytes)
				}
				return
			}
		})
	}
}
