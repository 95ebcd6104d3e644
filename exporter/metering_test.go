package exporter

import (
	"path/filepath"
	"reflect"
	"runtime"
	"testing"

	"github.com/spanflow/spanflow/exporter/internal/verify"
	"github.com/spanflow/spanflow/exporter/synth"
)

// TestPipelinedMetering: a capture file metered on a goroutine of its own
// gives the messages (flow records in order, sequence numbers, export
// times, the final statistics) and summary that metering on the reading
// goroutine gives, over many chunks.
func TestPipelinedMetering(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("a capture file is metered on a second goroutine only with GOMAXPROCS ≥ 2")
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		write func(path string) error
	}{
		{"plain", func(path string) error { return synth.WritePlainFile(path, base, 50_000) }},
		{"bulk", func(path string) error { return synth.WriteBulkFile(path, base, 50_000) }},
		{"mixed", func(path string) error { return synth.WritePcapFile(path, synth.Mixed(base).Packets) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".pcap")
			if err := tc.write(path); err != nil {
				t.Fatal(err)
			}
			cfg := testConfiguration(path)
			cfg.MTU = 1400
			run := func(inline bool) (Summary, [][]byte) {
				var x *Exporter
				sum, msgs := runFile(t, cfg, func(e *Exporter) { x, e.inlineFile = e, inline })
				if x.pipelined == inline {
					t.Fatalf("inline %v: the run was pipelined: %v", inline, x.pipelined)
				}
				return sum, msgs
			}
			sumA, msgsA := run(true)
			sumB, msgsB := run(false)
			if sumA.Frames != sumB.Frames || sumA.Flows != sumB.Flows || sumA.Messages != sumB.Messages || sumA.Undecodable != sumB.Undecodable {
				t.Errorf("summaries differ:\ninline    %+v\npipelined %+v", sumA, sumB)
			}
			if sumA.Flows == 0 || sumA.Frames < chunkMax*2 && tc.name != "mixed" {
				t.Fatalf("too little traffic to compare: %+v", sumA)
			}
			// The messages are the same but for the counts of the
			// statistics records sent before the end: each reports
			// the frames read when its message began, and the reader
			// hands packets over 32 at a time inline, a chunk at a
			// time pipelined.
			flowsA, infosA, optsA, err := verify.Goflow2(msgsA)
			if err != nil {
				t.Fatal(err)
			}
			flowsB, infosB, optsB, err := verify.Goflow2(msgsB)
			if err != nil {
				t.Fatal(err)
			}
			if len(infosA) != len(infosB) {
				t.Fatalf("%d messages inline, %d pipelined", len(infosA), len(infosB))
			}
			for i := range infosA {
				if infosA[i] != infosB[i] {
					t.Fatalf("message %d of %d differs (length, sequence, export time, records):\ninline    %+v\npipelined %+v", i, len(infosA), infosA[i], infosB[i])
				}
			}
			if len(flowsA) != len(flowsB) || uint64(len(flowsA)) != sumA.Flows {
				t.Fatalf("%d flows inline, %d pipelined, %d in the summary", len(flowsA), len(flowsB), sumA.Flows)
			}
			for i := range flowsA {
				if !reflect.DeepEqual(flowsA[i], flowsB[i]) {
					t.Fatalf("flow %d of %d differs:\ninline    %+v\npipelined %+v", i, len(flowsA), flowsA[i], flowsB[i])
				}
			}
			if len(optsA) == 0 || len(optsA) != len(optsB) || !reflect.DeepEqual(optsA[len(optsA)-1], optsB[len(optsB)-1]) {
				t.Fatalf("statistics records: %d inline, %d pipelined, or the last differs:\n%v\n%v", len(optsA), len(optsB), optsA, optsB)
			}
			t.Logf("%d frames, %d flows, %d messages, the same both ways", sumA.Frames, sumA.Flows, len(infosA))
		})
	}
}
