package pipeline_test

import (
	"bytes"
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/testutil"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/spanflow/spanflow/bench/ipfixgen"
	"github.com/spanflow/spanflow/collector/listen"
	"github.com/spanflow/spanflow/collector/output/ndjson"
	"github.com/spanflow/spanflow/collector/pipeline"
	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

type tagger struct{}

func (tagger) Enrich(r *flow.Record) { r.Direction = "east-west" }

// TestListenDecodeWrite sends generated IPFIX over loopback UDP and TCP
// through real sockets, the pipeline and the NDJSON output, and checks the
// documents against the generator's ground truth; a datagram from outside
// the allowed networks is dropped and counted.
func TestListenDecodeWrite(t *testing.T) {
	r := reporter.NewForTest(nil)
	var out testutil.SyncBuffer
	nd, err := ndjson.New(r, ndjson.DefaultConfiguration(), &out)
	if err != nil {
		t.Fatal(err)
	}
	cfg := pipeline.DefaultConfiguration()
	cfg.Allow, _ = pipeline.ParseAllow([]string{"127.0.0.0/8"})
	p, err := pipeline.New(r, cfg, pipeline.Dependencies{
		Enrichers: []flow.Enricher{tagger{}},
		Outputs:   []pipeline.Output{{Name: "stdout", Sink: nd}},
	})
	if err != nil {
		t.Fatal(err)
	}
	lc := listen.DefaultConfiguration()
	lc.UDP, lc.TCP, lc.Sockets = []string{"127.0.0.1:0"}, []string{"127.0.0.1:0"}, 2
	l, err := listen.New(r, lc, listen.Dependencies{NewHandler: func() listen.Handler { return p.NewWorker() }})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []interface{ Start() error }{nd, p, l} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	addrs := l.Addrs()
	udp, err := net.Dial("udp", addrs[0].String())
	if err != nil {
		t.Fatal(err)
	}
	g := ipfixgen.New(7, 10)
	udp.Write(g.Template())
	time.Sleep(50 * time.Millisecond)
	for range 10 {
		udp.Write(g.AppendData(nil))
	}
	tcp, err := net.Dial("tcp", addrs[1].String())
	if err != nil {
		t.Fatal(err)
	}
	g2 := ipfixgen.New(8, 5)
	tcp.Write(g2.Template())
	for range 4 {
		tcp.Write(g2.AppendData(nil))
	}
	tcp.Close()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && value(nd.Docs()) < 120 {
		time.Sleep(20 * time.Millisecond)
	}
	l.Stop()
	p.Stop()
	nd.Stop()
	lines := out.Lines()
	if len(lines) != 122 {
		t.Fatalf("got %d documents, want 120 flows (100 over UDP, 20 over TCP) and 2 exporter statistics", len(lines))
	}
	// The statistics of the interval Stop ended: per domain, the datagrams,
	// records and templates sent.
	stats := statsDocs(t, lines)
	if len(stats) != 2 {
		t.Fatalf("%d exporter statistics documents, want 2", len(stats))
	}
	for i, want := range [][3]uint64{{11, 100, 1}, {5, 20, 1}} {
		s := stats[i].Spanflow.Exporter
		if got := [3]uint64{s.Datagrams, s.Records, s.Templates}; got != want || s.SequenceLosses != 0 || stats[i].Observer.IP != "127.0.0.1" {
			t.Errorf("statistics of domain %d: %+v (datagrams, records, templates %v), want %v", 7+i, stats[i], got, want)
		}
	}
	var bytesSum, pkts float64
	for _, line := range lines {
		var doc map[string]any
		if err := json.Unmarshal([]byte(line), &doc); err != nil {
			t.Fatalf("not JSON: %v: %s", err, line)
		}
		if doc["event"].(map[string]any)["kind"] == "metric" {
			continue
		}
		nw := doc["network"].(map[string]any)
		bytesSum += nw["bytes"].(float64)
		pkts += nw["packets"].(float64)
		if doc["flow"].(map[string]any)["direction"] != "east-west" {
			t.Fatalf("enricher not applied: %s", line)
		}
		if doc["destination"].(map[string]any)["port"] != 443.0 {
			t.Fatalf("wrong destination port: %s", line)
		}
	}
	// Generator ground truth: flow i has 1000+i%1000 bytes and 10+i%10 packets.
	var wantBytes, wantPkts float64
	for i := range 100 {
		wantBytes += float64(1000 + i%1000)
		wantPkts += float64(10 + i%10)
	}
	for i := range 20 {
		wantBytes += float64(1000 + i%1000)
		wantPkts += float64(10 + i%10)
	}
	if bytesSum != wantBytes || pkts != wantPkts {
		t.Errorf("bytes %v packets %v, want %v and %v", bytesSum, pkts, wantBytes, wantPkts)
	}

	// A datagram from outside the allowed networks.
	w := p.NewWorker()
	w.Handle(datagram("198.51.100.1:1000", g.AppendData(nil)))
	if n := value(p.Drops("not_allowed")); n != 1 {
		t.Errorf("not_allowed drops = %v, want 1", n)
	}

	// The metrics are lint-clean and labelled by exporter.
	mfs, err := r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	for _, mf := range mfs {
		expfmt.MetricFamilyToText(&text, mf)
	}
	problems, err := promlint.New(bytes.NewReader(text.Bytes())).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		t.Errorf("promlint: %s: %s", pr.Metric, pr.Text)
	}
	for _, want := range []string{
		`spanflow_collector_records_total{exporter="127.0.0.1",protocol="ipfix"} 120`,
		`spanflow_collector_templates{exporter="127.0.0.1"} 2`,
		`spanflow_collector_drops_total{reason="not_allowed"} 1`,
		`spanflow_listen_kernel_drops_total 0`,
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func datagram(src string, payload []byte) decoders.Datagram {
	return decoders.Datagram{Source: netip.MustParseAddrPort(src), Payload: payload, Received: time.Now()}
}

func value(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
