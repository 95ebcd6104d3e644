package collector_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/pipeline"
	"github.com/spanflow/spanflow/exporter"
	"github.com/spanflow/spanflow/exporter/capture"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// recordSink keeps every record the pipeline writes.
type recordSink struct {
	mu   sync.Mutex
	recs []flow.Record
}

func (s *recordSink) Write(recs []flow.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		r.Extra = append([]flow.Extra(nil), r.Extra...)
		s.recs = append(s.recs, r)
	}
	return nil
}

func (s *recordSink) flows() []synth.Flow {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []synth.Flow
	for i := range s.recs {
		if s.recs[i].SrcAddr.IsValid() {
			out = append(out, synth.FromRecord(&s.recs[i]))
		}
	}
	return out
}

// TestExporterGroundTruth: the generated capture goes through spanflow's
// exporter, as IPFIX over loopback UDP, into the collector's listener and
// decoders. The records that come out equal the flows the generator knows it
// wrote, field by field: addresses, ports, VLANs, tunnel ids, MACs, counts,
// times, end reasons and the TCP performance elements. Read as a live
// capture would (every frame from an interface with observation point 1024
// and index 9), the records carry both, whatever template they went in.
func TestExporterGroundTruth(t *testing.T) {
	t.Run("file", func(t *testing.T) { testExporterGroundTruth(t, false) })
	t.Run("live", func(t *testing.T) { testExporterGroundTruth(t, true) })
}

// asLive gives every frame of a capture file the observation point and
// interface index of a live capture's interface.
type asLive struct{ capture.Source }

func (s asLive) Next(f *capture.Frame) error {
	err := s.Source.Next(f)
	f.ObservationPoint, f.IfIndex = 1024, 9
	return err
}

func testExporterGroundTruth(t *testing.T, live bool) {
	c := synth.Mixed(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	path := filepath.Join(t.TempDir(), "mixed.pcap")
	if err := synth.WritePcapFile(path, c.Packets); err != nil {
		t.Fatal(err)
	}

	r := reporter.NewForTest(nil)
	sink := &recordSink{}
	_, l := listenInto(t, r, []pipeline.Output{{Name: "memory", Sink: sink}}...)

	cfg := exporter.DefaultConfiguration()
	cfg.Pcap = path
	cfg.Collectors = []string{l.Addrs()[0].String()}
	cfg.ActiveTimeout, cfg.IdleTimeout = exporter.Duration(synth.MixedActive), exporter.Duration(synth.MixedIdle)
	cfg.ObservationDomain = 42
	if live {
		// No such interface here: it only makes the exporter encode as
		// for a live capture.
		cfg.Interfaces = exporter.StringList{"mirror0"}
	}
	x, err := exporter.New(r, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	file, err := capture.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var src capture.Source = file
	want := c.Flows
	if live {
		src = asLive{file}
		want = nil
		for _, f := range c.Flows {
			if f.Session == 0 { // an ERSPAN session's id wins
				f.Session = 1024
			}
			if f.InIf == 0 { // ERSPAN II's port index wins
				f.InIf = 9
			}
			want = append(want, f)
		}
	}
	if _, err := x.Run(context.Background(), src); err != nil {
		t.Fatal(err)
	}

	var got []synth.Flow
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got = sink.flows(); len(got) >= len(want) {
			break
		}
	}
	time.Sleep(100 * time.Millisecond) // anything beyond the ground truth would show now
	got = sink.flows()
	synth.Sort(got)
	synth.Sort(want)
	if diff := testutil.FlowsDiff(got, want); diff != "" {
		t.Errorf("collector records (-got, +want):\n%s", diff)
	}
	var tcpPerf int
	for _, f := range got {
		if f.RTTClientUs > 0 || f.Retrans > 0 || f.ZeroWindows > 0 {
			tcpPerf++
		}
	}
	if tcpPerf == 0 {
		t.Error("no record carried TCP performance elements: the comparison would not see them")
	}
}
