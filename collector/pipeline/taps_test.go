package pipeline_test

import (
	"bytes"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/spanflow/spanflow/bench/ipfixgen"
	"github.com/spanflow/spanflow/collector/pipeline"
	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

// tapped keeps what a tap saw: each call's datagrams.
type tapped struct {
	mu    sync.Mutex
	calls [][]decoders.Datagram
}

func (t *tapped) Tap(dg decoders.Datagram) { t.keep([]decoders.Datagram{dg}) }

func (t *tapped) keep(dgs []decoders.Datagram) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var c []decoders.Datagram
	for _, dg := range dgs {
		dg.Payload = bytes.Clone(dg.Payload)
		c = append(c, dg)
	}
	t.calls = append(t.calls, c)
}

// batchTapped also takes batches.
type batchTapped struct{ tapped }

func (t *batchTapped) TapBatch(dgs []decoders.Datagram) { t.keep(dgs) }

// counting counts the records written.
type counting struct {
	mu sync.Mutex
	n  int
}

func (c *counting) Write(recs []flow.Record) error {
	c.mu.Lock()
	c.n += len(recs)
	c.mu.Unlock()
	return nil
}

// TestTapsOfABatch: a batch with datagrams from outside the allowed
// networks among allowed ones: taps that take batches get the allowed
// ones in one call, in order, before decoding; with a tap that does not,
// every tap gets them one by one. Either way the records decoded and the
// drops counted are the same.
func TestTapsOfABatch(t *testing.T) {
	g := ipfixgen.New(7, 5)
	in, out := netip.MustParseAddrPort("127.0.0.1:4000"), netip.MustParseAddrPort("10.0.0.1:4000")
	dgs := []decoders.Datagram{{Source: in, Payload: g.Template(), Received: time.Now()}}
	for i := range 9 {
		src := in
		if i%3 == 1 {
			src = out
		}
		dgs = append(dgs, decoders.Datagram{Source: src, Payload: g.AppendData(nil), Received: time.Now()})
	}
	var want []decoders.Datagram
	for _, dg := range dgs {
		if dg.Source == in {
			want = append(want, dg)
		}
	}
	same := func(t *testing.T, got, want []decoders.Datagram) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("tapped %d datagrams, want the %d allowed", len(got), len(want))
		}
		for i := range want {
			if got[i].Source != want[i].Source || !bytes.Equal(got[i].Payload, want[i].Payload) {
				t.Fatalf("tapped datagram %d from %v is not the allowed one", i, got[i].Source)
			}
		}
	}
	for _, withPlain := range []bool{false, true} {
		bt := &batchTapped{}
		taps := []pipeline.Tap{bt}
		plain := &tapped{}
		if withPlain {
			taps = append(taps, plain)
		}
		out := &counting{}
		cfg := pipeline.DefaultConfiguration()
		cfg.Allow, _ = pipeline.ParseAllow([]string{"127.0.0.0/8"})
		r := reporter.NewForTest(nil)
		p, err := pipeline.New(r, cfg, pipeline.Dependencies{Outputs: []pipeline.Output{{Name: "count", Sink: out}}, Taps: taps})
		if err != nil {
			t.Fatal(err)
		}
		p.NewWorker().HandleBatch(dgs)
		if !withPlain {
			if len(bt.calls) != 1 {
				t.Fatalf("batch tap called %d times for one batch, want once", len(bt.calls))
			}
			same(t, bt.calls[0], want)
		} else {
			for _, tp := range []*tapped{&bt.tapped, plain} {
				if len(tp.calls) != len(want) {
					t.Fatalf("with a tap that takes no batches: %d calls, want one per allowed datagram (%d)", len(tp.calls), len(want))
				}
				var all []decoders.Datagram
				for _, c := range tp.calls {
					all = append(all, c...)
				}
				same(t, all, want)
			}
		}
		if out.n != 30 {
			t.Errorf("%d records decoded, want the 30 of the 6 allowed data datagrams", out.n)
		}
		if d := dropped(t, r); d != 3 {
			t.Errorf("%v datagrams counted as not allowed, want 3", d)
		}
	}
}

// dropped is spanflow_collector_drops_total{reason="not_allowed"}.
func dropped(t *testing.T, r *reporter.Reporter) float64 {
	t.Helper()
	mfs, err := r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "spanflow_collector_drops_total" {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" && l.GetValue() == "not_allowed" {
						return m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	return 0
}
