package exporter

import (
	"net/netip"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestFastActiveTimeoutTshark: through the whole pipeline, with
// active-timeout-fast 5s for the mixed capture's long flow (one datagram
// every 5 s for 145 s), tshark reads that flow back as one record per
// datagram, each with flowEndReason 2 (active timeout) and the delta
// counters of that datagram alone; every other flow is the ground truth
// of the 60 s configuration.
func TestFastActiveTimeoutTshark(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	c, path := mixedCapture(t)
	cfg := testConfiguration(path)
	cfg.ActiveTimeoutFast = Duration(5 * time.Second)
	cfg.ActiveTimeoutFastFor = StringList{"10.1.0.20 port 5000"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	_, msgs := runFile(t, cfg)
	res := tsharkOf(t, tshark, msgs)
	long := netip.MustParseAddr("10.1.0.20")
	var got, want []synth.Flow
	n := 0
	for _, f := range res.Flows {
		if f.Src != long {
			got = append(got, f)
			continue
		}
		n++
		if f.Packets != 1 || f.Bytes != 128 || f.EndReason != 2 || f.StartMs != f.EndMs {
			t.Errorf("long flow record %+v: want 1 packet of 128 bytes, flowEndReason 2", f)
		}
	}
	if n != 30 {
		t.Errorf("long flow: %d records, want 30 (one per datagram)", n)
	}
	for _, f := range c.Flows {
		if f.Src != long {
			want = append(want, f)
		}
	}
	synth.Sort(got)
	if diff := testutil.FlowsDiff(got, want); diff != "" {
		t.Errorf("other flows (-got, +want):\n%s", diff)
	}
}
