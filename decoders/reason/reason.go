// Package reason gives decode errors a short, fixed reason, so the collector
// can count malformed datagrams per reason (a metric label) while the error
// text keeps the detail.
package reason

import (
	"errors"
	"fmt"
)

// Reasons the decoders report. They are metric label values: keep them few
// and fixed.
const (
	Short         = "short"              // datagram shorter than its header or its declared length
	Version       = "unknown_version"    // not NetFlow v5/v9, IPFIX or sFlow v5
	Header        = "bad_header"         // header fields out of range
	Set           = "bad_set"            // a flow set / sample that does not parse
	Template      = "bad_template"       // a template that does not parse or cannot describe data
	TemplateLimit = "template_limit"     // the exporter has too many templates
	ExporterLimit = "exporter_limit"     // too many exporters
	NoTemplate    = "no_template"        // data whose template never came (expired while held)
	PendingLimit  = "pending_limit"      // too much data held waiting for templates
	Record        = "bad_record"         // a record whose values do not parse
	SampledHeader = "bad_sampled_header" // an sFlow sampled header that does not decode
	NotAllowed    = "not_allowed"        // exporter outside the allowed networks
)

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
