package report

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/dashboards/internal/groundtruth"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestLocalDaysAcrossClockChange builds line-load reports in
// Europe/Zurich with whole-day intervals over ranges holding a clock
// change, on the real Elasticsearch, from flows whose bytes are known and
// placed just inside each local day: each bucket must run from a local
// midnight to the next (23 or 25 hours on the day of the change) and read
// its bytes × 8 over its own length. Fixed 24 h buckets drifted off the
// midnights after the change (the hour after 23:00 on the 25-hour day went
// into the next day) and divided a 23- or 25-hour day's bytes by 24 hours;
// a one-day report of the 23-hour day was refused as shorter than its
// interval. Sub-day intervals keep buckets of their real length through
// the repeated hour.
func TestLocalDaysAcrossClockChange(t *testing.T) {
	url := testutil.Elasticsearch(t)
	client := groundtruth.Client(t, url)
	zurich, err := time.LoadLocation("Europe/Zurich")
	if err != nil {
		t.Fatal(err)
	}
	obs := netip.MustParseAddr("10.254.0.1")
	local := func(y int, m time.Month, d, h, mi int) time.Time { return time.Date(y, m, d, h, mi, 0, 0, zurich) }
	rec := func(at time.Time, bytes uint64) flow.Record {
		return flow.Record{Kind: flow.KindIPFIX, ObserverIP: obs, InIf: 7, OutIf: 8, Proto: 6,
			Start: at.Add(-time.Second), End: at, Received: at,
			SrcAddr: netip.MustParseAddr("10.1.0.1"), DstAddr: netip.MustParseAddr("10.2.0.1"), Bytes: bytes, Packets: 1}
	}
	type day struct {
		from, to time.Time
		bytes    uint64
	}
	for _, tc := range []struct {
		name     string
		interval time.Duration
		recs     []flow.Record
		days     []day // the buckets expected
	}{
		{
			// Spring: 29 March 2026 has 23 hours.
			name: "spring", interval: 24 * time.Hour,
			recs: []flow.Record{
				rec(local(2026, 3, 28, 0, 10), 1_000_000), rec(local(2026, 3, 28, 23, 50), 2_000_000),
				rec(local(2026, 3, 29, 0, 10), 3_000_000), rec(local(2026, 3, 29, 23, 50), 4_000_000),
			},
			days: []day{
				{local(2026, 3, 28, 0, 0), local(2026, 3, 29, 0, 0), 3_000_000},
				{local(2026, 3, 29, 0, 0), local(2026, 3, 30, 0, 0), 7_000_000},
			},
		},
		{
			// Autumn: 25 October 2026 has 25 hours; its last hour is
			// 23:00-24:00 local, 22:00-23:00 UTC.
			name: "autumn", interval: 24 * time.Hour,
			recs: []flow.Record{
				rec(local(2026, 10, 24, 12, 0), 5_000_000),
				rec(local(2026, 10, 25, 0, 10), 6_000_000), rec(local(2026, 10, 25, 23, 30), 7_000_000),
				rec(local(2026, 10, 26, 0, 30), 8_000_000),
			},
			days: []day{
				{local(2026, 10, 24, 0, 0), local(2026, 10, 25, 0, 0), 5_000_000},
				{local(2026, 10, 25, 0, 0), local(2026, 10, 26, 0, 0), 13_000_000},
				{local(2026, 10, 26, 0, 0), local(2026, 10, 27, 0, 0), 8_000_000},
			},
		},
		{
			// Two-day buckets: the first holds the 25-hour day (49 hours).
			name: "two-days", interval: 48 * time.Hour,
			recs: []flow.Record{
				rec(local(2026, 10, 24, 0, 10), 1_000_000), rec(local(2026, 10, 25, 23, 30), 2_000_000),
				rec(local(2026, 10, 26, 0, 30), 4_000_000),
			},
			days: []day{
				{local(2026, 10, 24, 0, 0), local(2026, 10, 26, 0, 0), 3_000_000},
				{local(2026, 10, 26, 0, 0), local(2026, 10, 28, 0, 0), 4_000_000},
			},
		},
		{
			// The 23-hour day alone, as a daily schedule reports it.
			name: "short-day", interval: 24 * time.Hour,
			recs: []flow.Record{rec(local(2026, 3, 29, 12, 0), 9_000_000)},
			days: []day{{local(2026, 3, 29, 0, 0), local(2026, 3, 30, 0, 0), 9_000_000}},
		},
		{
			// Hours through the repeated hour: 02:30 local twice, an hour
			// apart, in two buckets of an hour.
			name: "hours", interval: time.Hour,
			recs: []flow.Record{
				rec(time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC), 1_000_000), // 02:30 +02:00
				rec(time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC), 2_000_000), // 02:30 +01:00
			},
			days: []day{
				{time.Date(2026, 10, 25, 0, 0, 0, 0, time.UTC), time.Date(2026, 10, 25, 1, 0, 0, 0, time.UTC), 1_000_000},
				{time.Date(2026, 10, 25, 1, 0, 0, 0, time.UTC), time.Date(2026, 10, 25, 2, 0, 0, 0, time.UTC), 2_000_000},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			index := groundtruth.Index(t, client, tc.recs)
			from, to := tc.days[0].from, tc.days[len(tc.days)-1].to
			if tc.interval == time.Hour {
				from, to = local(2026, 10, 25, 0, 0), local(2026, 10, 26, 0, 0)
			}
			q := Query{Index: index, From: from.UTC(), To: to.UTC(), Interval: tc.interval, Location: zurich}
			ll, err := BuildLineLoad(context.Background(), client, q)
			if err != nil {
				t.Fatal(err)
			}
			if len(ll.Lines) != 2 {
				t.Fatalf("%d lines, want 2 (in on 7, out on 8)", len(ll.Lines))
			}
			var total uint64
			for _, d := range tc.days {
				total += d.bytes
			}
			var peak float64
			for _, l := range ll.Lines {
				series := l.In
				if l.Interface == "8" {
					series = l.Out
				}
				var got []string
				for _, p := range series {
					got = append(got, fmt.Sprintf("%s..%s %.3f", p.Time.In(zurich).Format(time.RFC3339), p.End.In(zurich).Format(time.RFC3339), p.Bps))
				}
				var want []string
				for _, d := range tc.days {
					bps := float64(d.bytes) * 8 / d.to.Sub(d.from).Seconds()
					peak = math.Max(peak, bps)
					want = append(want, fmt.Sprintf("%s..%s %.3f", d.from.In(zurich).Format(time.RFC3339), d.to.In(zurich).Format(time.RFC3339), bps))
				}
				if diff := testutil.Diff(got, want); diff != "" {
					t.Errorf("line %s buckets (-got, +want):\n%s", l.Interface, diff)
				}
				if l.InBytes+l.OutBytes != total {
					t.Errorf("line %s: %d bytes, want %d", l.Interface, l.InBytes+l.OutBytes, total)
				}
			}
			out, err := Render(ll, "csv")
			if err != nil {
				t.Fatal(err)
			}
			rows := readCSV(t, out)
			if len(rows) != 3 || rows[1][11] != f0(peak) || rows[2][12] != f0(peak) {
				t.Errorf("CSV peaks, want in_peak_bps and out_peak_bps %s:\n%s", f0(peak), out)
			}
			title := fmt.Sprintf("%s to %s (Europe/Zurich)", from.Format("2006-01-02 15:04 -07:00"), to.Format("2006-01-02 15:04 -07:00"))
			if !strings.HasSuffix(ll.Title(), title) {
				t.Errorf("title %q does not give the range in local time, %q", ll.Title(), title)
			}
		})
	}
}
