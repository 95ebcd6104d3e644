package flow

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/fields.md from the field table")

// FieldsMarkdown renders docs/fields.md from the field table.
func fieldsMarkdown() string {
	var b strings.Builder
	b.WriteString("# Flow document fields\n\n")
	b.WriteString("Generated from `internal/flow/document.go` by `go test ./internal/flow -run TestFieldsDoc -update`;\n")
	b.WriteString("a test fails when this file and the code disagree. Every document spanflow writes\n")
	b.WriteString("(NDJSON, Elasticsearch) has these fields when the record carries a value for them.\n")
	b.WriteString("Names follow ECS where ECS has a home for the value; IPFIX/NetFlow elements without one\n")
	b.WriteString("go under `netflow.<snake_case IANA name>` as in Elastic's NetFlow integration.\n\n")
	b.WriteString("| field | type | description |\n| --- | --- | --- |\n")
	for _, f := range Fields() {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", f.Name, f.Type, strings.ReplaceAll(f.Description, "|", "\\|"))
	}
	return b.String()
}

func TestFieldsDoc(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "fields.md")
	want := fieldsMarkdown()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v (run: go test ./internal/flow -run TestFieldsDoc -update)", path, err)
	}
	if string(got) != want {
		t.Errorf("docs/fields.md is out of date: run go test ./internal/flow -run TestFieldsDoc -update")
	}
}
