package elasticsearch

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/spanflow/spanflow/internal/reporter"
)

// startWithStub starts an output (no setup, its spool in a temporary
// directory) against a stub of the cluster that answers each bulk request
// with item for every document, errors saying whether any failed, as the
// cluster answers with the output's filter_path. The server closes with
// the test; the caller stops the output.
func startWithStub(tb testing.TB, errors bool, item string) (*Output, Configuration) {
	tb.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		if r.URL.Path != "/_bulk" {
			fmt.Fprint(w, `{"version":{"number":"8.19.7"}}`)
			return
		}
		body, _ := io.ReadAll(r.Body)
		n := bytes.Count(body, []byte{'\n'}) / 2
		var out bytes.Buffer
		fmt.Fprintf(&out, `{"errors":%t,"items":[`, errors)
		for i := 0; i < n; i++ {
			if i > 0 {
				out.WriteByte(',')
			}
			out.WriteString(item)
		}
		out.WriteString(`]}`)
		w.Header().Set("Content-Type", "application/json")
		w.Write(out.Bytes())
	}))
	tb.Cleanup(srv.Close)
	c := DefaultConfiguration()
	c.Connection.URLs = []string{srv.URL}
	c.SpoolDir = filepath.Join(tb.TempDir(), "spool")
	c.RunSetup = false
	o, err := New(reporter.NewForTest(nil), c)
	if err != nil {
		tb.Fatal(err)
	}
	if err := o.Start(); err != nil {
		tb.Fatal(err)
	}
	return o, c
}
