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

// TestNetworksFileWords: a problem inside the networks or interface-names
// file is one line with that file's name and line, under the key of the
// collector's file that names it.
func TestNetworksFileWords(t *testing.T) {
	dir := t.TempDir()
	nets := filepath.Join(dir, "n2.yaml")
	os.WriteFile(nets, []byte("10.1.0.0/16:\n  nam: x\n10.0.0.0/33:\n  name: y\n"), 0o600)
	names := filepath.Join(dir, "if.yaml")
	os.WriteFile(names, []byte("- 192.0.2.1\n"), 0o600)
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("sockets: 1\nnetworks: "+nets+"\ninterface-names: "+names+"\n"), 0o600)
	out, err := run(t, "collector", "check", "--config", cfg)
	want := cfg + ": line 2: networks: " + nets + ":2: unknown key nam (known: name, site, role, project, external)\n" +
		cfg + ": line 2: networks: " + nets + ":3: 10.0.0.0/33 is not a network prefix (write ADDRESS/LENGTH, such as 10.0.0.0/8 or 2001:db8::/32)\n" +
		cfg + ": line 3: interface-names: " + names + ":1: the file must hold a mapping of keys, not a list\n"
	if err == nil || out != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
	rules := filepath.Join(dir, "r.yaml")
	os.WriteFile(rules, []byte("rules: []\n"), 0o600)
	_, err = run(t, "rules", "check", rules, "--networks", nets)
	if err == nil || !strings.Contains(err.Error(), nets+":3: 10.0.0.0/33 is not a network prefix") {
		t.Errorf("rules check --networks: %v", err)
	}
}
