package setup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/spanflow/spanflow/internal/flow"
)

// TemplateInstalled reports whether the index template is on the cluster: a
// rebuilt cluster has lost it, and an index created before it is back gets
// Elasticsearch's default mappings (addresses as text, aggregations
// refused).
func TemplateInstalled(ctx context.Context, client *elasticsearch.Client) (bool, error) {
	status, body, err := do(ctx, client, http.MethodHead, "/_index_template/"+TemplateName, nil)
	if err != nil {
		return false, fmt.Errorf("look for index template %s: %w", TemplateName, err)
	}
	switch {
	case status == http.StatusOK:
		return true, nil
	case status == http.StatusNotFound:
		return false, nil
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return false, fmt.Errorf("look for index template %s: %w: %s", TemplateName, ErrNoPrivilege, reason(status, body))
	}
	return false, fmt.Errorf("look for index template %s: %s", TemplateName, reason(status, body))
}

// ErrNoPrivilege is a request the cluster refused for the credential's
// privileges (401/403): reading templates needs manage_index_templates.
var ErrNoPrivilege = errors.New("not allowed")

// FieldMismatch is a field an index maps with another type than the
// template's.
type FieldMismatch struct {
	Field, Got, Want string
}

// WrongMapping is an index matching the template's pattern whose mapping
// disagrees with the template: it was created without it (by a document
// indexed before the template was installed) or by hand.
type WrongMapping struct {
	Index  string
	Fields []FieldMismatch // sorted by field name
}

// Advice says, on one line, what is wrong with the index and what to do.
func (w WrongMapping) Advice() string {
	var shown []string
	for _, f := range w.Fields[:min(3, len(w.Fields))] {
		shown = append(shown, fmt.Sprintf("%s is %s, want %s", f.Field, f.Got, f.Want))
	}
	more := ""
	if n := len(w.Fields) - len(shown); n > 0 {
		more = fmt.Sprintf(" and %d more field(s)", n)
	}
	return fmt.Sprintf("index %s has wrong mappings (%s%s): it was created without the template; "+
		"reindex it (docs/elasticsearch.md#indices-with-wrong-mappings) or delete it (DELETE /%s)",
		w.Index, strings.Join(shown, ", "), more, w.Index)
}

// wantTypes is the type of every explicitly mapped field of the template.
func wantTypes() map[string]string {
	out := map[string]string{}
	for _, f := range flow.Fields() {
		if f.Type != "dynamic" {
			out[f.Name] = f.Type
		}
	}
	return out
}

// CheckMappings reads the mappings of every index matching the pattern and
// returns those with a field mapped with another type than the template's
// (a field the index does not map yet is not a mismatch: an index made by
// an older template lacks newer fields, and they still work).
func CheckMappings(ctx context.Context, client *elasticsearch.Client) ([]WrongMapping, error) {
	status, body, err := do(ctx, client, http.MethodGet,
		"/"+IndexPattern+"/_mapping?expand_wildcards=open,closed&allow_no_indices=true&ignore_unavailable=true", nil)
	if err != nil {
		return nil, fmt.Errorf("read mappings of %s: %w", IndexPattern, err)
	}
	if status == http.StatusNotFound {
		return nil, nil
	}
	if status >= 300 {
		return nil, fmt.Errorf("read mappings of %s: %s", IndexPattern, reason(status, body))
	}
	var indices map[string]struct {
		Mappings struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"mappings"`
	}
	if err := json.Unmarshal(body, &indices); err != nil {
		return nil, fmt.Errorf("read mappings of %s: %w", IndexPattern, err)
	}
	want := wantTypes()
	var out []WrongMapping
	for name, idx := range indices {
		got := map[string]string{}
		flatten("", idx.Mappings.Properties, got)
		var bad []FieldMismatch
		for field, w := range want {
			if g, ok := got[field]; ok && g != w {
				bad = append(bad, FieldMismatch{Field: field, Got: g, Want: w})
			}
		}
		if len(bad) > 0 {
			sort.Slice(bad, func(i, j int) bool { return fieldOrder(bad[i].Field) < fieldOrder(bad[j].Field) })
			out = append(out, WrongMapping{Index: name, Fields: bad})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out, nil
}

// fieldOrder puts the fields every report and dashboard needs first, so the
// one-line advice names them.
func fieldOrder(f string) string {
	for i, key := range []string{"@timestamp", "source.ip", "destination.ip", "observer.ip", "network.bytes"} {
		if f == key {
			return fmt.Sprintf("0%d", i)
		}
	}
	return "1" + f
}

// flatten collects the type of every leaf field of a mapping's properties
// under its dotted name; an object without a type is walked into.
func flatten(prefix string, props map[string]json.RawMessage, out map[string]string) {
	for name, raw := range props {
		var p struct {
			Type       string                     `json:"type"`
			Properties map[string]json.RawMessage `json:"properties"`
		}
		if json.Unmarshal(raw, &p) != nil {
			continue
		}
		full := prefix + name
		if p.Properties != nil && (p.Type == "" || p.Type == "object") {
			flatten(full+".", p.Properties, out)
			continue
		}
		if p.Type != "" {
			out[full] = p.Type
		}
	}
}
