// Package yamlconf reads the YAML configuration files of the exporter and
// the collector: strict (an unknown key is an error), and every problem
// with its line, so `check` commands can list them all at once.
package yamlconf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load decodes the YAML file at path over dst. Every problem is its own
// error (errors.Join), "line N: ..."; unknown keys are named as such.
func Load(path string, dst any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read configuration: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err = dec.Decode(dst)
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		// A syntax error: yaml.v3 says "yaml: line N: ...".
		return fmt.Errorf("%w: %s", ErrSyntax, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	errs := make([]error, len(te.Errors))
	for i, e := range te.Errors {
		if m := unknownField.FindStringSubmatch(e); m != nil {
			e = m[1] + "unknown key " + m[2]
		}
		errs[i] = errors.New(e)
	}
	return errors.Join(errs...)
}

// ErrSyntax is the error of a file that is not YAML: nothing was decoded.
// Other errors of Load leave the keys that did decode in dst.
var ErrSyntax = errors.New("not valid YAML")

var unknownField = regexp.MustCompile(`^(line \d+: )field (\S+) not found in type`)

// Unjoin returns the errors an errors.Join holds (err itself otherwise).
func Unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

// Lines is the text of each error of err, one line each.
func Lines(err error) []string {
	var out []string
	for _, e := range Unjoin(err) {
		for _, l := range strings.Split(e.Error(), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, l)
			}
		}
	}
	return out
}

// KeyLines returns the line of each top-level key of the YAML file.
func KeyLines(path string) (map[string]int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	lines := map[string]int{}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return lines, nil
	}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		lines[m.Content[i].Value] = m.Content[i].Line
	}
	return lines, nil
}
