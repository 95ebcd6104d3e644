package demo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// A port in use stops the demo before it starts anything, with a line
// naming the flag that moves it; a socket bound with SO_REUSEPORT (another
// collector) counts as in use too.
func TestPortInUse(t *testing.T) {
	reusePort := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) }); err != nil {
			return err
		}
		return serr
	}}
	udp, err := reusePort.ListenPacket(context.Background(), "udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	udpPort := udp.LocalAddr().(*net.UDPAddr).Port
	tcpPort := tcp.Addr().(*net.TCPAddr).Port

	for _, c := range []struct {
		name           string
		port, vcenter  int
		flag, addrPort string
	}{
		{"IPFIX port", udpPort, 0, "--port", strconv.Itoa(udpPort)},
		{"vCenter port", 0, tcpPort, "--vcenter-port", strconv.Itoa(tcpPort)},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			cfg := testConfiguration(t)
			cfg.Port, cfg.VCenterPort = c.port, c.vcenter
			var out, errOut bytes.Buffer
			_, err := Run(context.Background(), reporter.NewForTest(nil), cfg, Streams{Out: &out, Err: &errOut})
			var inUse *PortInUseError
			if !errors.As(err, &inUse) || inUse.Flag != c.flag {
				t.Fatalf("error = %v, want a port in use naming %s", err, c.flag)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.Contains(msg, c.flag) || !strings.Contains(msg, c.addrPort) {
				t.Errorf("message %q: want one line naming %s and the port", msg, c.flag)
			}
			if out.Len() != 0 {
				t.Errorf("nothing should be printed on stdout, got %q", out.String())
			}
			if _, err := os.Stat(cfg.Output); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("output file made although the demo did not start: %v", err)
			}
			goroutinesSettle(t, before)
		})
	}
}

// Ctrl-C (the context cancelled) ends the traffic early: the flows metered
// so far are exported, written and summarized, and everything stops.
func TestInterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a few seconds of traffic: skipped under -short")
	}
	before := runtime.NumGoroutine()
	cfg := testConfiguration(t)
	cfg.Duration = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	var errOut testutil.SyncBuffer
	go func() {
		// Cancel once traffic flows.
		for !strings.Contains(errOut.String(), "mirroring") && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(3 * time.Second)
		cancel()
	}()
	start := time.Now()
	res, err := Run(ctx, reporter.NewForTest(nil), cfg, Streams{Out: &out, Err: &errOut})
	cancel()
	if err != nil {
		t.Fatalf("interrupted demo: %v", err)
	}
	if took := time.Since(start); took > 45*time.Second || !res.Interrupted {
		t.Errorf("took %s, interrupted %v: want an early stop", took, res.Interrupted)
	}
	goroutinesSettle(t, before)
	portsFree(t, res)
	// Every packet read was metered and every flow written.
	if res.Summary.Total.Packets != res.Exporter.Frames || res.Summary.Total.Flows != res.Exporter.Flows || res.Exporter.Frames == 0 {
		t.Errorf("file has %d packets in %d flows; the exporter read %d packets and exported %d flows",
			res.Summary.Total.Packets, res.Summary.Total.Flows, res.Exporter.Frames, res.Exporter.Flows)
	}
	if !strings.Contains(out.String(), "traffic until interrupted") || !strings.Contains(out.String(), "Top VM conversations") {
		t.Errorf("summary not printed after the interruption:\n%s", out.String())
	}
}

// Ctrl-C while the vCenter is being started is not a failure either: the
// demo stops what it started and returns without a summary.
func TestInterruptedWhileStarting(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the simulated vCenter: skipped under -short")
	}
	before := runtime.NumGoroutine()
	cfg := testConfiguration(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	var errOut testutil.SyncBuffer
	go func() {
		for !strings.Contains(errOut.String(), "starting a simulated vCenter") && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	res, err := Run(ctx, reporter.NewForTest(nil), cfg, Streams{Out: &out, Err: &errOut})
	cancel()
	if err != nil || !res.Interrupted {
		t.Fatalf("Run = %v (interrupted %v), want no error after Ctrl-C", err, res != nil && res.Interrupted)
	}
	if out.Len() != 0 {
		t.Errorf("summary printed without traffic:\n%s", out.String())
	}
	goroutinesSettle(t, before)
	portsFree(t, res)
}

// With an Elasticsearch URL, every document of the file is indexed.
func TestElasticsearch(t *testing.T) {
	url := testutil.Elasticsearch(t)
	defer http.DefaultClient.CloseIdleConnections()
	before := runtime.NumGoroutine()
	cfg := testConfiguration(t)
	cfg.Duration = 4 * time.Second
	cfg.ESURL = url
	cfg.ObservationDomain = uint32(time.Now().UnixNano()%1_000_000_000) + 1 // this run's documents only
	var out, errOut bytes.Buffer
	res, err := Run(context.Background(), reporter.NewForTest(nil), cfg, Streams{Out: &out, Err: &errOut})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, errOut.String())
	}
	goroutinesSettle(t, before)

	// What the file holds, by project of the source VM.
	f, err := os.Open(cfg.Output)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines, payments := 0, 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var d document
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatal(err)
		}
		lines++
		if d.Source.VSphere != nil && d.Source.VSphere.Project == "payments" {
			payments++
		}
	}
	if lines == 0 || payments == 0 {
		t.Fatalf("file has %d documents, %d from payments", lines, payments)
	}

	// What the cluster holds, asked directly.
	count := func(query string) int {
		t.Helper()
		body := fmt.Sprintf(`{"query":{"bool":{"filter":[{"term":{"netflow.observation_domain_id":%d}}%s]}}}`, cfg.ObservationDomain, query)
		resp, err := http.Post(url+"/"+IndexPattern+"/_count", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r struct {
			Count int `json:"count"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != 200 {
			t.Fatalf("count: %v (status %d)", err, resp.StatusCode)
		}
		return r.Count
	}
	if n := count(""); n != lines || res.ESIndexed != int64(lines) {
		t.Errorf("Elasticsearch holds %d documents of this run (demo said %d), the file %d", n, res.ESIndexed, lines)
	}
	if n := count(`,{"term":{"source.vsphere.project":"payments"}}`); n != payments {
		t.Errorf("Elasticsearch holds %d documents from payments VMs, the file %d", n, payments)
	}
	for _, want := range []string{"documents of this run in " + IndexPattern, "spanflow dashboards install --kibana-url", fmt.Sprint(cfg.ObservationDomain)} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output does not say %q:\n%s", want, out.String())
		}
	}
}

// A document that is not JSON is an error naming the file and line, not a
// silent skip.
func TestSummarizeBadLine(t *testing.T) {
	_, err := summarize(strings.NewReader("{\"network\":{\"bytes\":1}}\n{not json\n"), "flows.ndjson", 0)
	if err == nil || !strings.Contains(err.Error(), "flows.ndjson line 2") {
		t.Errorf("error = %v, want one naming flows.ndjson line 2", err)
	}
}

// The traffic is the same for the same seed, rate and duration, and
// follows the rate asked for.
func TestTrafficDeterministicAndPaced(t *testing.T) {
	cfg := TrafficConfiguration{Seed: 7, Rate: 5000, Duration: 6 * time.Second, Base: time.Unix(1_700_000_000, 0)}
	sum := func() (n int, last int64, digest uint64) {
		g := NewTraffic(DefaultEstate(), cfg)
		var p Packet
		prev := int64(0)
		for g.Next(&p) {
			if p.Time < prev {
				t.Fatalf("packet %d goes back in time", n)
			}
			prev = p.Time
			n++
			for _, b := range p.Frame {
				digest = digest*31 + uint64(b)
			}
		}
		return n, prev, digest
	}
	n1, last, d1 := sum()
	n2, _, d2 := sum()
	if n1 != n2 || d1 != d2 {
		t.Errorf("two generations differ: %d/%x and %d/%x packets/digest", n1, d1, n2, d2)
	}
	if end := cfg.Base.Add(cfg.Duration).UnixNano(); last > end {
		t.Errorf("last packet %s after the end", time.Duration(last-end))
	}
	// Sessions stop starting sessionTail before the end.
	want := float64(cfg.Rate) * (cfg.Duration - sessionTail).Seconds()
	if f := float64(n1); f < 0.8*want || f > 1.3*want {
		t.Errorf("%d packets, want about %.0f at %d/s", n1, want, cfg.Rate)
	}
}
