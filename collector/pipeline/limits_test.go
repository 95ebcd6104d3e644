package pipeline_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/testutil"

	"github.com/prometheus/common/expfmt"

	"github.com/spanflow/spanflow/bench/ipfixgen"
	"github.com/spanflow/spanflow/collector/pipeline"
	"github.com/spanflow/spanflow/internal/reporter"
)

// metricsText is the registry's metrics in the text format.
func metricsText(t *testing.T, r *reporter.Reporter) string {
	t.Helper()
	mfs, err := r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, mf := range mfs {
		expfmt.MetricFamilyToText(&b, mf)
	}
	return b.String()
}

// sample is the value of one series in metrics text, 0 when absent.
func sample(text, series string) float64 {
	for _, l := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(l, series+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v
		}
	}
	return 0
}

// templateSet is an IPFIX template set of the generator's template under
// several ids.
func templateSet(ids ...uint16) []byte {
	one := ipfixgen.New(1, 1).Template()[16:] // set header, then the template record
	rec := one[4:]
	b := binary.BigEndian.AppendUint16(nil, 2)
	b = binary.BigEndian.AppendUint16(b, uint16(4+len(ids)*len(rec)))
	for _, id := range ids {
		r := append([]byte(nil), rec...)
		binary.BigEndian.PutUint16(r, id)
		b = append(b, r...)
	}
	msg := append(make([]byte, 16), b...)
	binary.BigEndian.PutUint16(msg, 10)
	binary.BigEndian.PutUint16(msg[2:], uint16(len(msg)))
	binary.BigEndian.PutUint32(msg[12:], 1)
	return msg
}

// TestRefusalsCountedOnce: every template and data set a limit refuses is
// counted once, under the limit's reason; a data set refused for the
// pending limit is neither held nor expired.
func TestRefusalsCountedOnce(t *testing.T) {
	r := reporter.NewForTest(nil)
	cfg := pipeline.DefaultConfiguration()
	cfg.Decoder.MaxTemplatesPerExporter, cfg.Decoder.MaxPendingPerExporter = 2, 3
	p, err := pipeline.New(r, cfg, pipeline.Dependencies{})
	if err != nil {
		t.Fatal(err)
	}
	w := p.NewWorker()
	const a = "192.0.2.1:4739"
	// One datagram of 5 templates: 2 kept, 3 refused.
	w.Handle(datagram(a, templateSet(256, 257, 258, 259, 260)))
	// 5 data sets of a template that never comes: 3 held, 2 refused.
	g := ipfixgen.New(1, 2)
	for range 5 {
		w.Handle(datagram(a, withID(g.AppendData(nil), 400)))
	}
	text := metricsText(t, r)
	for series, want := range map[string]float64{
		`spanflow_collector_decode_errors_total{exporter="192.0.2.1",reason="template_limit"}`: 3,
		`spanflow_collector_decode_errors_total{exporter="192.0.2.1",reason="pending_limit"}`:  2,
		`spanflow_collector_decode_errors_total{exporter="192.0.2.1",reason="no_template"}`:    0,
		`spanflow_collector_held_sets_total{exporter="192.0.2.1",outcome="held"}`:              3,
		`spanflow_collector_held_sets_total{exporter="192.0.2.1",outcome="expired"}`:           0,
		`spanflow_collector_templates{exporter="192.0.2.1"}`:                                   2,
	} {
		if got := sample(text, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	// The held sets expire: counted once each, as no_template.
	if n := p.Flush(); n != 3 {
		t.Errorf("flushed %d held sets, want 3", n)
	}
	text = metricsText(t, r)
	for series, want := range map[string]float64{
		`spanflow_collector_decode_errors_total{exporter="192.0.2.1",reason="pending_limit"}`: 2,
		`spanflow_collector_decode_errors_total{exporter="192.0.2.1",reason="no_template"}`:   3,
		`spanflow_collector_held_sets_total{exporter="192.0.2.1",outcome="expired"}`:          3,
	} {
		if got := sample(text, series); got != want {
			t.Errorf("after flush: %s = %v, want %v", series, got, want)
		}
	}
}

// TestNotAllowedLoggedPerReason: datagrams from many sources outside the
// allowed networks make one log line (with the number suppressed), not one
// per source; the counter counts them all.
func TestNotAllowedLoggedPerReason(t *testing.T) {
	var log testutil.SyncBuffer
	r := reporter.NewForTest(&log)
	cfg := pipeline.DefaultConfiguration()
	cfg.Allow, _ = pipeline.ParseAllow([]string{"192.0.2.0/24"})
	p, err := pipeline.New(r, cfg, pipeline.Dependencies{})
	if err != nil {
		t.Fatal(err)
	}
	w := p.NewWorker()
	msg := ipfixgen.New(1, 1).Template()
	for i := range 1000 {
		w.Handle(datagram(fmt.Sprintf("198.51.%d.%d:1", i/256, i%256), msg))
	}
	if n := value(p.Drops("not_allowed")); n != 1000 {
		t.Errorf("not_allowed drops = %v, want 1000", n)
	}
	if lines := log.Lines(); len(lines) != 1 {
		t.Errorf("%d log lines for 1000 refused sources, want 1: %s", len(lines), strings.Join(lines[:min(3, len(lines))], "\n"))
	}
}

// TestSilentExportersForgotten: exporters that send nothing for the idle
// timeout are forgotten by the expiry ticker, with their metric series (one
// that only sent garbage is forgotten too; its errors count under "other");
// one that comes back starts afresh.
func TestSilentExportersForgotten(t *testing.T) {
	r := reporter.NewForTest(nil)
	cfg := pipeline.DefaultConfiguration()
	cfg.ExpireInterval, cfg.ExporterStatsInterval = 10*time.Millisecond, 0
	cfg.Decoder.ExporterIdleTimeout = 100 * time.Millisecond
	p, err := pipeline.New(r, cfg, pipeline.Dependencies{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	w := p.NewWorker()
	w.Handle(datagram("192.0.2.1:4739", ipfixgen.New(1, 1).Template()))
	w.Handle(datagram("192.0.2.2:4739", []byte("not a flow datagram")))
	text := metricsText(t, r)
	for _, series := range []string{
		`spanflow_collector_templates{exporter="192.0.2.1"}`,
		`spanflow_collector_decode_errors_total{exporter="other",reason="unknown_version"}`,
	} {
		if sample(text, series) != 1 {
			t.Fatalf("%s missing before expiry", series)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && (strings.Contains(text, `exporter="192.0.2.`) || sample(text, "spanflow_collector_exporters") != 0) {
		time.Sleep(20 * time.Millisecond)
		text = metricsText(t, r)
	}
	if strings.Contains(text, `exporter="192.0.2.`) {
		t.Errorf("series of silent exporters kept:\n%s", grep(text, `exporter="192.0.2.`))
	}
	if n := sample(text, "spanflow_collector_exporters_expired_total"); n != 2 {
		t.Errorf("exporters_expired_total = %v, want 2", n)
	}
	if n := sample(text, "spanflow_collector_exporters"); n != 0 {
		t.Errorf("exporters = %v, want 0", n)
	}
	w.Handle(datagram("192.0.2.1:4739", ipfixgen.New(1, 1).Template()))
	if text := metricsText(t, r); sample(text, `spanflow_collector_templates{exporter="192.0.2.1"}`) != 1 {
		t.Errorf("an exporter that came back has no series")
	}
}

func grep(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestExporterSeriesBounded: sources that send only garbage get no series
// of their own, whatever their number; exporters whose datagrams decode get
// theirs up to MaxExporterSeries, the rest count under "other".
func TestExporterSeriesBounded(t *testing.T) {
	r := reporter.NewForTest(nil)
	cfg := pipeline.DefaultConfiguration()
	cfg.ExporterStatsInterval, cfg.MaxExporterSeries = 0, 3
	p, err := pipeline.New(r, cfg, pipeline.Dependencies{})
	if err != nil {
		t.Fatal(err)
	}
	w := p.NewWorker()
	for i := range 2000 {
		w.Handle(datagram(fmt.Sprintf("198.51.%d.%d:1", i/256, i%256), []byte("garbage from a spoofed source")))
	}
	for i := range 5 {
		g := ipfixgen.New(1, 2)
		src := fmt.Sprintf("192.0.2.%d:4739", i+1)
		w.Handle(datagram(src, g.Template()))
		w.Handle(datagram(src, g.AppendData(nil)))
	}
	text := metricsText(t, r)
	if n := strings.Count(text, `exporter="198.51.`); n != 0 {
		t.Errorf("%d series of garbage sources:\n%s", n, grep(text, `exporter="198.51.`))
	}
	if n := sample(text, `spanflow_collector_decode_errors_total{exporter="other",reason="unknown_version"}`); n != 2000 {
		t.Errorf("garbage counted under other: %v, want 2000", n)
	}
	own := 0
	for i := range 5 {
		if strings.Contains(text, fmt.Sprintf(`spanflow_collector_records_total{exporter="192.0.2.%d",protocol="ipfix"}`, i+1)) {
			own++
		}
	}
	if own != 3 {
		t.Errorf("%d exporters with series of their own, want 3 (MaxExporterSeries)", own)
	}
	if n := sample(text, `spanflow_collector_records_total{exporter="other",protocol="ipfix"}`); n != 4 {
		t.Errorf("records of the exporters past the bound under other: %v, want 4", n)
	}
}
