package indexer_test

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/indexer"
	"github.com/spanflow/spanflow/collector/output/ndjson"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

// TestWriterSinkWritesBeforeReturning: a batch handed to an NDJSON file
// output is in the file when Index returns, not in the output's buffer
// (whose periodic flush is an hour away here): the offsets committed next
// and the end-to-end lag observed next are of written documents.
func TestWriterSinkWritesBeforeReturning(t *testing.T) {
	cfg := ndjson.DefaultConfiguration()
	cfg.Path, cfg.FlushInterval = filepath.Join(t.TempDir(), "flows.ndjson"), time.Hour
	o, err := ndjson.New(reporter.NewForTest(nil), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	defer o.Stop()
	recs := make([]flow.Record, 50)
	for i := range recs {
		recs[i] = flow.Record{SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"),
			Proto: 17, SrcPort: uint16(i), DstPort: 53, Bytes: 100}
	}
	if err := indexer.WriterSink(o).Index(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, []byte("\n")); n != len(recs) {
		t.Errorf("%d documents in the file when Index returned, want %d", n, len(recs))
	}
}
