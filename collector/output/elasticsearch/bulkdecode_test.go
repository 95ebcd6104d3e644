package elasticsearch

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/elastic/go-elasticsearch/v8/esutil"
)

// decodeBoth decodes a bulk response with bulkDecoder and with
// encoding/json (what esutil does by default) and reports whether they
// agree on every item's operation, status and error.
func decodeBoth(t *testing.T, body string) (esutil.BulkIndexerResponse, error) {
	t.Helper()
	var got, want esutil.BulkIndexerResponse
	err := bulkDecoder{}.UnmarshalFromReader(strings.NewReader(body), &got)
	wantErr := json.Unmarshal([]byte(body), &want)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("%q: error %v, encoding/json's %v", body, err, wantErr)
	}
	if err != nil {
		return got, err
	}
	if len(got.Items) != len(want.Items) {
		t.Fatalf("%q: %d items, encoding/json %d", body, len(got.Items), len(want.Items))
	}
	for i := range want.Items {
		if len(got.Items[i]) != len(want.Items[i]) {
			t.Fatalf("%q item %d: %v, encoding/json %v", body, i, got.Items[i], want.Items[i])
		}
		for op, w := range want.Items[i] {
			g, ok := got.Items[i][op]
			if !ok || g.Status != w.Status || g.Error.Type != w.Error.Type || g.Error.Reason != w.Error.Reason {
				t.Fatalf("%q item %d: %v, encoding/json %v", body, i, got.Items[i], want.Items[i])
			}
		}
	}
	return got, nil
}

func TestBulkDecoder(t *testing.T) {
	for _, body := range []string{
		`{"items":[{"create":{"status":201}},{"create":{"status":201}}]}`,
		`{"items":[{"index":{"status":201}},{"index":{"status":200}}]}`,
		`{"items":[]}`,
		`{}`,
		`{"items":[{"create":{"status":201}},{"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"document already exists"}}}]}`,
		`{"items":[{"create":{"status":400,"error":{"type":"document_parsing_exception","reason":"failed to parse field [source.ip]"}}}]}`,
		`{"items":[{"create":{"status":429}},{"delete":{"status":404}}]}`,
		`{"items": [ {"create": {"status": 201}} ]}`,
		`{"took":3,"errors":false,"items":[{"create":{"status":201}}]}`,
		`{"items":[{"create":{"status":201}}`,
		`not json`,
	} {
		decodeBoth(t, body)
	}
	// The shared maps must not be what a failed item gets.
	got, _ := decodeBoth(t, `{"items":[{"create":{"status":201}},{"create":{"status":503}}]}`)
	if got.Items[1]["create"].Status != 503 || created["create"].Status != 201 {
		t.Fatalf("items %v, shared map %v", got.Items, created)
	}
}

// FuzzBulkDecoder: whatever the body, bulkDecoder agrees with
// encoding/json (or both refuse it).
func FuzzBulkDecoder(f *testing.F) {
	f.Add(`{"items":[{"create":{"status":201}},{"index":{"status":200}}]}`)
	f.Add(`{"items":[{"create":{"status":409,"error":{"type":"x","reason":"y"}}}]}`)
	f.Add(`{"items":[]}`)
	f.Fuzz(func(t *testing.T, body string) {
		decodeBoth(t, body)
	})
}
