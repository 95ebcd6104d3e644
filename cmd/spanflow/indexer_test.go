package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spanflow/spanflow/collector"
	"github.com/spanflow/spanflow/internal/testutil"
)

func TestIndexerCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("kafka-brokers: [127.0.0.1:9092]\nkafka-group: g\noutput: [elasticsearch, stdout]\nes-url: [http://127.0.0.1:9200]\n"), 0o600)
	if out, err := run(t, "indexer", "check", "--config", good); err != nil || out != good+": OK\n" {
		t.Fatalf("good file: %v\n%s", err, out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("kafka-brokers: [nohost]\n"+ // 1
		"kafka-group: \"\"\n"+ // 2
		"output: [kafka]\n"+ // 3
		"kafka-sasl: kerberos\n"+ // 4
		"kafka-session-timeout: 1s\n"+ // 5
		"kafka-linger: 1s\n"), 0o600) // 6: a collector setting
	out, err := run(t, "indexer", "check", "--config", bad)
	if err == nil {
		t.Fatalf("bad file passed:\n%s", out)
	}
	for _, want := range []string{
		`line 1: kafka-brokers: "nohost": want HOST:PORT`,
		"line 2: kafka-group: must not be empty",
		`line 3: output: "kafka": an indexer writes to elasticsearch, stdout or file:PATH`,
		`line 4: kafka-sasl: "kerberos"`,
		"line 5: kafka-session-timeout: at least 6s",
		"line 6: unknown key kafka-linger",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
}

func TestIndexerInstall(t *testing.T) {
	unit := filepath.Join(t.TempDir(), "spanflow-indexer.service")
	if out, err := run(t, "indexer", "install", "--path", unit, "--config", "/nonexistent/indexer.yaml"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ExecStart=/usr/local/bin/spanflow indexer run --config /nonexistent/indexer.yaml", "User=spanflow-indexer", "CapabilityBoundingSet=\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("unit lacks %q:\n%s", want, b)
		}
	}
}

// The YAML examples of docs/scale-out.md decode: every key exists (the
// files they name are the operator's, so they are not validated).
func TestScaleOutDocExamples(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(testutil.ModuleRoot(), "docs", "scale-out.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	if len(blocks) != 2 {
		t.Fatalf("%d YAML blocks, want 2 (collector, indexer)", len(blocks))
	}
	dir := t.TempDir()
	for i, b := range blocks {
		path := filepath.Join(dir, "example.yaml")
		os.WriteFile(path, []byte(b[1]), 0o600)
		if i == 0 {
			cfg := collector.DefaultConfiguration()
			if err := cfg.LoadFile(path); err != nil {
				t.Errorf("collector example: %v", err)
			}
			continue
		}
		cfg := collector.DefaultIndexerConfiguration()
		if err := cfg.LoadFile(path); err != nil {
			t.Errorf("indexer example: %v", err)
		}
	}
}

// TestIndexerCheckSaysWhatRunRefuses: a file `indexer run` refuses to start
// with (SASL without its credentials: their files missing, or no
// SPANFLOW_KAFKA_USER/PASSWORD) is not OK for `indexer check` either, which
// names the key's line. Before, check said OK and the service then failed
// at start.
func TestIndexerCheckSaysWhatRunRefuses(t *testing.T) {
	t.Setenv("SPANFLOW_KAFKA_USER", "")
	t.Setenv("SPANFLOW_KAFKA_PASSWORD", "")
	dir := t.TempDir()
	for name, c := range map[string]struct{ yaml, want string }{
		"missing files": {"kafka-brokers: [127.0.0.1:1]\nkafka-sasl: scram-sha-512\n" +
			"kafka-user-file: " + filepath.Join(dir, "user") + "\nkafka-password-file: " + filepath.Join(dir, "pass") + "\n",
			"line 3: kafka-user-file: read credential file"},
		"no environment": {"kafka-brokers: [127.0.0.1:1]\nkafka-sasl: plain\n", "line 2: kafka-sasl: plain needs a user and a password"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
		os.WriteFile(path, []byte(c.yaml), 0o600)
		_, runErr := run(t, "indexer", "run", "--config", path, "--metrics-listen", "", "--output", "stdout")
		if runErr == nil || !strings.Contains(runErr.Error(), "kafka-") {
			t.Fatalf("%s: indexer run started, or failed for another reason: %v", name, runErr)
		}
		out, err := run(t, "indexer", "check", "--config", path)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("%s: indexer run refused to start (%v), indexer check said (err %v):\n%s", name, runErr, err, out)
		}
	}
}

// TestIndexerHelpSaysWhatESSettingsItIgnores: the indexer sends each batch
// to Elasticsearch itself (IndexNow) and keeps it in Kafka until the cluster
// took it; the collector's queue and spool settings do nothing there, and
// its --help said they bounded documents in memory and on disk.
func TestIndexerHelpSaysWhatESSettingsItIgnores(t *testing.T) {
	out, err := run(t, "indexer", "run", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"es-queue-size", "es-spool-max-bytes", "es-drain-timeout", "es-flush-interval", "es-spool-dir"} {
		i := strings.Index(out, "--"+name+" ")
		if i < 0 {
			t.Errorf("no --%s in indexer run --help", name)
			continue
		}
		line, _, _ := strings.Cut(out[i:], "\n")
		if !strings.Contains(line, "unused by the indexer") {
			t.Errorf("indexer run --help: %s", line)
		}
	}
	out, err = run(t, "collector", "run", "--help")
	if err != nil || strings.Contains(out, "unused by the indexer") {
		t.Errorf("collector run --help changed too (%v)", err)
	}
}
