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
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

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
//
// The errors do not name the file: the caller says which file it read.
func Load(path string, dst any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the caller names the file
		}
		return fmt.Errorf("read configuration: %w", err)
	}
	return Decode(data, dst)
}

// Decode is Load on the contents of a file.
func Decode(data []byte, dst any) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return syntaxError(err, data)
	}
	if len(doc.Content) == 0 {
		return nil // an empty file sets nothing
	}
	root := doc.Content[0]
	if k := reflect.Indirect(reflect.ValueOf(dst)).Kind(); (k == reflect.Struct || k == reflect.Map) && root.Kind != yaml.MappingNode {
		if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
			return nil // only comments, or "~"
		}
		what := "a single value"
		if root.Kind == yaml.SequenceNode {
			what = "a list"
		}
		return &Error{Line: root.Line, Msg: "the file must hold a mapping of keys, not " + what}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(dst)
	var te *yaml.TypeError
	switch {
	case err == nil, errors.Is(err, io.EOF):
		return nil
	case !errors.As(err, &te):
		return syntaxError(err, data)
	}
	keys, under := keyAtLine(root)
	errs := make([]error, 0, len(te.Errors))
	for _, s := range te.Errors {
		e := parse(s)
		key := keys[e.Line]
		if k, ok := under[e.Line]; ok && collectionAt.MatchString(e.Msg) {
			key = k // the list or mapping a key was given, on the line of its first item
		}
		e.Msg = explain(e.Msg, key, reflect.TypeOf(dst))
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// syntaxError is yaml.v3's error for a file that is not YAML, without its
// "yaml: " prefix, the commonest mistake said how to mend: yaml.v3 names a
// tab only when it breaks a block, not when it ends up in a flow list.
func syntaxError(err error, data []byte) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	tab := strings.Contains(msg, "tab character")
	if e := parse(msg); e.Line > 0 {
		if lines := bytes.Split(data, []byte("\n")); e.Line <= len(lines) && bytes.ContainsRune(lines[e.Line-1], '\t') {
			tab = true
		}
	}
	if tab {
		msg += " (indent with spaces: YAML does not allow tabs)"
	}
	return errors.New(msg)
}

var (
	atLine       = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknown      = regexp.MustCompile(`^field (\S+) not found in type (\S+)`)
	wrongType    = regexp.MustCompile("^cannot unmarshal (!!\\w+)(?: `(.*)`)? into (\\S+)$")
	twice        = regexp.MustCompile(`^mapping key "(.*)" already defined at line (\d+)$`)
	plainInt     = regexp.MustCompile(`^[+-]?[0-9]+$`)
	intType      = regexp.MustCompile(`^u?int(8|16|32|64)?$`)
	intBits      = map[string]int{"8": 8, "16": 16, "32": 32, "64": 64, "": 64}
	collectionAt = regexp.MustCompile(`^cannot unmarshal !!(seq|map) into`)
	collection   = map[string]string{"!!seq": "a list", "!!map": "a mapping"}
)

// parse turns one of yaml.v3's messages into an Error.
func parse(s string) *Error {
	e := &Error{Msg: s}
	if m := atLine.FindStringSubmatch(s); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = m[2]
	}
	return e
}

// explain rewrites one of yaml.v3's messages in the words of the file's
// reader: the key at fault, the value given, and what to write instead.
// key is the key on the message's line ("" when none); dst is the type
// decoded into, to list the keys of a small mapping.
func explain(msg, key string, dst reflect.Type) string {
	if m := unknown.FindStringSubmatch(msg); m != nil {
		out := "unknown key " + m[1]
		known := knownKeys(dst, m[2])
		switch near := Nearest(m[1], known); {
		case len(known) > 0 && len(known) <= 8:
			out += " (known: " + strings.Join(known, ", ") + ")"
		case near != "":
			// Too many keys to list (the collector has over a hundred):
			// name the one a typo most likely meant.
			out += ": did you mean " + near + "?"
		}
		return out
	}
	if m := twice.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("key %s is given twice (first at line %s): keep one", m[1], m[2])
	}
	prefix := ""
	if key != "" && !strings.HasPrefix(msg, key+" ") && !strings.HasPrefix(msg, key+":") {
		prefix = key + ": "
	}
	m := wrongType.FindStringSubmatch(msg)
	if m == nil {
		return prefix + msg // an UnmarshalYAML's own words
	}
	tag, val, typ := m[1], m[2], m[3]
	shown := val
	if tag == "!!str" {
		shown = strconv.Quote(val)
	}
	if key != "" && key == val {
		// A key of a mapping that is of the wrong type (an ifIndex).
		prefix, shown = "", "key "+shown
	}
	if c, ok := collection[tag]; ok {
		shown = c
	}
	switch {
	case typ == "time.Duration":
		n := "30"
		if plainInt.MatchString(val) {
			n = val
		}
		return fmt.Sprintf("%s%s is not a duration (write %ss, 5m or 1h)", prefix, shown, n)
	case intType.MatchString(typ):
		if tag == "!!int" {
			bits := intBits[intType.FindStringSubmatch(typ)[1]]
			if strings.HasPrefix(typ, "u") {
				return fmt.Sprintf("%s%s is out of range (0 to %d)", prefix, shown, uint64(1)<<bits-1)
			}
			return fmt.Sprintf("%s%s is out of range (%d to %d)", prefix, shown, -(int64(1) << (bits - 1)), int64(1)<<(bits-1)-1)
		}
		return prefix + shown + " is not a whole number"
	case typ == "float64", typ == "float32":
		return prefix + shown + " is not a number"
	case typ == "bool":
		return prefix + shown + " is not true or false"
	case typ == "string":
		return prefix + "want a single value, not " + shown
	case strings.HasPrefix(typ, "[]"):
		return prefix + "want a list such as [a, b], not " + shown
	case strings.HasPrefix(typ, "map["):
		return prefix + "want a mapping of keys to values, not " + shown
	case tag == "!!seq" || tag == "!!str" || tag == "!!int":
		return prefix + "want a mapping of keys, not " + shown
	}
	return prefix + shown + " is not a " + typ
}

// keyAtLine maps each line of the file to the innermost key on it, or,
// for a line with no key (an item of a list), the key the line is under;
// and the line where each list or mapping starts to the key it is the
// value of.
func keyAtLine(root *yaml.Node) (keys, collections map[int]string) {
	keys, collections = map[int]string{}, map[int]string{}
	var walk func(n *yaml.Node, under string)
	walk = func(n *yaml.Node, under string) {
		if _, ok := collections[n.Line]; !ok && under != "" && (n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode) {
			collections[n.Line] = under
		}
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				keys[k.Line] = k.Value
				walk(v, k.Value)
			}
			return
		}
		if _, ok := keys[n.Line]; !ok && under != "" {
			keys[n.Line] = under
		}
		for _, c := range n.Content {
			walk(c, under)
		}
	}
	walk(root, "")
	return keys, collections
}

// knownKeys returns the keys of the struct type named name ("networks.Network")
// found in t, inline fields' keys among them.
func knownKeys(t reflect.Type, name string) []string {
	seen := map[reflect.Type]bool{}
	var find func(t reflect.Type) reflect.Type
	find = func(t reflect.Type) reflect.Type {
		if t == nil || seen[t] {
			return nil
		}
		seen[t] = true
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
			return find(t.Elem())
		case reflect.Struct:
			if t.String() == name {
				return t
			}
			for i := 0; i < t.NumField(); i++ {
				if f := find(t.Field(i).Type); f != nil {
					return f
				}
			}
		}
		return nil
	}
	var keys func(t reflect.Type) []string
	keys = func(t reflect.Type) []string {
		var out []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("yaml")
			k, opts, _ := strings.Cut(tag, ",")
			switch {
			case tag == "-" || !f.IsExported():
			case strings.Contains(","+opts+",", ",inline,") && f.Type.Kind() == reflect.Struct:
				out = append(out, keys(f.Type)...)
			case k != "":
				out = append(out, k)
			default:
				out = append(out, strings.ToLower(f.Name))
			}
		}
		return out
	}
	if s := find(t); s != nil {
		return keys(s)
	}
	return nil
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
	return KeyLinesOf(data)
}

// KeyLinesOf is KeyLines on the contents of a file.
func KeyLinesOf(data []byte) (map[string]int, error) {
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

// InFile names the file of each problem err holds, as compilers do:
// "FILE:LINE: problem", one line each (errors.Join). It is for a file
// another file names (the collector's networks file), whose problems are
// reported within the naming file's.
func InFile(path string, err error) error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range Unjoin(err) {
		var ye *Error
		switch {
		case errors.As(e, &ye) && ye.Line > 0:
			e = fmt.Errorf("%s:%d: %s", path, ye.Line, ye.Msg)
		default:
			if m := atLine.FindStringSubmatch(e.Error()); m != nil {
				e = fmt.Errorf("%s:%s: %s", path, m[1], m[2])
			} else {
				e = fmt.Errorf("%s: %w", path, e)
			}
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// Nearest returns the key of known closest to key within a few edits (a
// typo, or snake_case for kebab-case): one for a key of 3 to 5 bytes, two
// from 6; "" when none is, or for a shorter key (anything is near it). The
// command line uses it for flags, which have the keys' names.
func Nearest(key string, known []string) string {
	best, bestD := "", min(2, len(key)/3)+1
	for _, k := range known {
		if d := editDistance(strings.ToLower(key), k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
