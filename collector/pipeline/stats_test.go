package pipeline_test

import (
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/testutil"

	"github.com/spanflow/spanflow/bench/ipfixgen"
	"github.com/spanflow/spanflow/collector/pcapreplay"
	"github.com/spanflow/spanflow/collector/pipeline"
	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

// statsDoc is the part of an exporter statistics document the test reads.
type statsDoc struct {
	Event struct {
		Kind, Action string
	}
	Observer struct{ IP string }
	Flow     struct{ Protocol string }
	Netflow  struct {
		ObservationDomainID *uint32 `json:"observation_domain_id"`
	}
	Network  map[string]any
	Source   map[string]any
	Spanflow struct {
		Exporter *struct {
			Datagrams, Records, Templates uint64
			SequenceLosses                uint64 `json:"sequence_losses"`
			DecodeErrors                  uint64 `json:"decode_errors"`
			IntervalMS                    uint64 `json:"interval_ms"`
		}
	}
	Timestamp string `json:"@timestamp"`
}

// withID rewrites a generated message's set id (the template id of a
// template set, or the data set's id) so that it makes a second template.
func withID(msg []byte, id uint16) []byte {
	m := append([]byte(nil), msg...)
	if binary.BigEndian.Uint16(m[16:]) == 2 {
		binary.BigEndian.PutUint16(m[20:], id)
	} else {
		binary.BigEndian.PutUint16(m[16:], id)
	}
	return m
}

// TestExporterStatsDocuments sends known IPFIX messages — two templates, a
// deliberate sequence gap, a malformed message — from two observation
// domains of one exporter and a third from another exporter through the
// pipeline and the NDJSON output, and checks the statistics documents
// against what was sent.
func TestExporterStatsDocuments(t *testing.T) {
	r := reporter.NewForTest(nil)
	var out testutil.SyncBuffer
	nd := &docSink{out: &out}
	cfg := pipeline.DefaultConfiguration()
	cfg.ExporterStatsInterval = time.Hour // emitted by EmitStats and Stop here
	p, err := pipeline.New(r, cfg, pipeline.Dependencies{Outputs: []pipeline.Output{{Name: "stdout", Sink: nd}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	w := p.NewWorker()
	const a, b = "192.0.2.1:4739", "192.0.2.2:4739"

	// Exporter a, domain 1: templates 256 and 300, 3 messages of 10 records
	// received, 2 messages (20 records) skipped, then a malformed message.
	g1 := ipfixgen.New(1, 10)
	w.Handle(datagram(a, g1.Template()))
	w.Handle(datagram(a, withID(g1.Template(), 300)))
	w.Handle(datagram(a, g1.AppendData(nil)))
	g1.AppendData(nil) // lost
	g1.AppendData(nil) // lost
	w.Handle(datagram(a, g1.AppendData(nil)))
	w.Handle(datagram(a, withID(g1.AppendData(nil), 300)))
	bad := g1.AppendData(nil)
	binary.BigEndian.PutUint16(bad[18:], 3) // set length shorter than its header
	w.Handle(datagram(a, bad))
	// Exporter a, domain 2: one template, 2 messages of 5 records, in order.
	g2 := ipfixgen.New(2, 5)
	w.Handle(datagram(a, g2.Template()))
	w.Handle(datagram(a, g2.AppendData(nil)))
	w.Handle(datagram(a, g2.AppendData(nil)))
	// Exporter b, domain 1: one template, 1 message of 4 records.
	g3 := ipfixgen.New(1, 4)
	w.Handle(datagram(b, g3.Template()))
	w.Handle(datagram(b, g3.AppendData(nil)))

	p.EmitStats()
	first := statsDocs(t, out.Lines())
	type want struct {
		ip                                            string
		domain                                        uint32
		datagrams, records, losses, templates, errors uint64
	}
	check := func(got []statsDoc, wants []want) {
		t.Helper()
		if len(got) != len(wants) {
			t.Fatalf("%d statistics documents, want %d: %+v", len(got), len(wants), got)
		}
		for i, w := range wants {
			d := got[i]
			s := d.Spanflow.Exporter
			if d.Event.Kind != "metric" || d.Event.Action != "exporter_stats" || d.Observer.IP != w.ip ||
				d.Netflow.ObservationDomainID == nil || *d.Netflow.ObservationDomainID != w.domain || d.Flow.Protocol != "ipfix" || d.Timestamp == "" {
				t.Errorf("document %d: %+v, want exporter %s domain %d, event.kind metric", i, d, w.ip, w.domain)
			}
			if len(d.Network) != 0 || len(d.Source) != 0 {
				t.Errorf("document %d carries flow fields: network %v source %v", i, d.Network, d.Source)
			}
			if s.Datagrams != w.datagrams || s.Records != w.records || s.SequenceLosses != w.losses || s.Templates != w.templates || s.DecodeErrors != w.errors {
				t.Errorf("%s domain %d: datagrams %d records %d sequence_losses %d templates %d decode_errors %d; sent %d, %d, lost %d, %d templates, %d malformed",
					w.ip, w.domain, s.Datagrams, s.Records, s.SequenceLosses, s.Templates, s.DecodeErrors,
					w.datagrams, w.records, w.losses, w.templates, w.errors)
			}
		}
	}
	check(first, []want{
		{ip: "192.0.2.1", domain: 1, datagrams: 6, records: 30, losses: 20, templates: 2, errors: 1},
		{ip: "192.0.2.1", domain: 2, datagrams: 3, records: 10, losses: 0, templates: 1},
		{ip: "192.0.2.2", domain: 1, datagrams: 2, records: 4, losses: 0, templates: 1},
	})
	if n := len(out.Lines()); n != 30+10+4+3 {
		t.Errorf("%d documents, want 44 flows and 3 statistics", n)
	}

	// Next interval: only what was seen in it; templates are still known.
	// The 10 records of the malformed message were not decoded: the
	// sequence numbers count them lost, with the 10 skipped here.
	w.Handle(datagram(a, g1.AppendData(nil)))
	g1.AppendData(nil) // lost
	w.Handle(datagram(a, g1.AppendData(nil)))
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	second := statsDocs(t, out.Lines())[len(first):]
	check(second, []want{{ip: "192.0.2.1", domain: 1, datagrams: 2, records: 20, losses: 10 + 10, templates: 2}})
}

func statsDocs(t *testing.T, lines []string) []statsDoc {
	t.Helper()
	var docs []statsDoc
	for _, l := range lines {
		var d statsDoc
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("not JSON: %v: %s", err, l)
		}
		if d.Spanflow.Exporter != nil {
			docs = append(docs, d)
		} else if d.Event.Kind != "event" {
			t.Errorf("flow document with event.kind %q", d.Event.Kind)
		}
	}
	return docs
}

// docSink writes every record as its ECS document, one per line, as the
// NDJSON output does, but without its write buffer.
type docSink struct {
	mu  sync.Mutex
	enc flow.Encoder
	out *testutil.SyncBuffer
}

func (s *docSink) Write(recs []flow.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range recs {
		s.out.Write(append(s.enc.AppendDocument(nil, &recs[i]), '\n'))
	}
	return nil
}

// TestExporterStatsInterval: the statistics come every interval without a
// Stop, and an interval with no datagram writes none.
func TestExporterStatsInterval(t *testing.T) {
	var out testutil.SyncBuffer
	cfg := pipeline.DefaultConfiguration()
	cfg.ExporterStatsInterval = 20 * time.Millisecond
	p, err := pipeline.New(reporter.NewForTest(nil), cfg, pipeline.Dependencies{Outputs: []pipeline.Output{{Name: "test", Sink: &docSink{out: &out}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	p.NewWorker().Handle(datagram("192.0.2.9:1", ipfixgen.New(3, 1).Template()))
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && out.Lines()[0] == "" {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // several empty intervals
	docs := statsDocs(t, out.Lines())
	if len(docs) != 1 || docs[0].Spanflow.Exporter.Datagrams != 1 || docs[0].Spanflow.Exporter.Templates != 1 {
		t.Fatalf("statistics %+v, want one document: 1 datagram, 1 template", docs)
	}
}

// TestExporterStatsObserver replays generated sFlow captures whose agent
// address (10.0.0.1) is not their UDP source (192.0.2.10): the exporter
// statistics documents must name the observer the flow, drop and counter
// documents name, the agent, and keep the UDP source beside it.
func TestExporterStatsObserver(t *testing.T) {
	r := reporter.NewForTest(nil)
	var out testutil.SyncBuffer
	nd := &docSink{out: &out}
	cfg := pipeline.DefaultConfiguration()
	cfg.ExporterStatsInterval = time.Hour
	p, err := pipeline.New(r, cfg, pipeline.Dependencies{Outputs: []pipeline.Output{{Name: "stdout", Sink: nd}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	w := p.NewWorker()
	for _, name := range []string{"raw-ip-headers.pcap", "drop-notifications.pcap", "counters.pcap"} {
		path := filepath.Join(testutil.ModuleRoot(), "decoders", "sflow", "testdata", name)
		if _, err := pcapreplay.Read(path, func(dg decoders.Datagram, _ netip.AddrPort) error {
			w.Handle(dg)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	p.EmitStats()
	var stats, others int
	for _, l := range out.Lines() {
		var d struct {
			Event    struct{ Action string }
			Observer struct{ IP string }
			Spanflow struct {
				Observer struct {
					SourceIP string `json:"source_ip"`
				}
			}
		}
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("not JSON: %v: %s", err, l)
		}
		if d.Event.Action == "exporter_stats" {
			stats++
		} else {
			others++
		}
		if d.Observer.IP != "10.0.0.1" || d.Spanflow.Observer.SourceIP != "192.0.2.10" {
			t.Errorf("%s document: observer.ip %q, spanflow.observer.source_ip %q; want the agent 10.0.0.1 and the source 192.0.2.10",
				d.Event.Action, d.Observer.IP, d.Spanflow.Observer.SourceIP)
		}
	}
	if stats != 1 || others == 0 {
		t.Errorf("%d statistics documents and %d others, want 1 and some", stats, others)
	}
}
