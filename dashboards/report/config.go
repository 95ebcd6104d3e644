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
	// A whole number of days is that many calendar days of Location (23
	// or 25 hours across a clock change); a shorter one is fixed.
	Interval time.Duration
	// Location is the time zone of whole-day buckets and of the times
	// the report shows; UTC when nil.
	Location *time.Location
}

func (q Query) loc() *time.Location {
	if q.Location == nil {
		return time.UTC
	}
	return q.Location
}

// bucketEnd is the end of the bucket that starts at t: with an Interval of
// whole days, the same wall-clock time that many days later in Location
// (a day of the clock change has 23 or 25 hours), else t + Interval.
func (q Query) bucketEnd(t time.Time) time.Time {
	if q.Interval%(24*time.Hour) != 0 {
		return t.Add(q.Interval)
	}
	lt := t.In(q.loc())
	end := time.Date(lt.Year(), lt.Month(), lt.Day()+int(q.Interval/(24*time.Hour)), lt.Hour(), lt.Minute(), lt.Second(), lt.Nanosecond(), q.loc())
	if !end.After(t) { // never a bucket of no length
		end = t.Add(q.Interval)
	}
	return end.UTC()
}

// bounds are the bucket bounds of the range: From, then each bucket's end
// until one reaches To (the last bucket may end after To).
func (q Query) bounds() []time.Time {
	b := []time.Time{q.From}
	for t := q.From; t.Before(q.To); {
		t = q.bucketEnd(t)
		b = append(b, t)
	}
	return b
}

// CheckSettings checks what Validate checks besides the range: a
// scheduled report checks it at start, before any range is known, so
// that a mistake ends the command instead of failing every run.
func (q Query) CheckSettings() error {
	switch {
	case q.Top < 0 || q.Lines < 0:
		return fmt.Errorf("--top and --lines must not be negative")
	case q.Interval < time.Second || q.Interval%time.Second != 0:
		return fmt.Errorf("report interval %s: want a whole number of seconds, at least 1s", q.Interval)
	}
	return nil
}

// Validate checks the query.
func (q Query) Validate() error {
	switch {
	case q.From.IsZero() || q.To.IsZero():
		return fmt.Errorf("report needs a time range (--from and --to)")
	case !q.To.After(q.From):
		return fmt.Errorf("report range is empty: --to %s is not after --from %s", q.To.Format(time.RFC3339), q.From.Format(time.RFC3339))
	case q.CheckSettings() != nil:
		return q.CheckSettings()
	case q.bucketEnd(q.From).After(q.To):
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
