package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/urfave/cli/v2"

	"github.com/spanflow/spanflow/collector/output/elasticsearch"
	"github.com/spanflow/spanflow/collector/output/elasticsearch/setup"
	"github.com/spanflow/spanflow/internal/esconn"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestESSetupAndPrune runs the commands against the test cluster, which has
// no ILM: setup must choose daily indices and say how to prune them.
func TestESSetupAndPrune(t *testing.T) {
	url := testutil.Elasticsearch(t)
	out, err := run(t, "es", "setup", "--es-url", url)
	if err != nil || !strings.Contains(out, "installed index template spanflow-flows") {
		t.Fatalf("es setup: %v\n%s", err, out)
	}
	if !strings.Contains(out, "daily indices spanflow-flows-YYYY.MM.DD") && !strings.Contains(out, "data stream") {
		t.Errorf("es setup does not say where flows go:\n%s", out)
	}
	out, err = run(t, "es", "prune", "--es-url", url, "--older-than", "36500d", "--dry-run")
	if err != nil || !strings.Contains(out, "no daily index of flows, rollups, alerts older than 36500d") {
		t.Errorf("es prune dry run: %v\n%s", err, out)
	}
}

func TestESErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"es", "prune", "--older-than", "soon"}, "--older-than"},
		{[]string{"es", "prune", "--indices", "flows,rollup"}, `--indices "rollup": not flows, rollups or alerts`},
		{[]string{"es", "prune", "--es-url", "http://127.0.0.1:1", "--es-timeout", "1s"}, "connection refused"},
		{[]string{"es", "setup", "--es-url", "http://127.0.0.1:1", "--es-lifecycle", "weekly"}, "es-lifecycle"},
		{[]string{"es", "template", "--es-shards", "0"}, "shards"},
		{[]string{"collector", "run", "--ipfix-listen", "127.0.0.1:0", "--es-url", "http://127.0.0.1:1",
			"--es-spool-dir", t.TempDir(), "--es-flush-bytes", "100000000"}, "at most 64 MiB"},
	} {
		_, err := run(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %v, want one line mentioning %q", tc.args, err, tc.want)
		}
	}
	out, err := run(t, "es", "template", "--data-stream")
	if err != nil || !strings.Contains(out, `"data_stream"`) || !strings.Contains(out, `"source"`) {
		t.Errorf("es template --data-stream: %v\n%.300s", err, out)
	}
}

// TestESOutputFlags: every --es-* flag of the collector's output lands in
// its field of the output's configuration.
func TestESOutputFlags(t *testing.T) {
	var got elasticsearch.Configuration
	app := &cli.App{Flags: collectorRunFlags(), Action: func(c *cli.Context) error {
		cfg, err := collectorConfiguration(c)
		got = cfg.ElasticsearchOutput()
		return err
	}}
	err := app.Run([]string{"x", "--es-url", "https://a:9200", "--es-url", "https://b:9200", "--es-ca-file", "ca.pem",
		"--es-fingerprint", "AB:CD", "--es-api-key-file", "k", "--es-user-file", "u", "--es-password-file", "p",
		"--es-timeout", "7s", "--es-shards", "3", "--es-replicas", "1", "--es-refresh-interval", "5s",
		"--es-best-compression=false", "--es-lifecycle", "daily", "--es-retention-days", "9", "--es-rollover-size", "10gb",
		"--es-rollover-age", "12h", "--es-setup=false", "--es-gzip", "--es-workers", "4", "--es-flush-bytes", "4096",
		"--es-flush-interval", "3s", "--es-queue-size", "99", "--es-spool-dir", "/s", "--es-spool-max-bytes", "2097152",
		"--es-drain-timeout", "4s", "--es-dead-letter-file", "/d"})
	if err != nil {
		t.Fatal(err)
	}
	want := elasticsearch.DefaultConfiguration()
	want.Connection.URLs = []string{"https://a:9200", "https://b:9200"}
	want.Connection.CAFile, want.Connection.Fingerprint = "ca.pem", "ABCD"
	want.Connection.APIKeyFile, want.Connection.UserFile, want.Connection.PasswordFile = "k", "u", "p"
	want.Connection.Timeout, want.Connection.Compress = 7*time.Second, true
	want.Setup = setup.Configuration{Shards: 3, Replicas: 1, RefreshInterval: "5s", BestCompression: false,
		Lifecycle: "daily", RetentionDays: 9, RolloverMaxPrimaryShardSize: "10gb", RolloverMaxAge: "12h"}
	want.RunSetup, want.Workers, want.FlushBytes, want.FlushInterval = false, 4, 4096, 3*time.Second
	want.QueueSize, want.SpoolDir, want.SpoolMaxBytes, want.DrainTimeout, want.DeadLetterFile = 99, "/s", 2097152, 4*time.Second, "/d"
	if diff := cmp.Diff(got, want, cmpopts.IgnoreFields(esconn.Configuration{}, "RetryBackoff")); diff != "" {
		t.Errorf("configuration (-got, +want):\n%s", diff)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("configuration from valid flags does not validate: %v", err)
	}
}

// TestESSetupWrongMappings: an index of the flow pattern created without
// the template's mappings (here source.ip a keyword) is named by es setup
// with what is wrong and what to do, one line; a correct index is not.
func TestESSetupWrongMappings(t *testing.T) {
	url := testutil.Elasticsearch(t)
	client, err := esconn.New(esconn.Configuration{URLs: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path, body string) int {
		req, _ := http.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Perform(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if out, err := run(t, "es", "setup", "--es-url", url); err != nil {
		t.Fatalf("es setup: %v\n%s", err, out)
	}
	// Explicit mappings at creation win over the template's.
	bad, good := "spanflow-flows-1971.02.03", "spanflow-flows-1971.02.04"
	for _, idx := range []string{bad, good} {
		do(http.MethodDelete, "/"+idx, "")
		t.Cleanup(func() { do(http.MethodDelete, "/"+idx, "") })
	}
	if st := do(http.MethodPut, "/"+bad, `{"mappings":{"properties":{"source":{"properties":{"ip":{"type":"keyword"}}},"network":{"properties":{"bytes":{"type":"keyword"}}}}}}`); st != 200 {
		t.Fatalf("create %s: status %d", bad, st)
	}
	if st := do(http.MethodPut, "/"+good, ""); st != 200 {
		t.Fatalf("create %s: status %d", good, st)
	}
	out, err := run(t, "es", "setup", "--es-url", url)
	if err != nil {
		t.Fatalf("es setup: %v\n%s", err, out)
	}
	var lines []string
	for l := range strings.Lines(out) {
		if strings.Contains(l, "1971.02.0") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], bad) || !strings.Contains(lines[0], "source.ip is keyword, want ip") ||
		!strings.Contains(lines[0], "network.bytes is keyword, want long") || !strings.Contains(lines[0], "reindex") || !strings.Contains(lines[0], "DELETE /"+bad) {
		t.Errorf("es setup output: want one line naming %s, its wrong fields, reindex and delete:\n%s", bad, out)
	}
}
