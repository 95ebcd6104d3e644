package report

import (
	"fmt"
	"time"
)

// DefaultIndex is the index pattern the collector writes.
const DefaultIndex = "spanflow-flows-*"

// Query says what a report covers.
type Query struct {
	Index    string    // index pattern; DefaultIndex when empty
	From, To time.Time // [From, To) on @timestamp
	// Top is how many lines a line-load report lists, or how many IPs per
	// line and role a Top-IP report lists; 0 means all.
	Top int
	// Lines bounds how many lines (the busiest) a Top-IP report covers; 0
	// means all.
	Lines int
	// Interval is the bucket of the utilisation series and of the peak.
	Interval time.Duration
}

// Validate checks the query.
func (q Query) Validate() error {
	switch {
	case q.From.IsZero() || q.To.IsZero():
		return fmt.Errorf("report needs a time range (--from and --to)")
	case !q.To.After(q.From):
		return fmt.Errorf("report range is empty: --to %s is not after --from %s", q.To.Format(time.RFC3339), q.From.Format(time.RFC3339))
	case q.Top < 0 || q.Lines < 0:
		return fmt.Errorf("--top and --lines must not be negative")
	case q.Interval < time.Second || q.Interval%time.Second != 0:
		return fmt.Errorf("report interval %s: want a whole number of seconds, at least 1s", q.Interval)
	case q.Interval > q.To.Sub(q.From):
		// The peak is a bucket's bytes over the interval: a bucket longer
		// than the range spreads them over time outside it, below the average.
		return fmt.Errorf("report interval %s is longer than the range of %s: the peak rate would be below the average; use --interval %s or less",
			shortDuration(q.Interval), spanText(q.To.Sub(q.From)), shortDuration(q.To.Sub(q.From).Truncate(time.Second)))
	case q.To.Sub(q.From)/q.Interval > maxBuckets:
		return fmt.Errorf("report interval %s is too small for the range of %s: more than %d buckets per line; use --interval %s or more",
			shortDuration(q.Interval), spanText(q.To.Sub(q.From)), maxBuckets, shortDuration(fittingInterval(q.To.Sub(q.From))))
	}
	return nil
}

func (q Query) index() string {
	if q.Index == "" {
		return DefaultIndex
	}
	return q.Index
}
