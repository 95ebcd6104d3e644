// Package numfmt writes numbers the way the CLI's summaries show them to
// people: thousands separators, a noun in the singular or plural, shares
// and milliseconds. The demo's summary and the exporter's share it.
package numfmt

import (
	"strconv"
	"strings"
	"time"
)

// Group writes n with thousands separators: 1,234,567.
func Group(n uint64) string {
	s := strconv.FormatUint(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Count writes n grouped, then the noun: singular for 1, else plural
// (singular+"s" when plural is empty): "1 packet", "2,048 packets".
func Count(n uint64, singular, plural string) string {
	if n == 1 {
		return "1 " + singular
	}
	if plural == "" {
		plural = singular + "s"
	}
	return Group(n) + " " + plural
}

// Percent writes a share with one decimal.
func Percent(p float64) string { return strconv.FormatFloat(p, 'f', 1, 64) + "%" }

// Millis writes a duration in milliseconds with two decimals.
func Millis(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + " ms"
}
