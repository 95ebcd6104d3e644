package main

import (
	"bytes"
	"encoding/csv"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/dashboards/kibana"
	"github.com/spanflow/spanflow/dashboards/report"
	"github.com/spanflow/spanflow/internal/testutil"
)

func TestDashboardsExportAndInstall(t *testing.T) {
	dir := t.TempDir()
	if out, err := run(t, "dashboards", "export", dir); err != nil || !strings.Contains(out, kibana.File) {
		t.Fatalf("export: %v\n%s", err, out)
	}
	exported, err := os.ReadFile(filepath.Join(dir, kibana.File))
	if err != nil || !bytes.Equal(exported, kibana.Objects()) {
		t.Fatalf("exported file differs from the built-in objects (%v)", err)
	}
	// An edited copy is what install --file sends.
	edited := bytes.Replace(exported, []byte("spanflow: Overview"), []byte("spanflow: Overview (edited)"), 1)
	os.WriteFile(filepath.Join(dir, kibana.File), edited, 0o644)

	var got []byte
	var path, query, xsrf, auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path, query, xsrf, auth = r.URL.Path, r.URL.RawQuery, r.Header.Get("kbn-xsrf"), r.Header.Get("Authorization")
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "multipart/form-data" {
			if f, _, err := r.FormFile("file"); err == nil {
				got, _ = io.ReadAll(f)
			}
		}
		io.WriteString(w, `{"success":true,"successCount":42}`)
	}))
	defer srv.Close()
	t.Setenv("SPANFLOW_KIBANA_API_KEY", "")
	t.Setenv("SPANFLOW_KIBANA_USER", "")
	keyFile := filepath.Join(dir, "key")
	os.WriteFile(keyFile, []byte("abc==\n"), 0o600)
	out, err := run(t, "dashboards", "install", "--kibana-url", srv.URL, "--space", "noc", "--overwrite",
		"--kibana-api-key-file", keyFile, "--file", filepath.Join(dir, kibana.File))
	if err != nil || !strings.Contains(out, "imported 42 saved objects into Kibana space noc") {
		t.Fatalf("install: %v\n%s", err, out)
	}
	if path != "/s/noc/api/saved_objects/_import" || query != "overwrite=true" || xsrf == "" || auth != "ApiKey abc==" || !bytes.Equal(got, edited) {
		t.Errorf("request: path %s query %s kbn-xsrf %q auth %q, file equal: %t", path, query, xsrf, auth, bytes.Equal(got, edited))
	}
	if _, err := run(t, "dashboards", "install"); err == nil {
		t.Error("install without --kibana-url accepted")
	}
	if _, err := run(t, "dashboards", "export"); err == nil {
		t.Error("export without a directory accepted")
	}
}

func TestReportCommand(t *testing.T) {
	for _, args := range [][]string{
		{"report", "line-load", "--format", "pdf"},
		{"report", "line-load", "--from", "yesterday"},
		{"report", "top-ip", "--every", "24h"},
		{"report", "top-ip", "--every", "24h", "--dir", "x", "--from", "now-1h"},
		{"report", "line-load", "--dir", "x"},
		{"report", "line-load", "--from", "2026-01-11", "--to", "2026-01-10", "--es-url", "http://127.0.0.1:1"},
		{"report", "line-load", "--time-zone", "Europe/Nowhere", "--es-url", "http://127.0.0.1:1"},
		{"report", "line-load", "--time-zone", "", "--es-url", "http://127.0.0.1:1"},
	} {
		if out, err := run(t, args...); err == nil {
			t.Errorf("%v accepted:\n%s", args, out)
		}
	}
	when, err := parseWhen("now-24h", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), time.UTC)
	if err != nil || !when.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("now-24h: %v %v", when, err)
	}
	// Dates without offset are in --time-zone; an offset wins.
	zurich, err := time.LoadLocation("Europe/Zurich")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"2026-01-10", time.Date(2026, 1, 9, 23, 0, 0, 0, time.UTC)},
		{"2026-07-10T08:00", time.Date(2026, 7, 10, 6, 0, 0, 0, time.UTC)},
		{"2026-07-10T08:00:00Z", time.Date(2026, 7, 10, 8, 0, 0, 0, time.UTC)},
	} {
		if when, err := parseWhen(tc.in, time.Now(), zurich); err != nil || !when.Equal(tc.want) {
			t.Errorf("%s in Europe/Zurich: %v %v, want %v", tc.in, when, err, tc.want)
		}
	}

	// On the real cluster: a range without flows gives the header only.
	url := testutil.Elasticsearch(t)
	file := filepath.Join(t.TempDir(), "r.csv")
	if out, err := run(t, "report", "line-load", "--es-url", url, "--index", "spanflow-dashtest-none-*",
		"--from", "2026-01-10", "--to", "2026-01-11", "--output", file); err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(file)
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || len(rows) != 1 || strings.Join(rows[0], ",") != strings.Join(report.LineLoad{}.Header(), ",") {
		t.Errorf("report file %q (%v)", b, err)
	}
}
