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
				"line 2: unknown key bogus",
				"line 3: cannot unmarshal !!int `99999` into uint16",
				`line 4: time: invalid duration "soon"`,
				"line 5: unknown key other_key",
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
		filepath.Join(dir, "none.yaml"): "read configuration: open ",
		bad:                             "configuration " + bad + ": yaml: line 2:",
	} {
		got := settings{Port: 1}
		err := Load(path, &got)
		var e *Error
		if err == nil || !strings.HasPrefix(err.Error(), want) || errors.As(err, &e) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v, want one line starting with %q", filepath.Base(path), err, want)
		}
		if got.Name != "" || got.Port != 1 || got.Timeout != 0 || got.Hosts != nil {
			t.Errorf("%s: decoded %+v", filepath.Base(path), got)
		}
	}
}
