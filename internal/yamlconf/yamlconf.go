// Package yamlconf reads the YAML configuration files of spanflow's
// commands: strictly (a key the configuration does not have is an error),
// and reporting every problem of a file at once, each with its line, so
// that a `check` command can list them and a `run` command can refuse the
// file with all of them.
package yamlconf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Error is one problem of a configuration file: a key that is unknown or
// whose value could not be decoded. The rest of the file was decoded.
type Error struct {
	Line int    // 1-based; 0 when yaml.v3 did not say
	Msg  string // "unknown key idle_timout", "time: invalid duration \"soon\"", ...
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return e.Msg
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
}

// Load decodes the YAML file at path over dst, a pointer to the
// configuration: what the file does not set keeps its value. When the file
// cannot be read or is not YAML, Load returns that one error and dst is
// left alone. Otherwise every key that is unknown or has a wrong value gives
// an *Error, in the order of the file, joined with errors.Join (one per
// line of the error's text); every other key is decoded into dst.
func Load(path string, dst any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read configuration: %w", err)
	}
	if err := Decode(data, dst); err != nil {
		var e *Error
		if errors.As(err, &e) {
			return err
		}
		return fmt.Errorf("configuration %s: %w", path, err)
	}
	return nil
}

// Decode is Load on the contents of a file.
func Decode(data []byte, dst any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(dst)
	var te *yaml.TypeError
	switch {
	case err == nil, errors.Is(err, io.EOF): // an empty file sets nothing
		return nil
	case !errors.As(err, &te):
		return err
	}
	errs := make([]error, 0, len(te.Errors))
	for _, s := range te.Errors {
		errs = append(errs, parse(s))
	}
	return errors.Join(errs...)
}

var (
	atLine  = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknown = regexp.MustCompile(`^field (\S+) not found in type `)
)

// parse turns one of yaml.v3's messages into an Error; an unknown field is
// called an unknown key, as the file's reader knows it.
func parse(s string) *Error {
	e := &Error{Msg: s}
	if m := atLine.FindStringSubmatch(s); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = m[2]
	}
	if m := unknown.FindStringSubmatch(e.Msg); m != nil {
		e.Msg = "unknown key " + m[1]
	}
	return e
}

// Errorf is the error an UnmarshalYAML method returns for a bad value at
// node n: decoding goes on with the other keys, and Load reports it at n's
// line with the others.
func Errorf(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, fmt.Sprintf(format, args...))}}
}

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

// KeyLines returns the line of each top-level key of the YAML file, so that
// a problem found after decoding (a value out of range) can be reported at
// its key's line.
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
