package noc

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/rollup"
	"github.com/spanflow/spanflow/internal/flow"
)

func lineRows(bps map[string]float64) *rollup.Snapshot {
	s := &rollup.Snapshot{Time: time.Unix(1_800_000_000, 0)}
	for k, v := range bps {
		s.Rows = append(s.Rows, rollup.Row{Scope: rollup.ScopeLine, Key: k,
			Values: rollup.ValuesOf(map[string]float64{rollup.BitsPerSecond: v, rollup.BitsPerSecondSmoothed: v})})
	}
	return s
}

// TestChartBound: with room for two lines, a heavier third takes the
// lightest one's place, a lighter one is counted as not charted, and the
// history holds one value a tick (zeros for the ticks the rollups
// skipped), at most a history long.
func TestChartBound(t *testing.T) {
	cfg := DefaultConfiguration()
	cfg.MaxRows, cfg.History = 2, time.Minute
	v := newView(cfg, time.Second, 5*time.Second, nil, nil)
	snap := lineRows(map[string]float64{"a": 100, "b": 10})
	v.rollup(snap, time.Now())
	snap.Time = snap.Time.Add(3 * time.Second) // two ticks skipped
	v.rollup(snap, time.Now())
	if h := v.history(); fmt.Sprint(h["a"]) != "[100 0 0 100]" || fmt.Sprint(h["b"]) != "[10 0 0 10]" {
		t.Errorf("history %v", h)
	}
	snap = lineRows(map[string]float64{"a": 100, "b": 10, "c": 50, "d": 1})
	snap.Time = time.Unix(1_800_000_004, 0)
	f := v.rollup(snap, time.Now())
	var keys []string
	for _, l := range f.Lines {
		keys = append(keys, l.Key)
	}
	if fmt.Sprint(keys) != "[a c]" || f.Health.LinesNotCharted != 2 {
		t.Errorf("charted %v, %d not charted; want [a c], 2", keys, f.Health.LinesNotCharted)
	}
	for i := range 100 {
		snap.Time = snap.Time.Add(time.Second)
		v.rollup(snap, time.Now())
		_ = i
	}
	if n := len(v.history()["a"]); n != 60 {
		t.Errorf("%d values held for a 1m history", n)
	}
}

// TestSankeyNodes: ends are named by project, else internal, else outside;
// transit is left out of the Sankey but counted in the split; pairs past
// the bound go to other → other; exporter statistics add up.
func TestSankeyNodes(t *testing.T) {
	cfg := DefaultConfiguration()
	cfg.MaxPairs = 3
	v := newView(cfg, time.Second, 5*time.Second, nil, nil)
	proj := func(p string) flow.Endpoint { return flow.Endpoint{Network: &flow.NetworkInfo{Name: "n", Project: p}} }
	known := flow.Endpoint{VSphere: &flow.VSphere{VMName: "vm1"}}
	outside := flow.Endpoint{}
	recs := []flow.Record{
		{Src: proj("pay"), Dst: proj("web"), Bytes: 100, Direction: "east-west"},
		{Src: known, Dst: outside, Bytes: 10, Direction: "north-south"},
		{Src: outside, Dst: outside, Bytes: 7, Direction: "unknown"},
		{Src: proj("web"), Dst: outside, Bytes: 20, Direction: "north-south"},
		{Src: proj("db"), Dst: proj("web"), Bytes: 5, Direction: "east-west"}, // a fourth pair
		{ObserverIP: netip.MustParseAddr("10.0.0.1"), Exporter: &flow.ExporterStats{Datagrams: 3, SequenceLosses: 1, Templates: 2}},
		{ObserverIP: netip.MustParseAddr("10.0.0.1"), Exporter: &flow.ExporterStats{Datagrams: 4, Templates: 3}},
	}
	v.Write(recs)
	f := v.rollup(&rollup.Snapshot{Time: time.Unix(1_800_000_000, 0)}, time.Now())
	links := map[string]float64{}
	for _, l := range f.Links {
		links[l.From+">"+l.To] = l.Bytes
	}
	want := map[string]float64{"pay>web": 100, "internal>outside": 10, "web>outside": 20, "other>other": 5}
	if fmt.Sprint(links) != fmt.Sprint(want) || f.Health.PairsOverflow != 1 {
		t.Errorf("links %v (overflow %d), want %v", links, f.Health.PairsOverflow, want)
	}
	split := map[string]float64{}
	for _, r := range f.Split {
		split[r.Name] = r.Bytes
	}
	if split["east-west"] != 105 || split["north-south"] != 30 || split["other"] != 7 {
		t.Errorf("split %v", split)
	}
	if len(f.Exporters) != 1 || f.Exporters[0].Datagrams != 7 || f.Exporters[0].SequenceLosses != 1 || f.Exporters[0].Templates != 3 {
		t.Errorf("exporters %+v", f.Exporters)
	}
}

// TestNotFinite: a NaN or infinite value in a snapshot does not stop the
// frame from encoding (JSON has neither).
func TestNotFinite(t *testing.T) {
	s, e, _ := newTestServer(t, nil)
	_ = e
	snap := lineRows(map[string]float64{"a": math.NaN(), "b": math.Inf(1)})
	snap.Rows = append(snap.Rows, rollup.Row{Scope: rollup.ScopeProject, Key: "p",
		Values: rollup.ValuesOf(map[string]float64{rollup.RTTp95: math.NaN(), rollup.RetransmissionRatio: math.Inf(1)})})
	s.Rollup(snap)
	var f Frame
	if err := json.Unmarshal(s.lastJSON, &f); err != nil || len(f.Lines) != 2 || f.Projects[0].RTTp95 != nil {
		t.Errorf("frame %s: %v", s.lastJSON, err)
	}
}
