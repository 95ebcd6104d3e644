package esconn

import "testing"

// TestErrorReason: the reason of an Elasticsearch error answer is its root
// cause, not the "all shards failed" at its top, each cause once.
func TestErrorReason(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"failed search", `{"error":{"root_cause":[{"type":"illegal_argument_exception","reason":"Fielddata is disabled on [observer.ip] in [x]."}],
			"type":"search_phase_execution_exception","reason":"all shards failed","phase":"query",
			"failed_shards":[{"shard":0,"index":"x","reason":{"type":"illegal_argument_exception","reason":"Fielddata is disabled on [observer.ip] in [x]."}}],
			"caused_by":{"type":"illegal_argument_exception","reason":"Fielddata is disabled on [observer.ip] in [x]."}},"status":400}`,
			"illegal_argument_exception: Fielddata is disabled on [observer.ip] in [x]."},
		{"nested cause", `{"error":{"type":"mapper_parsing_exception","reason":"failed to parse","caused_by":{"type":"x","reason":"outer",
			"caused_by":{"type":"number_format_exception","reason":"For input string: \"abc\""}}},"status":400}`,
			`mapper_parsing_exception: failed to parse; number_format_exception: For input string: "abc"`},
		{"plain", `{"error":{"type":"index_not_found_exception","reason":"no such index [y]"},"status":404}`,
			"index_not_found_exception: no such index [y]"},
	} {
		got, ok := ErrorReason([]byte(tc.body))
		if !ok || got != tc.want {
			t.Errorf("%s: got %q (%t), want %q", tc.name, got, ok, tc.want)
		}
	}
	if _, ok := ErrorReason([]byte(`<html>bad gateway</html>`)); ok {
		t.Error("an HTML page read as an Elasticsearch error")
	}
}
