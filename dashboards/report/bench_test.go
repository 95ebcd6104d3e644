package report

import (
	"context"
	"testing"
	"time"

	"github.com/spanflow/spanflow/dashboards/internal/groundtruth"
	"github.com/spanflow/spanflow/internal/testutil"
)

// BenchmarkReports times both reports over 100000 flows (9 lines, 6 hours,
// 5-minute buckets) on the test cluster; indexing is not timed.
func BenchmarkReports(b *testing.B) {
	url := testutil.Elasticsearch(b)
	client := groundtruth.Client(b, url)
	index := groundtruth.Index(b, client, groundtruth.Records(100_000, 1))
	q := Query{Index: index, From: groundtruth.Start, To: groundtruth.Start.Add(groundtruth.Span), Interval: 5 * time.Minute, Top: 10, Lines: 10}
	for _, kind := range []string{"line-load", "top-ip"} {
		b.Run(kind, func(b *testing.B) {
			for b.Loop() {
				r, err := Build(context.Background(), client, kind, q)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Render(r, "html"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
