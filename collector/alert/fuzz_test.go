package alert

import (
	"bytes"
	"os"
	"testing"

	"github.com/spanflow/spanflow/internal/flow"
)

// FuzzParseRules: any file gives rules or errors, never a panic.
func FuzzParseRules(f *testing.F) {
	classic, _ := os.ReadFile("testdata/classic.yaml")
	f.Add(classic)
	f.Add([]byte("rules:\n  - name: a\n    value: utilisation\n    above: 1\n"))
	f.Add([]byte("lines: {\"a b\": {capacity: 1T}}\ndetectors: {drop: {enabled: true}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if rf, err := ParseRules(data); err == nil && rf == nil {
			t.Fatal("no rules and no error")
		}
	})
}

// FuzzReadFlows: any input gives records or an error naming its line.
func FuzzReadFlows(f *testing.F) {
	f.Add([]byte(`{"@timestamp":"2026-12-04T10:00:01Z","source":{"ip":"10.0.0.1"},"network":{"bytes":5,"iana_number":"6"}}` + "\n"))
	f.Add([]byte("{}\n[1]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ReadFlows(bytes.NewReader(data), 8, func([]flow.Record) error { return nil })
	})
}
