package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigWrongTypeWords: every kind of configuration file says a value
// of the wrong type with its line, its key and what to write, not yaml.v3's
// "cannot unmarshal !!str into time.Duration".
func TestConfigWrongTypeWords(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string // the file's path is appended
		file string
		want []string
	}{
		{"collector", []string{"collector", "check", "--config"},
			"template-wait: 30 seconds\nvcenter-wait: 10\noutput-max-bytes: 10GB\nlisten-reuseport: maybe\n",
			[]string{
				`line 1: template-wait: "30 seconds" is not a duration (write 30s, 5m or 1h)`,
				`line 2: vcenter-wait: 10 is not a duration (write 10s, 5m or 1h)`,
				`line 3: output-max-bytes: "10GB" is not a whole number`,
				`line 4: listen-reuseport: "maybe" is not true or false`,
			}},
		{"collector list", []string{"collector", "check", "--config"}, "- sockets: 2\n",
			[]string{"line 1: the file must hold a mapping of keys, not a list"}},
		{"indexer", []string{"indexer", "check", "--config"},
			"kafka-session-timeout: 10\nkafka-brokers: 127.0.0.1:9092\n",
			[]string{
				`line 1: kafka-session-timeout: 10 is not a duration (write 10s, 5m or 1h)`,
			}},
		{"exporter", []string{"exporter", "check", "--config"},
			"mtu: jumbo\n",
			[]string{`line 1: mtu: "jumbo" is not a whole number`}},
		{"rules", []string{"rules", "check"},
			"rules:\n  - name: a\n    value: bytes_per_second\n    project: p\n    above: 1\n    for: 5\n",
			[]string{`line 6: for: 5 is not a duration (write 5s, 5m or 1h)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".yaml")
			os.WriteFile(path, []byte(tc.file), 0o600)
			out, err := run(t, append(tc.args, path)...)
			if err == nil {
				t.Fatalf("accepted:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, path+": "+w+"\n") {
					t.Errorf("no %q in:\n%s", path+": "+w, out)
				}
			}
			if strings.Contains(out, "unmarshal") {
				t.Errorf("yaml.v3's words in:\n%s", out)
			}
		})
	}
}

// TestConfigNamedOnce: a file that is not YAML is named once, not by both
// the loader and the command.
func TestConfigNamedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tab.yaml")
	os.WriteFile(path, []byte("sockets: 2\n\tmtu: 1\n"), 0o600)
	for _, args := range [][]string{
		{"collector", "run", "--metrics-listen", "", "--config", path},
		{"indexer", "run", "--config", path},
		{"exporter", "run", "--config", path},
		{"collector", "check", "--config", path},
	} {
		out, err := run(t, args...)
		text := out
		if err != nil {
			text += err.Error()
		}
		if strings.Count(text, "tab.yaml") != 1+strings.Count(strings.Join(args, " "), "check") || !strings.Contains(text, "line 2: ") {
			t.Errorf("%s: %q", strings.Join(args[:2], " "), text)
		}
	}
}
