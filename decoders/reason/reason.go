// Package reason gives decode errors a short, fixed reason, so the collector
// can count malformed datagrams per reason (a metric label) while the error
// text keeps the detail.
package reason

import (
	"errors"
	"fmt"
	"iter"
	"strings"
)

// Reasons the decoders report. They are metric label values: keep them few
// and fixed.
const (
	Short         = "short"              // datagram shorter than its header or its declared length
	Version       = "unknown_version"    // not NetFlow v5/v9, IPFIX or sFlow v5
	Header        = "bad_header"         // header fields out of range
	Set           = "bad_set"            // a flow set / sample that does not parse
	Template      = "bad_template"       // a template that does not parse or cannot describe data
	ExporterLimit = "exporter_limit"     // too many exporters
	NoTemplate    = "no_template"        // data whose template never came (expired while held)
	Record        = "bad_record"         // a record whose values do not parse
	SampledHeader = "bad_sampled_header" // an sFlow sampled header that does not decode
	NotAllowed    = "not_allowed"        // exporter outside the allowed networks

	// Limits of one exporter's state: each refuses one item (a template, a
	// held data set, an options value), counted once per item.
	TemplateLimit       = "template_limit"        // the exporter has too many templates
	PendingLimit        = "pending_limit"         // too many data sets held waiting for templates
	DomainLimit         = "domain_limit"          // templates in too many observation domains
	OptionsLimit        = "options_limit"         // too many interface names or sampler rates from options records
	ExporterMemoryLimit = "exporter_memory_limit" // the exporter's state would pass its bytes
	MemoryLimit         = "memory_limit"          // all exporters' state would pass its bytes
)

var limits = [...]string{TemplateLimit, PendingLimit, DomainLimit, OptionsLimit, ExporterMemoryLimit, MemoryLimit}

// Tally counts the items limits refused, by reason, without allocating.
type Tally [len(limits)]int32

// Add counts one refusal; why must be one of the limit reasons.
func (t *Tally) Add(why string) {
	for i, r := range limits {
		if r == why {
			t[i]++
			return
		}
	}
	panic("reason: " + why + " is not a limit")
}

// Count is the number of refusals for why.
func (t Tally) Count(why string) int {
	for i, r := range limits {
		if r == why {
			return int(t[i])
		}
	}
	return 0
}

// Total is the number of refusals for every reason.
func (t Tally) Total() int {
	n := 0
	for _, c := range t {
		n += int(c)
	}
	return n
}

// All yields the reasons with a count.
func (t Tally) All() iter.Seq2[string, int] {
	return func(yield func(string, int) bool) {
		for i, c := range t {
			if c > 0 && !yield(limits[i], int(c)) {
				return
			}
		}
	}
}

// String lists the counts, as in "template_limit=3 pending_limit=1".
func (t Tally) String() string {
	var b strings.Builder
	for why, n := range t.All() {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", why, n)
	}
	return b.String()
}

// Merge adds the counts of o.
func (t *Tally) Merge(o Tally) {
	for i := range t {
		t[i] += o[i]
	}
}

// Error is a decode error with its reason.
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// New wraps err with a reason.
func New(reason string, err error) error { return &Error{Reason: reason, Err: err} }

// Errorf is New with a formatted error.
func Errorf(reason, format string, args ...any) error {
	return &Error{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Of returns the reason of err, or "other".
func Of(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return "other"
}
