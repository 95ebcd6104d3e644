package elasticsearch

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/output/elasticsearch/setup"
	"github.com/spanflow/spanflow/internal/flow"
)

// TestRequestBody: the body of a bulk request, read back by encoding/json
// line by line, is each document's action line (operation, index, id) and
// the document, in order, with ids and index names that need escaping too.
func TestRequestBody(t *testing.T) {
	items := []item{
		{index: "spanflow-flows-2026.11.26", id: []byte("AAECAwQFBgcICQoLDA0ODw"), doc: []byte(`{"a":1}`)},
		{index: "weird\"index\\", id: []byte("id\twith\x01controls é"), doc: []byte(`{"b":"two"}`)},
		{index: "spanflow-flows", id: []byte("x"), doc: []byte(`{}`)},
	}
	for _, action := range []string{"create", "index"} {
		var r bulkRequest
		for _, it := range items {
			r.add(action, it)
		}
		sc := bufio.NewScanner(bytes.NewReader(r.body))
		for i := 0; sc.Scan(); i++ {
			var meta map[string]struct {
				Index string `json:"_index"`
				ID    string `json:"_id"`
			}
			if err := json.Unmarshal(sc.Bytes(), &meta); err != nil || len(meta) != 1 {
				t.Fatalf("%s: action line %d %q: %v", action, i, sc.Bytes(), err)
			}
			if m := meta[action]; m.Index != items[i].index || m.ID != string(items[i].id) {
				t.Errorf("%s: action line %d %q, want index %q id %q", action, i, sc.Bytes(), items[i].index, items[i].id)
			}
			if !sc.Scan() || !bytes.Equal(sc.Bytes(), items[i].doc) {
				t.Errorf("%s: document %d is %q, want %q", action, i, sc.Bytes(), items[i].doc)
			}
			if i == len(items)-1 && sc.Scan() {
				t.Errorf("%s: a line past the last document: %q", action, sc.Bytes())
			}
		}
		if len(r.items) != len(items) || !bytes.HasSuffix(r.body, []byte("\n")) {
			t.Errorf("%s: %d items, body ends %q", action, len(r.items), r.body[len(r.body)-3:])
		}
		r.reset()
		if len(r.body) != 0 || len(r.items) != 0 {
			t.Errorf("reset left %d bytes, %d items", len(r.body), len(r.items))
		}
	}
}

// referenceAnswer reads a bulk answer with encoding/json only: per item,
// the status and error; every item OK when errors is false.
func referenceAnswer(b []byte, n int) (all bool, results []itemResult, ok bool) {
	var answer struct {
		Errors *bool                   `json:"errors"`
		Items  []map[string]itemResult `json:"items"`
	}
	if json.Unmarshal(b, &answer) != nil {
		return false, nil, false
	}
	if answer.Errors != nil && !*answer.Errors {
		return true, nil, true
	}
	if len(answer.Items) != n {
		return false, nil, false
	}
	for _, m := range answer.Items {
		if len(m) != 1 {
			return false, nil, false
		}
		for _, r := range m {
			results = append(results, r)
		}
	}
	return false, results, true
}

// agree checks parseBulkAnswer against the reference on a valid answer.
func agree(t *testing.T, body string, n int) {
	t.Helper()
	all, results, err := parseBulkAnswer([]byte(body), n)
	wantAll, wantResults, ok := referenceAnswer([]byte(body), n)
	if (err == nil) != ok || all != wantAll || (len(results) > 0 || len(wantResults) > 0) && !reflect.DeepEqual(results, wantResults) {
		t.Fatalf("%q (%d documents): all %v, results %+v, error %v; encoding/json: all %v, results %+v, usable %v",
			body, n, all, results, err, wantAll, wantResults, ok)
	}
}

func TestParseBulkAnswer(t *testing.T) {
	for _, c := range []struct {
		body string
		n    int
	}{
		// What Elasticsearch 8.19 answers with the filter (checked against the test cluster).
		{`{"errors":false,"items":[{"create":{"status":201}},{"create":{"status":201}}]}`, 2},
		{`{"errors":true,"items":[{"index":{"status":201}},{"index":{"status":400,"error":{"type":"document_parsing_exception","reason":"[1:6] failed to parse field [x] of type [long]"}}},{"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"[a]: version conflict, document already exists (current version [1])"}}}]}`, 3},
		{`{"errors":true,"items":[{"create":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected"}}}]}`, 1},
		{`{"errors" : false , "items":[]}`, 0},
		{`{"items":[{"index":{"status":200}}],"errors":false}`, 1},
		{`{"errors":true,"items":[{"index":{"status":201}}]}`, 2},                         // too few items: unusable
		{`{"errors":true,"items":[{"index":{"status":201},"create":{"status":201}}]}`, 1}, // two operations
		{`{"errors":true}`, 1},
		{`not json`, 1},
		{``, 0},
	} {
		agree(t, c.body, c.n)
	}
	// The fast path: an answer with no errors is not decoded at all, so
	// it must not need to be valid past its first bytes.
	if all, _, err := parseBulkAnswer([]byte(`{"errors":false,"items":[TRUNCATED`), 5); !all || err != nil {
		t.Errorf("fast path not taken: all %v, error %v", all, err)
	}
	for _, body := range []string{`{"errors":falsey}`, `{"errors":false`} {
		if all, _, _ := parseBulkAnswer([]byte(body), 1); all {
			t.Errorf("%q taken as all indexed", body)
		}
	}
}

// FuzzBulkAnswer: on any valid JSON answer, parseBulkAnswer agrees with
// encoding/json; on anything else it does not panic.
func FuzzBulkAnswer(f *testing.F) {
	f.Add(`{"errors":false,"items":[{"create":{"status":201}}]}`, 1)
	f.Add(`{"errors":true,"items":[{"create":{"status":409,"error":{"type":"x","reason":"y"}}}]}`, 1)
	f.Add(`{"items":[]}`, 0)
	f.Fuzz(func(t *testing.T, body string, n int) {
		if n < 0 || n > 1000 {
			return
		}
		// The fast path reads only the first key; a later repeat of it
		// (which Elasticsearch never sends) would make encoding/json
		// differ, so valid answers are compared when not fast-pathed.
		if !json.Valid([]byte(body)) || strings.HasPrefix(body, `{"errors":false`) {
			parseBulkAnswer([]byte(body), n)
			return
		}
		agree(t, body, n)
	})
}

// TestActionStarts: the action line Write starts each document with,
// kept per day, is the one add writes, with the index Layout.Index gives,
// for times on either side of midnight and before 1970, in both layouts.
func TestActionStarts(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	base := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	var times []time.Time
	for _, day := range []time.Time{base, time.Unix(0, 0).UTC(), time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC), time.Date(1900, 3, 1, 0, 0, 0, 0, time.UTC)} {
		for _, d := range []time.Duration{0, -time.Nanosecond, time.Nanosecond, -time.Second, 24*time.Hour - time.Nanosecond, 24 * time.Hour} {
			times = append(times, day.Add(d))
		}
	}
	for range 2000 {
		times = append(times, base.Add(time.Duration(rng.Int64N(int64(400*24*time.Hour)))-200*24*time.Hour))
	}
	for _, l := range []setup.Layout{{DataStream: true}, {}} {
		var a actionStarts
		for _, tm := range times {
			index, start := a.of(l, l.Action(), tm)
			if index != l.Index(tm) {
				t.Fatalf("%v (data stream %v): index %q, want %q", tm, l.DataStream, index, l.Index(tm))
			}
			if want := appendActionStart(nil, l.Action(), l.Index(tm)); !bytes.Equal(start, want) {
				t.Fatalf("%v: action start %q, want %q", tm, start, want)
			}
			id := "AAECAwQFBgcICQoLDA0ODw"
			line := append(append(append(start, '"'), id...), "\"}}\n"...)
			if want := appendAction(nil, l.Action(), index, []byte(id)); !bytes.Equal(line, want) {
				t.Fatalf("action line %q, want %q", line, want)
			}
		}
	}
}

// TestDocumentIDAppend: the id Write appends (one hasher for many
// records, as a Write call has) is DocumentID's, of idLen characters that
// JSON holds as they are.
func TestDocumentIDAppend(t *testing.T) {
	recs, _ := genRecords(500, time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC), 3)
	var h idHasher
	for i := range recs {
		b := h.appendID([]byte("x"), &recs[i])
		id := string(b[1:])
		if id != DocumentID(&recs[i]) || len(id) != idLen {
			t.Fatalf("appended id %q, DocumentID %q", id, DocumentID(&recs[i]))
		}
		if q := string(flow.AppendJSONString(nil, id)); q != `"`+id+`"` {
			t.Fatalf("id %q needs escaping: %s", id, q)
		}
	}
}

// TestRefusedDocumentsKeepTheirIDs: documents the cluster refuses go to the
// dead-letter file under the ids and with the documents Write gave them
// (the items' ids and documents are slices of Write's pooled buffer, which
// grows while a call writes): every record's DocumentID once, with its own
// document.
func TestRefusedDocumentsKeepTheirIDs(t *testing.T) {
	o, c := startWithStub(t, true,
		`{"create":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"refused by the test"}}}`)
	recs, _ := genRecords(1000, time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC), 5)
	want := map[string]string{}
	var enc flow.Encoder
	for i := range recs {
		want[DocumentID(&recs[i])] = string(enc.AppendDocument(nil, &recs[i]))
	}
	for i := 0; i < len(recs); i += 250 { // a fresh chunk grows in each call
		if err := o.Write(recs[i : i+250]); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(c.deadLetterFile())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	seen := map[string]bool{}
	for sc.Scan() {
		var e deadLetterEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		doc, ok := want[e.ID]
		if !ok || seen[e.ID] {
			t.Fatalf("dead letter under id %q: known %t, seen before %t", e.ID, ok, seen[e.ID])
		}
		seen[e.ID] = true
		var got, exp any
		if json.Unmarshal(e.Document, &got) != nil || json.Unmarshal([]byte(doc), &exp) != nil || !reflect.DeepEqual(got, exp) {
			t.Fatalf("id %q: document %s, want %s", e.ID, e.Document, doc)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("%d documents dead-lettered, want %d", len(seen), len(want))
	}
}
