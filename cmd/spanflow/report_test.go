package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/spanflow/spanflow/collector/output/elasticsearch/setup"
	"github.com/spanflow/spanflow/internal/esconn"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/testutil"
)

// reportRecords are n flows one minute apart from start, through interface
// 1 and 2 of one exporter, or through no interface when noIf.
func reportRecords(n int, start time.Time, noIf bool) []flow.Record {
	recs := make([]flow.Record, n)
	for i := range recs {
		end := start.Add(time.Duration(i) * time.Minute)
		recs[i] = flow.Record{Kind: flow.KindIPFIX, ObserverIP: netip.MustParseAddr("10.255.9.1"),
			SrcAddr: netip.MustParseAddr("10.9.0.1"), DstAddr: netip.MustParseAddr("10.9.0.2"), SrcPort: 40000, DstPort: 443,
			Proto: 6, Bytes: 1500, Packets: 3, Start: end.Add(-time.Second), End: end, Received: end.Add(time.Second)}
		if !noIf {
			recs[i].InIf, recs[i].OutIf = 1, 2
		}
	}
	return recs
}

// reportIndex indexes recs into a fresh index, with the template's mapping
// or, when !mapped, Elasticsearch's default one (addresses as text), and
// deletes it when the test ends. Its name does not match spanflow-flows-*,
// so the template on the shared cluster does not apply.
func reportIndex(t *testing.T, client *elasticsearch.Client, recs []flow.Record, mapped bool) string {
	t.Helper()
	name := fmt.Sprintf("spanflow-reporttest-%d", time.Now().UnixNano())
	do := func(method, path, ctype string, body []byte) []byte {
		return testutil.ESRequest(t, client, method, path, ctype, body)
	}
	settings := map[string]any{"settings": map[string]any{"number_of_shards": 1, "number_of_replicas": 0}}
	if mapped {
		mapping, err := setup.Mapping()
		if err != nil {
			t.Fatal(err)
		}
		settings["mappings"] = mapping
	}
	body, _ := json.Marshal(settings)
	do(http.MethodPut, "/"+name, "application/json", body)
	t.Cleanup(func() {
		req, _ := http.NewRequest(http.MethodDelete, "/"+name, nil)
		if res, err := client.Perform(req); err == nil {
			res.Body.Close()
		}
	})
	var enc flow.Encoder
	var bulk []byte
	for i := range recs {
		bulk = append(bulk, `{"index":{}}`+"\n"...)
		bulk = append(enc.AppendDocument(bulk, &recs[i]), '\n')
	}
	out := do(http.MethodPost, "/"+name+"/_bulk?refresh=true", "application/x-ndjson", bulk)
	if bytes.Contains(out, []byte(`"errors":true`)) {
		t.Fatalf("bulk into %s: %.500s", name, out)
	}
	return name
}

// TestReportEmptySaysWhy: a report that finds no line says why, on the
// command line: no index matches the pattern (named), no flow in the range
// (with the range of the flows there are), or flows without interface ids
// (how many, and that line reports need them).
func TestReportEmptySaysWhy(t *testing.T) {
	url := testutil.Elasticsearch(t)
	client, err := esconn.New(esconn.Configuration{URLs: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 2, 3, 10, 0, 0, 0, time.UTC)
	withIf := reportIndex(t, client, reportRecords(20, start, false), true)
	noIf := reportIndex(t, client, reportRecords(7, start, true), true)
	for _, tc := range []struct {
		name  string
		args  []string
		wants []string
	}{
		{"no index", []string{"--index", "spanflow-reporttest-none-*", "--from", "2026-02-03", "--to", "2026-02-04"},
			[]string{`has no line: no index matches "spanflow-reporttest-none-*"`}},
		{"no flow in the range", []string{"--index", withIf, "--from", "2025-01-01", "--to", "2025-01-02"},
			// The first and last flows end at start and start+19m.
			[]string{"has no line: no flow from 2025-01-01 00:00:00 UTC to 2025-01-02 00:00:00 UTC",
				fmt.Sprintf("the flows in %q go from 2026-02-03 10:00:00 UTC to 2026-02-03 10:19:00 UTC", withIf)}},
		{"no interface ids", []string{"--index", noIf, "--from", "2026-02-03", "--to", "2026-02-04"},
			[]string{"has no line: 7 flows in the range, none with an interface id", "line reports need them"}},
	} {
		for _, kind := range []string{"line-load", "top-ip"} {
			out, err := run(t, append([]string{"report", kind, "--es-url", url}, tc.args...)...)
			if err != nil {
				t.Errorf("%s, %s: %v\n%s", tc.name, kind, err, out)
				continue
			}
			for _, want := range tc.wants {
				if !strings.Contains(out, want) {
					t.Errorf("%s, %s: output does not say %q:\n%s", tc.name, kind, want, out)
				}
			}
		}
	}
	// The Markdown and HTML reports say it too.
	for _, format := range []string{"md", "html"} {
		path := filepath.Join(t.TempDir(), "r."+format)
		if out, err := run(t, "report", "line-load", "--es-url", url, "--index", noIf, "--from", "2026-02-03", "--to", "2026-02-04", "-o", path); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		b, _ := os.ReadFile(path)
		if !strings.Contains(string(b), "No line in this report: 7 flows in the range, none with an interface id") {
			t.Errorf("%s report does not say why it is empty:\n%s", format, b)
		}
	}
	// A report with lines says nothing of the kind.
	out, err := run(t, "report", "line-load", "--es-url", url, "--index", withIf, "--from", "2026-02-03", "--to", "2026-02-04")
	if err != nil || strings.Contains(out, "has no line") || !strings.Contains(out, "10.255.9.1,1,") {
		t.Errorf("report with lines: %v\n%s", err, out)
	}
}

// TestReportSearchRootCause: a search Elasticsearch refuses shows its root
// cause, not "all shards failed": here the flows were indexed with the
// default mappings, observer.ip is text, and aggregating on it is refused.
func TestReportSearchRootCause(t *testing.T) {
	url := testutil.Elasticsearch(t)
	client, err := esconn.New(esconn.Configuration{URLs: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	index := reportIndex(t, client, reportRecords(5, time.Date(2026, 2, 3, 10, 0, 0, 0, time.UTC), false), false)
	_, err = run(t, "report", "top-ip", "--es-url", url, "--index", index, "--from", "2026-02-03", "--to", "2026-02-04")
	if err == nil || !strings.Contains(err.Error(), "Fielddata is disabled on [observer.ip]") || strings.Contains(err.Error(), "\n") ||
		!strings.Contains(err.Error(), "es setup") {
		t.Errorf("error %v: want one line with Elasticsearch's root cause (Fielddata is disabled on [observer.ip]) and where to look", err)
	}
}

// TestReportArgumentErrors: an output name whose extension is not a report
// format is refused (it used to receive CSV) and nothing is written; an
// interval too small for the range is refused with the interval that fits.
// Neither contacts the cluster.
func TestReportArgumentErrors(t *testing.T) {
	dir := t.TempDir()
	xlsx := filepath.Join(dir, "top.xlsx")
	_, err := run(t, "report", "top-ip", "--es-url", "http://127.0.0.1:1", "-o", xlsx)
	if err == nil || !strings.Contains(err.Error(), ".xlsx is not a report format") || !strings.Contains(err.Error(), ".csv, .md or .html") ||
		strings.Contains(err.Error(), "\n") {
		t.Errorf("-o top.xlsx: %v; want one line naming the supported formats", err)
	}
	if _, err := os.Stat(xlsx); !os.IsNotExist(err) {
		t.Errorf("top.xlsx was written")
	}
	// --format says what the file holds, whatever its name.
	if _, err := run(t, "report", "top-ip", "--es-url", "http://127.0.0.1:1", "--format", "csv", "-o", xlsx, "--from", "2026-02-03",
		"--to", "2026-02-04", "--es-timeout", "1s"); err == nil || strings.Contains(err.Error(), "report format") {
		t.Errorf("--format csv -o top.xlsx: %v; want it accepted (and the unreachable cluster to fail it)", err)
	}
	// Six years (2,192 days) in 1 s buckets: 189,388,800; 30m gives 105,216
	// (over 100,000), 1h gives 52,608.
	_, err = run(t, "report", "line-load", "--es-url", "http://127.0.0.1:1", "--from", "2020-01-01", "--to", "2026-01-01", "--interval", "1s")
	if err == nil || !strings.Contains(err.Error(), "use --interval 1h or more") || strings.Contains(err.Error(), "\n") {
		t.Errorf("range too large for the interval: %v; want one line suggesting --interval 1h", err)
	}
	// A bucket longer than the range: its bytes over the interval made a
	// peak rate below the average (1823 bit/s against 7294 over 6 h in 24 h
	// buckets).
	_, err = run(t, "report", "line-load", "--es-url", "http://127.0.0.1:1", "--from", "2026-01-01T12:00:00Z", "--to", "2026-01-01T18:00:00Z", "--interval", "24h")
	if err == nil || !strings.Contains(err.Error(), "longer than the range") || !strings.Contains(err.Error(), "--interval 6h or less") {
		t.Errorf("interval longer than the range: %v; want it refused, suggesting --interval 6h", err)
	}
}

// A report says it is working on a terminal, and nothing of it reaches a
// pipe.
func TestReportProgress(t *testing.T) {
	url := testutil.Elasticsearch(t)
	scriptPath, err := exec.LookPath("script")
	if err != nil {
		t.Skip("no script(1) to give the command a terminal")
	}
	client, err := esconn.New(esconn.Configuration{URLs: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	index := reportIndex(t, client, reportRecords(20, time.Date(2026, 2, 3, 10, 0, 0, 0, time.UTC), false), true)
	args := []string{"report", "top-ip", "--es-url", url, "--index", index, "--from", "2026-02-03", "--to", "2026-02-04"}

	cmd := spanflowProcess(t, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if out, err := cmd.Output(); err != nil || len(out) == 0 {
		t.Fatalf("report: %v\n%s\n%s", err, out, stderr.String())
	}
	if strings.Contains(stderr.String(), "building the") {
		t.Errorf("status line written to a pipe:\n%q", stderr.String())
	}

	cmd = exec.Command(scriptPath, "-qec", os.Args[0], os.DevNull)
	cmd.Env = append(os.Environ(), "SPANFLOW_TEST_MAIN="+strings.Join(args, "\n"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("report on a terminal: %v\n%s", err, out)
	}
	want := regexp.MustCompile(`\r\x1b\[K. building the top-ip report from 2026-02-03T00:00:00Z to 2026-02-04T00:00:00Z… [0-9]+s`)
	if !want.Match(out) || !strings.Contains(string(out), "\r\x1b[K") {
		t.Errorf("terminal output lacks the status line:\n%q", out)
	}
}
