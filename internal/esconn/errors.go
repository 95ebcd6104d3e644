package esconn

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// UnreachableError is a cluster that does not answer (connection refused,
// timeout, no route) or answers that it cannot serve now (429, 5xx): waiting
// may cure it, unlike a refused credential or a bad request.
type UnreachableError struct{ Err error }

func (e *UnreachableError) Error() string { return e.Err.Error() }
func (e *UnreachableError) Unwrap() error { return e.Err }

// Unreachable reports whether err says the cluster did not answer, or
// answered that it cannot serve now.
func Unreachable(err error) bool {
	var u *UnreachableError
	return errors.As(err, &u)
}

// NotElasticsearchError is a server that answered and is not
// Elasticsearch (no X-Elastic-Product header: a proxy that strips it,
// another product): waiting does not cure it, the URL or the proxy must
// change.
type NotElasticsearchError struct{ Err error }

func (e *NotElasticsearchError) Error() string { return e.Err.Error() }
func (e *NotElasticsearchError) Unwrap() error { return e.Err }

// NotElasticsearch reports whether err says the server answered and is
// not Elasticsearch.
func NotElasticsearch(err error) bool {
	var n *NotElasticsearchError
	return errors.As(err, &n)
}

// errorBody is Elasticsearch's error answer. A search that failed on every
// shard says only "all shards failed" in error.reason; what failed is in
// error.root_cause, error.caused_by and failed_shards[].reason.
type errorBody struct {
	Error struct {
		cause
		RootCause    []cause `json:"root_cause"`
		FailedShards []struct {
			Reason cause `json:"reason"`
		} `json:"failed_shards"`
	} `json:"error"`
}

type cause struct {
	Type     string `json:"type"`
	Reason   string `json:"reason"`
	CausedBy *cause `json:"caused_by"`
}

// deepest follows caused_by to the innermost cause with a reason.
func (c cause) deepest() cause {
	for c.CausedBy != nil && c.CausedBy.Reason != "" {
		c = *c.CausedBy
	}
	return c
}

// ErrorReason returns the reason in an Elasticsearch error answer, on one
// line: the root causes (each once) when the cluster gives them, since the
// top-level reason of a failed search ("all shards failed") names none;
// else the top-level type and reason, with its innermost cause. ok is
// false when body is not an Elasticsearch error.
func ErrorReason(body []byte) (reason string, ok bool) {
	var e errorBody
	if json.Unmarshal(body, &e) != nil || (e.Error.Type == "" && e.Error.Reason == "") {
		return "", false
	}
	var parts []string
	seen := map[string]bool{}
	add := func(c cause) {
		if c.Reason == "" {
			return
		}
		s := c.Type + ": " + c.Reason
		if c.Type == "" {
			s = c.Reason
		}
		s = strings.Join(strings.Fields(s), " ")
		if !seen[s] {
			seen[s] = true
			parts = append(parts, s)
		}
	}
	for _, c := range e.Error.RootCause {
		add(c.deepest())
	}
	for _, f := range e.Error.FailedShards {
		add(f.Reason.deepest())
	}
	top := e.Error.cause
	if len(parts) == 0 {
		add(top)
		if d := top.deepest(); d != top {
			add(d)
		}
	} else if d := top.deepest(); d.Reason != top.Reason {
		add(d)
	}
	if len(parts) == 0 {
		return e.Error.Type, true
	}
	return strings.Join(parts, "; "), true
}

// StatusError is an error answer of the cluster, with its reason.
func StatusError(status string, body []byte) error {
	if r, ok := ErrorReason(body); ok {
		return fmt.Errorf("%s: %s", status, r)
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		return errors.New(status)
	}
	return fmt.Errorf("%s: %s", status, s)
}
