package elasticsearch

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	es "github.com/elastic/go-elasticsearch/v8"

	"github.com/spanflow/spanflow/collector/pcapreplay"
	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestCaptureDocumentsFitTheTemplate decodes every shared flow capture and
// indexes the documents through the output, into one daily index governed
// by the spanflow template: none may be refused (a netflow.* element that
// is a number in one capture and a string in another, more elements than
// the field limit, ...). The records' end time is moved to one day so that
// they all meet in the same index.
func TestCaptureDocumentsFitTheTemplate(t *testing.T) {
	url := testutil.Elasticsearch(t)
	dir := filepath.Join(testutil.SharedTestdata(t), "flows")
	day := time.Date(2001, 3, 9, 0, 0, 0, 0, time.UTC)
	c, index := freshDayIndex(t, url, day)

	o, _ := newTestOutput(t, []string{url}, t.TempDir(), nil)
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	files := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.Contains(filepath.Base(p), ".pcap") {
			return nil
		}
		files++
		dec, err := decoders.New(decoders.DefaultConfiguration())
		if err != nil {
			t.Fatal(err)
		}
		var recs []flow.Record
		pcapreplay.Read(p, func(dg decoders.Datagram, _ netip.AddrPort) error {
			recs, _, _ = dec.Decode(dg, recs[:0])
			for i := range recs {
				r := &recs[i]
				if r.End.IsZero() {
					r.Received = day.Add(time.Duration(len(ids)) * time.Millisecond)
				} else {
					r.End = day.Add(time.Duration(len(ids)) * time.Millisecond)
				}
				if r.Start.After(r.End) || !r.Start.IsZero() {
					r.Start = day
				}
				ids[DocumentID(r)] = true
			}
			if err := o.Write(recs); err != nil {
				t.Errorf("write: %v", err)
			}
			return nil
		})
		return nil
	})
	waitSpoolEmpty(t, o, time.Minute)
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	if dl := metric(o, "dead_letter"); dl != 0 {
		t.Errorf("%v documents refused by the template; see %s", dl, filepath.Join(o.config.deadLetterFile()))
		if b, err := os.ReadFile(o.config.deadLetterFile()); err == nil {
			lines := strings.SplitN(string(b), "\n", 4)
			t.Logf("first refusals:\n%s", strings.Join(lines[:min(3, len(lines))], "\n"))
		}
	}
	if got := count(t, c, index, ""); got != len(ids) {
		t.Errorf("%s holds %d documents, want the %d distinct flows of %d captures", index, got, len(ids), files)
	}
	t.Logf("%d distinct flows from %d captures indexed", len(ids), files)
}

// TestBothDirectionsIndexed indexes a capture of routers that report each
// flow at ingress and at egress (netflow.flow_direction 0 and 1, the rest
// of the report the same but for MPLS and VLAN elements): every report
// that differs in its document must be a document of its own. The ids
// used to leave the direction out, and 354 of the 7466 reports overwrote
// their other direction.
func TestBothDirectionsIndexed(t *testing.T) {
	url := testutil.Elasticsearch(t)
	path := filepath.Join(testutil.SharedTestdata(t), "flows", "traffic-reproducer", "ipfix-multi-sources-raw.pcap")
	dec, err := decoders.New(decoders.DefaultConfiguration())
	if err != nil {
		t.Fatal(err)
	}
	var all []flow.Record
	var recs []flow.Record
	if _, err := pcapreplay.Read(path, func(dg decoders.Datagram, _ netip.AddrPort) error {
		recs, _, _ = dec.Decode(dg, recs[:0])
		all = append(all, recs...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The ground truth: reports whose documents differ, the receive time
	// aside (a datagram sent twice is one report).
	var enc flow.Encoder
	distinct := map[string]bool{}
	days := map[time.Time]bool{}
	directions := 0
	for i := range all {
		r := all[i]
		if !r.End.IsZero() {
			r.Received = time.Time{}
		}
		distinct[string(enc.AppendDocument(nil, &r))] = true
		days[timestampOf(&all[i]).UTC().Truncate(24*time.Hour)] = true
		for _, e := range r.Extra {
			if e.Name == "flow_direction" && e.Num == 1 {
				directions++
			}
		}
	}
	if len(days) != 1 || directions == 0 {
		t.Fatalf("the capture changed: %d days, %d egress reports", len(days), directions)
	}
	var index string
	var c *es.Client
	for day := range days {
		c, index = freshDayIndex(t, url, day)
	}
	o, _ := newTestOutput(t, []string{url}, t.TempDir(), nil)
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	if err := o.Write(all); err != nil {
		t.Fatal(err)
	}
	waitSpoolEmpty(t, o, time.Minute)
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := count(t, c, index, ""); got != len(distinct) {
		t.Errorf("%s holds %d documents, want the %d distinct reports of %d records", index, got, len(distinct), len(all))
	}
}
