package yamlconf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

type duration time.Duration

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return Errorf(n, "%v", err)
	}
	*d = duration(v)
	return nil
}

type settings struct {
	Name    string   `yaml:"name"`
	Port    uint16   `yaml:"port"`
	Timeout duration `yaml:"timeout"`
	Hosts   []string `yaml:"hosts"`
}

// TestLoad: every problem of a file comes back, each on its own line with
// the line of the file, unknown keys named; the other keys are decoded.
func TestLoad(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string
		want []string // one line each, in order; nil: no error
		got  settings // what dst holds afterwards
	}{
		{
			name: "good",
			file: "name: a\nport: 4739\ntimeout: 30s\nhosts: [x, y]\n",
			got:  settings{Name: "a", Port: 4739, Timeout: duration(30 * time.Second), Hosts: []string{"x", "y"}},
		},
		{
			name: "empty",
			file: "",
			got:  settings{Port: 1},
		},
		{
			name: "every problem",
			file: "name: a\nbogus: 1\nport: 99999\ntimeout: soon\nother_key: [1]\nhosts: [x]\n",
			want: []string{
				"line 2: unknown key bogus (known: name, port, timeout, hosts)",
				"line 3: port: 99999 is out of range (0 to 65535)",
				`line 4: timeout: time: invalid duration "soon"`,
				"line 5: unknown key other_key (known: name, port, timeout, hosts)",
			},
			got: settings{Name: "a", Port: 1, Hosts: []string{"x"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
			got := settings{Port: 1}
			err := Load(path, &got)
			var lines []string
			if err != nil {
				lines = strings.Split(err.Error(), "\n")
			}
			if strings.Join(lines, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(tc.want, "\n"))
			}
			var e *Error
			if tc.want != nil && (!errors.As(err, &e) || e.Line == 0) {
				t.Errorf("error %v: want *Error with its line", err)
			}
			if got.Name != tc.got.Name || got.Port != tc.got.Port || got.Timeout != tc.got.Timeout || strings.Join(got.Hosts, ",") != strings.Join(tc.got.Hosts, ",") {
				t.Errorf("decoded %+v, want %+v", got, tc.got)
			}
		})
	}
}

// TestLoadUnusable: a file that cannot be read or is not YAML gives one
// error, not an *Error, and leaves dst alone.
func TestLoadUnusable(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("name: a\n  port: [1\n"), 0o644)
	for path, want := range map[string]string{
		filepath.Join(dir, "none.yaml"): "read configuration: no such file or directory",
		bad:                             "line 2: mapping values are not allowed",
	} {
		got := settings{Port: 1}
		err := Load(path, &got)
		var e *Error
		// The caller names the file: the error does not, not to say it twice.
		if err == nil || !strings.HasPrefix(err.Error(), want) || errors.As(err, &e) || strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), dir) {
			t.Errorf("%s: error %v, want one line starting with %q", filepath.Base(path), err, want)
		}
		if got.Name != "" || got.Port != 1 || got.Timeout != 0 || got.Hosts != nil {
			t.Errorf("%s: decoded %+v", filepath.Base(path), got)
		}
	}
}

// TestWrongType: a value of the wrong type is said in the reader's words,
// one line with its line, its key, the value and what to write; never
// yaml.v3's "cannot unmarshal !!str into time.Duration".
func TestWrongType(t *testing.T) {
	type inner struct {
		Wait time.Duration `yaml:"wait"`
	}
	type all struct {
		Wait    time.Duration     `yaml:"wait"`
		Count   int               `yaml:"count"`
		Bytes   int64             `yaml:"bytes"`
		Port    uint16            `yaml:"port"`
		Ratio   float64           `yaml:"ratio"`
		On      bool              `yaml:"on"`
		Name    string            `yaml:"name"`
		Hosts   []string          `yaml:"hosts"`
		Labels  map[string]string `yaml:"labels"`
		Index   map[uint32]string `yaml:"index"`
		Rules   []inner           `yaml:"rules"`
		Section inner             `yaml:"section"`
	}
	for _, tc := range []struct{ name, file, want string }{
		{"duration", "wait: 30 seconds\n", `line 1: wait: "30 seconds" is not a duration (write 30s, 5m or 1h)`},
		{"duration without unit", "\nwait: 10\n", `line 2: wait: 10 is not a duration (write 10s, 5m or 1h)`},
		{"duration in a list", "rules:\n  - wait: 1m\n  - wait: 5\n", `line 3: wait: 5 is not a duration (write 5s, 5m or 1h)`},
		{"duration in a section", "section:\n  wait: soon\n", `line 2: wait: "soon" is not a duration (write 30s, 5m or 1h)`},
		{"int", "count: many\n", `line 1: count: "many" is not a whole number`},
		{"int64 with a unit", "bytes: 10GB\n", `line 1: bytes: "10GB" is not a whole number`},
		{"uint out of range", "port: 99999\n", `line 1: port: 99999 is out of range (0 to 65535)`},
		{"uint negative", "port: -1\n", `line 1: port: -1 is out of range (0 to 65535)`},
		{"float", "ratio: half\n", `line 1: ratio: "half" is not a number`},
		{"bool", "on: yes please\n", `line 1: on: "yes please" is not true or false`},
		{"bool number", "on: 2\n", `line 1: on: 2 is not true or false`},
		{"string given a list", "name: [a, b]\n", `line 1: name: want a single value, not a list`},
		{"string list given a value", "hosts: x\n", `line 1: hosts: want a list such as [a, b], not "x"`},
		{"string list given a mapping", "hosts:\n  a: b\n", `line 2: hosts: want a list such as [a, b], not a mapping`},
		{"map given a list", "labels: [a]\n", `line 1: labels: want a mapping of keys to values, not a list`},
		{"map given a value", "labels: x\n", `line 1: labels: want a mapping of keys to values, not "x"`},
		{"map key", "index:\n  eth0: x\n", `line 2: key "eth0" is not a whole number`},
		{"section given a list", "section: [a]\n", `line 1: section: want a mapping of keys, not a list`},
		{"top-level list", "# c\n- a\n- b\n", `line 2: the file must hold a mapping of keys, not a list`},
		{"top-level value", "hello\n", `line 1: the file must hold a mapping of keys, not a single value`},
		{"key twice", "count: 1\ncount: 2\n", `line 2: key count is given twice (first at line 1): keep one`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got all
			err := Decode([]byte(tc.file), &got)
			var e *Error
			if err == nil || err.Error() != tc.want || !errors.As(err, &e) {
				t.Errorf("got  %v\nwant %s", err, tc.want)
			}
		})
	}
	// A map file (the networks file) is held to the same words.
	var nets map[string]struct {
		Name string `yaml:"name"`
	}
	if err := Decode([]byte("- 10.0.0.0/8\n"), &nets); err == nil || err.Error() != "line 1: the file must hold a mapping of keys, not a list" {
		t.Errorf("list for a map: %v", err)
	}
	if err := Decode([]byte("# nothing yet\n"), &nets); err != nil {
		t.Errorf("comments only: %v", err)
	}
}

// TestTab: a tab says how to mend it, and the file is not named (the
// caller names it).
func TestTab(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tab.yaml")
	os.WriteFile(path, []byte("a: 1\n\tb: 2\n"), 0o644)
	var got settings
	err := Load(path, &got)
	if err == nil || strings.Contains(err.Error(), "tab.yaml") || !strings.Contains(err.Error(), "line 2: ") || !strings.Contains(err.Error(), "indent with spaces") {
		t.Errorf("tab: %v", err)
	}
}

// wide has too many keys to list in an error, as the collector has.
type wide struct {
	NetflowListen  string `yaml:"netflow-listen"`
	IPFIXListen    string `yaml:"ipfix-listen"`
	SFlowListen    string `yaml:"sflow-listen"`
	MaxPerSource   int    `yaml:"ipfix-tcp-max-per-source"`
	Sockets        int    `yaml:"sockets"`
	MTU            int    `yaml:"mtu"`
	UI             string `yaml:"ui"`
	Output         string `yaml:"output"`
	MetricsListen  string `yaml:"metrics-listen"`
	TemplateWait   string `yaml:"template-wait"`
	ReceiveBuffers int    `yaml:"receive-buffer"`
}

// TestUnknownKeyNearest: an unknown key among too many to list names the
// key it most likely meant, when one is a typo or a snake_case away.
func TestUnknownKeyNearest(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"netflow_listen: x\n", "line 1: unknown key netflow_listen: did you mean netflow-listen?"},
		{"ipfix-tcp-max-per-sorce: 3\n", "line 1: unknown key ipfix-tcp-max-per-sorce: did you mean ipfix-tcp-max-per-source?"},
		{"sokcets: 2\n", "line 1: unknown key sokcets: did you mean sockets?"},
		{"Sockets: 2\n", "line 1: unknown key Sockets: did you mean sockets?"},
		// Nothing near: no guess.
		{"elasticsearch: x\n", "line 1: unknown key elasticsearch"},
		// Short keys are near everything: no guess.
		{"mt: 1\n", "line 1: unknown key mt"},
	} {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte(tc.file), 0o644); err != nil {
			t.Fatal(err)
		}
		var w wide
		if err := Load(path, &w); err == nil || err.Error() != tc.want {
			t.Errorf("%q: %v, want %q", tc.file, err, tc.want)
		}
	}
}
