package exporter

import (
	"context"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"gopkg.in/yaml.v3"

	"github.com/spanflow/spanflow/exporter/capture"
	"github.com/spanflow/spanflow/exporter/internal/verify"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// memory keeps every message sent.
type memory struct{ msgs [][]byte }

func (m *memory) Send(b []byte) error {
	m.msgs = append(m.msgs, append([]byte(nil), b...))
	return nil
}

var base = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testConfiguration(pcap string) Configuration {
	cfg := DefaultConfiguration()
	cfg.Pcap = pcap
	cfg.Collectors = []string{"127.0.0.1:4739"}
	cfg.ActiveTimeout, cfg.IdleTimeout = Duration(synth.MixedActive), Duration(synth.MixedIdle)
	cfg.ObservationDomain = 42
	return cfg
}

// runFile runs a capture through the whole pipeline into memory; each
// setup sees the exporter before the run and after it.
func runFile(t *testing.T, cfg Configuration, setup ...func(*Exporter)) (Summary, [][]byte) {
	t.Helper()
	src, err := capture.OpenFile(cfg.Pcap)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	mem := &memory{}
	x, err := New(reporter.NewForTest(nil), cfg, mem)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range setup {
		f(x)
	}
	sum, err := x.Run(context.Background(), src)
	if err != nil {
		t.Fatalf("run %s: %v", cfg.Pcap, err)
	}
	return sum, mem.msgs
}

func mixedCapture(t *testing.T) (*synth.Capture, string) {
	c := synth.Mixed(base)
	path := filepath.Join(t.TempDir(), "mixed.pcap")
	if err := synth.WritePcapFile(path, c.Packets); err != nil {
		t.Fatal(err)
	}
	return c, path
}

// TestMixedGoflow2: the IPFIX the exporter sends for the generated capture,
// decoded by goflow2, holds exactly the ground-truth flows; messages fit the
// MTU, sequence numbers count data records, the statistics record adds up.
func TestMixedGoflow2(t *testing.T) {
	c, path := mixedCapture(t)
	cfg := testConfiguration(path)
	cfg.MTU = 576 // several messages
	sum, msgs := runFile(t, cfg)
	flows, infos, options, err := verify.Goflow2(msgs)
	if err != nil {
		t.Fatal(err)
	}
	synth.Sort(flows)
	if diff := testutil.FlowsDiff(flows, c.Flows); diff != "" {
		t.Errorf("goflow2 flows (-got, +want):\n%s", diff)
	}
	if err := verify.CheckSequence(infos); err != nil {
		t.Error(err)
	}
	for i, m := range infos {
		if int(m.Length) != len(msgs[i]) || len(msgs[i]) > cfg.MTU-48 || m.Domain != 42 {
			t.Errorf("message %d: %+v, %d bytes", i, m, len(msgs[i]))
		}
	}
	if sum.Frames != uint64(len(c.Packets)) || sum.Flows != uint64(len(c.Flows)) || sum.NotDecodable() != 0 {
		t.Errorf("summary %s; want %d packets, %d flows", sum, len(c.Packets), len(c.Flows))
	}
	last := options[len(options)-1]
	if last[86] != uint64(len(c.Packets)) || last[164] != uint64(c.NotIP) || last[42] != uint64(len(c.Flows)) {
		t.Errorf("final statistics record %v", last)
	}
}

// TestMixedTshark: tshark's cflow dissector reads every datagram without
// expert info or malformed frames, and shows exactly the ground-truth flows,
// enterprise elements included.
func TestMixedTshark(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	c, path := mixedCapture(t)
	_, msgs := runFile(t, testConfiguration(path))
	res := tsharkOf(t, tshark, msgs)
	synth.Sort(res.Flows)
	if diff := testutil.FlowsDiff(res.Flows, c.Flows); diff != "" {
		t.Errorf("tshark flows (-got, +want):\n%s", diff)
	}
}

// TestMixedNfcapd: over real UDP, nfcapd stores the flows and nfdump reads
// back the ground truth (the fields nfdump decodes).
func TestMixedNfcapd(t *testing.T) {
	nfcapd := testutil.Command(t, "nfcapd")
	nfdump := testutil.Command(t, "nfdump")
	c, path := mixedCapture(t)
	dir := t.TempDir()
	n, err := verify.StartNfcapd(nfcapd, dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfiguration(path)
	cfg.Collectors = []string{"127.0.0.1:" + itoa(n.Port)}
	sum := sendFile(t, path, cfg)
	checkNfdump(t, nfdump, dir, c.Flows, n.Stop()) // once nfcapd has read its socket
	if sum.SendErrors != 0 {
		t.Errorf("summary: %s", sum)
	}
}

func itoa(n int) string {
	b := []byte{}
	for n > 0 || len(b) == 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

func sharedCaptures(t *testing.T, dir string) []string {
	root := filepath.Join(testutil.SharedTestdata(t), dir)
	var files []string
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".pcap") || strings.HasSuffix(path, ".pcapng")) {
			files = append(files, path)
		}
		return nil
	})
	if len(files) == 0 {
		t.Fatalf("no captures under %s", root)
	}
	return files
}

// TestSharedMirrorCaptures: every mirror capture runs through the exporter
// without panic, and tshark decodes every datagram sent for it without
// expert info or malformed frames, finding as many flows as were exported;
// goflow2 reads the same flows, every field equal. Malformed captures must simply not panic.
func TestSharedMirrorCaptures(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	for _, path := range sharedCaptures(t, "mirror") {
		name := strings.TrimPrefix(path, testutil.SharedTestdata(t)+"/")
		t.Run(name, func(t *testing.T) {
			cfg := testConfiguration(path)
			src, err := capture.OpenFile(path)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			mem := &memory{}
			x, err := New(reporter.NewForTest(nil), cfg, mem)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := x.Run(context.Background(), src)
			if err != nil {
				t.Logf("%s: %v (flows before the error are exported)", name, err)
			}
			flows, _, _, err := verify.Goflow2(mem.msgs)
			if err != nil {
				t.Fatal(err)
			}
			if uint64(len(flows)) != sum.Flows {
				t.Errorf("goflow2 decoded %d flows, exporter says %d", len(flows), sum.Flows)
			}
			res := tsharkOf(t, tshark, mem.msgs)
			if uint64(len(res.Flows)) != sum.Flows {
				t.Errorf("tshark decoded %d flows, exporter says %d", len(res.Flows), sum.Flows)
			}
			// The two independent decoders read the same flows, field by field.
			synth.Sort(flows)
			synth.Sort(res.Flows)
			if diff := testutil.FlowsDiff(res.Flows, flows); diff != "" {
				t.Errorf("tshark and goflow2 disagree (-tshark, +goflow2):\n%s", diff)
			}
		})
	}
}

func TestSharedMalformedCaptures(t *testing.T) {
	for _, path := range sharedCaptures(t, "malformed") {
		cfg := testConfiguration(path)
		src, err := capture.OpenFile(path)
		if err != nil {
			t.Logf("%s: %v", path, err)
			continue
		}
		x, err := New(reporter.NewForTest(nil), cfg, &memory{})
		if err != nil {
			t.Fatal(err)
		}
		sum, err := x.Run(context.Background(), src)
		src.Close()
		t.Logf("%s: %s (err %v)", filepath.Base(path), sum, err)
	}
}

// TestConfigFile: YAML keys are the flag names, unknown keys and bad values
// are refused with the line.
func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := DefaultConfiguration()
	if err := cfg.LoadFile(write("pcap: x.pcap\ncollector: [\"a:1\", \"b:2\"]\nactive-timeout: 30s\nidle-timeout: 5s\nobservation-domain: 9\nmtu: 9000\n")); err != nil {
		t.Fatal(err)
	}
	if cfg.Pcap != "x.pcap" || len(cfg.Collectors) != 2 || time.Duration(cfg.ActiveTimeout) != 30*time.Second ||
		time.Duration(cfg.IdleTimeout) != 5*time.Second || cfg.ObservationDomain != 9 || cfg.MTU != 9000 || cfg.MaxFlows != DefaultConfiguration().MaxFlows {
		t.Errorf("loaded %+v", cfg)
	}
	for in, want := range map[string]string{
		"idle-timout: 5s\n":        "line 1: unknown key idle-timout",
		"active-timeout: soon\n":   "line 1",
		"observation-domain: -1\n": "line 1: observation-domain: -1 is out of range (0 to 4294967295)",
	} {
		cfg := DefaultConfiguration()
		err := cfg.LoadFile(write(in))
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error %v, want one line with %q", in, err, want)
		}
	}
}

var updateGolden = flag.Bool("update", false, "rewrite the expected configurations")

// TestConfigGolden: each testdata/config/<case>/in.yaml, loaded over the
// defaults, gives expected.yaml (a change in defaults or parsing shows as a
// diff).
func TestConfigGolden(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "config", "*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			cfg := DefaultConfiguration()
			if err := cfg.LoadFile(filepath.Join(dir, "in.yaml")); err != nil {
				t.Fatal(err)
			}
			got, err := yaml.Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "expected.yaml")
			if *updateGolden {
				os.WriteFile(path, got, 0o644)
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("configuration (-got, +want):\n%s\n%s", got, want)
			}
		})
	}
}

// TestMetricsWhileRunning: metrics can be scraped while the pipeline runs
// (run with -race), and after the run they add up to the summary.
func TestMetricsWhileRunning(t *testing.T) {
	c, path := mixedCapture(t)
	src, err := capture.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	r := reporter.NewForTest(nil)
	x, err := New(r, testConfiguration(path), &memory{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 50; i++ {
			if _, err := r.Registry.Gather(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	sum, err := x.Run(context.Background(), src)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	families, err := r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
	values := map[string]float64{}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			values[mf.GetName()] += v
		}
	}
	for name, want := range map[string]float64{
		"spanflow_decode_frames_total":        float64(len(c.Packets)),
		"spanflow_decode_frames_not_ip_total": float64(c.NotIP),
		"spanflow_meter_flows_exported_total": float64(len(c.Flows)),
		"spanflow_meter_flows":                0,
		"spanflow_ipfix_records_total":        float64(len(c.Flows)),
		"spanflow_ipfix_messages_total":       float64(sum.Messages),
		"spanflow_meter_packets_total":        float64(len(c.Packets) - c.NotIP),
	} {
		if got, ok := values[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
}

// sendFile exports the capture at path with cfg to cfg's collectors.
func sendFile(t *testing.T, path string, cfg Configuration) Summary {
	t.Helper()
	src, err := capture.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	x, err := New(reporter.NewForTest(nil), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := x.Run(context.Background(), src)
	if err != nil {
		t.Fatalf("run: %v; %s", err, sum)
	}
	return sum
}

// checkNfdump compares the flows nfdump reads from nfcapd's files in dir
// with the ground truth, as nfdump shows it; log is nfcapd's.
func checkNfdump(t *testing.T, nfdump, dir string, truth []synth.Flow, log string) {
	t.Helper()
	got, err := verify.NfdumpFlows(nfdump, dir)
	if err != nil {
		t.Fatalf("%v\nnfcapd: %s", err, log)
	}
	var want []synth.Flow
	for _, f := range truth {
		want = append(want, verify.NfdumpView(f))
	}
	synth.Sort(got)
	synth.Sort(want)
	if diff := testutil.FlowsDiff(got, want); diff != "" {
		t.Errorf("nfdump flows (-got, +want):\n%s\nnfcapd: %s", diff, log)
	}
}

// tsharkOf decodes the IPFIX messages with tshark, as datagrams to port
// 4739, and reports each problem tshark's expert info flags as an error.
func tsharkOf(t *testing.T, tshark string, msgs [][]byte) *verify.TsharkResult {
	t.Helper()
	dgrams := filepath.Join(t.TempDir(), "ipfix.pcap")
	if err := verify.Datagrams(dgrams, msgs, 4739, base); err != nil {
		t.Fatal(err)
	}
	res, err := verify.Tshark(tshark, dgrams, 4739)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Problems {
		t.Error(p)
	}
	return res
}
