package collector_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/pcapreplay"
	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestCaptureDocumentsIndex decodes every shared flow capture and bulk
// indexes the documents, as the NDJSON output writes them, into a scratch
// index of the real Elasticsearch with dynamic mapping: none may be refused
// (duplicate keys, a field whose JSON type changes between documents, bad
// dates...).
func TestCaptureDocumentsIndex(t *testing.T) {
	es := testutil.Elasticsearch(t)
	dir := filepath.Join(testutil.SharedTestdata(t), "flows")
	var body bytes.Buffer
	var enc flow.Encoder
	docs := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.Contains(filepath.Base(p), ".pcap") {
			return nil
		}
		dec, _ := decoders.New(decoders.DefaultConfiguration())
		var recs []flow.Record
		pcapreplay.Read(p, func(dg decoders.Datagram, _ netip.AddrPort) error {
			recs, _, _ = dec.Decode(dg, recs[:0])
			for i := range recs {
				body.WriteString("{\"index\":{}}\n")
				body.Write(enc.AppendDocument(nil, &recs[i]))
				body.WriteByte('\n')
				docs++
			}
			return nil
		})
		return nil
	})
	if docs == 0 {
		t.Fatal("no documents")
	}
	index := fmt.Sprintf("spanflow-collector-test-%d", time.Now().UnixNano())
	do := func(method, path, ctype string, b []byte) []byte {
		req, _ := http.NewRequest(method, es+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out bytes.Buffer
		out.ReadFrom(resp.Body)
		if resp.StatusCode >= 300 {
			t.Fatalf("%s %s: %s: %s", method, path, resp.Status, out.String())
		}
		return out.Bytes()
	}
	do("PUT", "/"+index, "application/json", []byte(`{"settings":{"number_of_replicas":0,"index.mapping.total_fields.limit":5000}}`))
	defer do("DELETE", "/"+index, "application/json", nil)
	var res struct {
		Items []struct {
			Index struct {
				Error *struct{ Type, Reason string }
			}
		}
	}
	if err := json.Unmarshal(do("POST", "/"+index+"/_bulk", "application/x-ndjson", body.Bytes()), &res); err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, it := range res.Items {
		if e := it.Index.Error; e != nil {
			if refused < 5 {
				t.Errorf("refused: %s: %s", e.Type, e.Reason)
			}
			refused++
		}
	}
	if refused > 0 || len(res.Items) != docs {
		t.Errorf("%d of %d documents refused (%d answered)", refused, docs, len(res.Items))
	}
	t.Logf("%d documents from the shared captures indexed", docs)
}
