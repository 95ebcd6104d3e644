package alert

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/spanflow/spanflow/collector/rollup"
	"github.com/spanflow/spanflow/internal/yamlconf"
)

// Derived values a rule may name besides the rollup's own.
const (
	// Utilisation is a line's bits per second over its capacity in the
	// rules file's lines (a fraction: 0.95 is 95 %).
	Utilisation = "utilisation"
	// BaselineRatio is bytes per second over the slow baseline (0.1: traffic
	// at a tenth of its usual level).
	BaselineRatio = "baseline_ratio"
)

// Values are the names a rule's value may take: the rollup's (snapshot.go)
// and the derived ones.
var Values = []string{
	rollup.BytesPerSecond, rollup.PacketsPerSecond, rollup.FlowsPerSecond,
	rollup.BytesPerSecondSmoothed, rollup.PacketsPerSecondSmooth, rollup.FlowsPerSecondSmoothed,
	rollup.RTTp50, rollup.RTTp95, rollup.RTTp99, rollup.RetransmissionRatio, rollup.ZeroWindowsPerSecond,
	rollup.BitsPerSecond, rollup.BitsPerSecondSmoothed, rollup.BytesPerSecondBaseline,
	rollup.RetransmittedPerSecond, rollup.HandshakesPerSecond, rollup.UnansweredSYNsPerSecond,
	Utilisation, BaselineRatio,
}

// rates are values whose absence from a snapshot means zero (nothing
// flowed); for the others (RTT, ratios) absence means not measured.
var rates = map[string]bool{
	rollup.BytesPerSecond: true, rollup.PacketsPerSecond: true, rollup.FlowsPerSecond: true,
	rollup.BitsPerSecond: true, rollup.ZeroWindowsPerSecond: true, rollup.RetransmittedPerSecond: true,
	rollup.HandshakesPerSecond: true, rollup.UnansweredSYNsPerSecond: true, Utilisation: true,
}

// Scopes and the selectors that apply to each (a row carries those labels).
var scopeSelectors = map[string][]string{
	rollup.ScopeLine:     {"line", "exporter"},
	rollup.ScopeProject:  {"project"},
	rollup.ScopeVM:       {"vm", "project"},
	rollup.ScopeService:  {"service"},
	rollup.ScopeExporter: {"exporter"},
}

// File is a rules file.
type File struct {
	// Lines give capacities and names to lines, by rollup key
	// "EXPORTER INTERFACE".
	Lines     map[string]Line `yaml:"lines"`
	Rules     []Rule          `yaml:"rules"`
	Detectors Detectors       `yaml:"detectors"`
	// Defaults for every rule and detector that does not say.
	RateLimit int `yaml:"rate_limit"`

	lineNames map[string]string // line name → key
	lineOf    map[int]int       // rule index → its line in the file (-1 detectors, -2 lines)
	// undecodedRules and undecodedLines hold a value that failed to
	// decode: their cross-checks are skipped.
	undecodedRules map[int]bool
	undecodedLines map[string]bool
}

// Line is a line's capacity and display name.
type Line struct {
	Capacity Bandwidth `yaml:"capacity"`
	Name     string    `yaml:"name"`
}

// Rule is a threshold on one rollup value of the rows its selectors choose.
type Rule struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
	// Scope is the rows it reads (line, project, vm, service, exporter);
	// inferred from the selector or value when not given.
	Scope string   `yaml:"scope"`
	Above *float64 `yaml:"above"`
	Below *float64 `yaml:"below"`
	// Clear is where a firing alert resolves (hysteresis): below it for an
	// above rule, above it for a below rule. Default: the threshold.
	Clear *float64 `yaml:"clear"`
	// For is how long the condition must hold before the alert fires.
	For      time.Duration `yaml:"for"`
	Severity string        `yaml:"severity"`
	// Selectors: shell globs (path.Match) on the row's labels.
	Project  string `yaml:"project"`
	Line     string `yaml:"line"`
	VM       string `yaml:"vm"`
	Service  string `yaml:"service"`
	Exporter string `yaml:"exporter"`
	// MinBaseline: for baseline_ratio, rows whose baseline is below this
	// many bytes per second are not judged (quiet series swing too much).
	MinBaseline float64           `yaml:"min_baseline"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
	// RateLimit is how many alerts of this rule may start per minute; more
	// are counted and logged, not sent (storm control). 0: the file's.
	RateLimit int `yaml:"rate_limit"`

	templates map[string]*template.Template
}

// labelName is a label or annotation name every Alertmanager takes: the
// classic Prometheus form (Alertmanager before 0.27, or in classic mode,
// refuses others; every version refuses an empty one).
var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// Bandwidth is bits per second, written 10Gbit, 25G, 100Mbit, 1e9.
type Bandwidth float64

// UnmarshalYAML reads a bandwidth with its unit.
func (b *Bandwidth) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseBandwidth(n.Value)
	if err != nil {
		return yamlconf.Errorf(n, "%v", err)
	}
	*b = Bandwidth(v)
	return nil
}

// ParseBandwidth reads "10Gbit", "10G", "100Mbit/s", "1e9" as bits per second.
func ParseBandwidth(s string) (float64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSpace(s), "/s"), "ps")
	t = strings.TrimSuffix(strings.TrimSuffix(t, "bit"), "b")
	mult := 1.0
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k', 'K':
			mult = 1e3
		case 'M':
			mult = 1e6
		case 'G':
			mult = 1e9
		case 'T':
			mult = 1e12
		}
		if mult != 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || v <= 0 || math.IsInf(v, 0) {
		return 0, fmt.Errorf("capacity %q: want a positive bandwidth such as 10Gbit, 25G, 100Mbit", s)
	}
	return v * mult, nil
}

// TemplateData is what annotations see: {{ .Labels.line }}, {{ .Value }}.
type TemplateData struct {
	Rule      string
	Severity  string
	Scope     string
	Key       string
	Labels    map[string]string
	Value     float64
	Threshold float64
	Values    map[string]float64 // every value of the row
}

var templateFuncs = template.FuncMap{
	"percent": func(v float64) string { return strconv.FormatFloat(v*100, 'f', 1, 64) + " %" },
	"bits":    func(v float64) string { return humanBits(v) },
	"printf":  fmt.Sprintf,
}

func humanBits(v float64) string {
	for _, u := range []struct {
		m float64
		s string
	}{{1e12, "Tbit/s"}, {1e9, "Gbit/s"}, {1e6, "Mbit/s"}, {1e3, "kbit/s"}} {
		if v >= u.m {
			return strconv.FormatFloat(v/u.m, 'f', 2, 64) + " " + u.s
		}
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " bit/s"
}

// LoadRules reads a rules file: every problem comes back, each with its
// line (*yamlconf.Error, joined).
func LoadRules(p string) (*File, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	return ParseRules(data)
}

// ParseRules is LoadRules on a file's contents.
func ParseRules(data []byte) (*File, error) {
	f := &File{Detectors: DefaultDetectors()}
	// Keys that are unknown or of the wrong type are reported with the
	// problems validation finds in the rest.
	derr := yamlconf.Decode(data, f)
	var ye *yamlconf.Error
	if derr != nil && !errors.As(derr, &ye) {
		return nil, derr
	}
	lines, err := ruleLines(data)
	if err != nil {
		return nil, err
	}
	f.lineOf = lines
	f.undecodedRules, f.undecodedLines = undecoded(data, derr)
	if err := errors.Join(derr, f.validate()); err != nil {
		return nil, sortByLine(err)
	}
	return f, nil
}

// undecoded says which rules (by index) and lines (by key) hold a value
// that failed to decode: their cross-checks would compare the zero left in
// its place and add a false second problem.
func undecoded(data []byte, derr error) (rules map[int]bool, lines map[string]bool) {
	rules, lines = map[int]bool{}, map[string]bool{}
	bad := map[int]bool{}
	for _, e := range yamlconf.Unjoin(derr) {
		var ye *yamlconf.Error
		if errors.As(e, &ye) {
			bad[ye.Line] = true
		}
	}
	var doc yaml.Node
	if len(bad) == 0 || yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return rules, lines
	}
	holds := func(n *yaml.Node) bool {
		for l := n.Line; l <= lastLine(n); l++ {
			if bad[l] {
				return true
			}
		}
		return false
	}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		switch v := m.Content[i+1]; m.Content[i].Value {
		case "rules":
			for j, r := range v.Content {
				rules[j] = holds(r)
			}
		case "lines":
			for k := 0; k+1 < len(v.Content); k += 2 {
				lines[v.Content[k].Value] = holds(v.Content[k+1])
			}
		}
	}
	return rules, lines
}

// lastLine is the last line a node's value takes.
func lastLine(n *yaml.Node) int {
	last := n.Line
	for _, c := range n.Content {
		last = max(last, lastLine(c))
	}
	return last
}

// ruleLines finds the line of each rule and of the detectors key.
func ruleLines(data []byte) (map[int]int, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	out := map[int]int{}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return out, nil
	}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		switch m.Content[i].Value {
		case "rules":
			for j, r := range m.Content[i+1].Content {
				out[j] = r.Line
			}
		case "detectors":
			out[-1] = m.Content[i].Line
		case "lines":
			out[-2] = m.Content[i].Line
		}
	}
	return out, nil
}

func (f *File) errorf(rule int, format string, args ...any) error {
	return &yamlconf.Error{Line: f.lineOf[rule], Msg: fmt.Sprintf(format, args...)}
}

func (f *File) validate() error {
	var errs []error
	f.lineNames = map[string]string{}
	// Keys as the rollups write them: "2001:DB8::3 vmnic0" was never
	// found, and its rules never fired.
	lines := make(map[string]Line, len(f.Lines))
	for _, key := range sortedKeys(f.Lines) {
		l := f.Lines[key]
		canon, err := lineKey(key)
		switch {
		case err != nil:
			errs = append(errs, f.errorf(-2, "line %q: %v", key, err))
			canon = key
		case canon != key:
			if _, dup := f.Lines[canon]; dup {
				errs = append(errs, f.errorf(-2, "line %q: the same line as %q", key, canon))
			}
		}
		if l.Capacity <= 0 && !f.undecodedLines[key] {
			errs = append(errs, f.errorf(-2, "line %q: no capacity", key))
		}
		if l.Name != "" {
			f.lineNames[l.Name] = canon
		}
		lines[canon] = l
	}
	if f.Lines != nil {
		f.Lines = lines
	}
	names := map[string]bool{}
	for i := range f.Rules {
		r := &f.Rules[i]
		bad := func(format string, args ...any) {
			errs = append(errs, f.errorf(i, "rule %q: %s", r.Name, fmt.Sprintf(format, args...)))
		}
		switch {
		case r.Name == "":
			bad("no name")
		case names[r.Name]:
			bad("name used twice")
		}
		names[r.Name] = true
		if !slices.Contains(Values, r.Value) {
			bad("unknown value %q (one of %s)", r.Value, strings.Join(Values, ", "))
		}
		// A value that failed to decode was said; the checks that
		// compare values would compare the zero left in its place.
		if (r.Above == nil) == (r.Below == nil) && !f.undecodedRules[i] {
			bad("give exactly one of above and below")
		}
		if r.Clear != nil && !f.undecodedRules[i] {
			if r.Above != nil && *r.Clear > *r.Above {
				bad("clear %v is above the threshold %v: it would never fire and stay", *r.Clear, *r.Above)
			}
			if r.Below != nil && *r.Clear < *r.Below {
				bad("clear %v is below the threshold %v", *r.Clear, *r.Below)
			}
		}
		// YAML's .nan and .inf are numbers: a NaN threshold never fires,
		// a NaN clear never resolves.
		for _, x := range []struct {
			name string
			v    *float64
		}{{"above", r.Above}, {"below", r.Below}, {"clear", r.Clear}, {"min_baseline", &r.MinBaseline}} {
			if x.v != nil && (math.IsNaN(*x.v) || math.IsInf(*x.v, 0)) {
				bad("%s %v: want a finite number", x.name, *x.v)
			}
		}
		if r.For < 0 {
			bad("negative for")
		}
		if r.RateLimit < 0 {
			bad("negative rate_limit")
		}
		if r.Severity == "" {
			r.Severity = "warning"
		}
		// Selectors that name one exporter, as the rows write it.
		if !strings.ContainsAny(r.Line, "*?[") {
			if canon, err := lineKey(r.Line); err == nil {
				r.Line = canon
			}
		}
		if a, err := netip.ParseAddr(r.Exporter); err == nil {
			r.Exporter = a.String()
		}
		if r.Scope == "" {
			r.Scope = r.inferScope()
		}
		sels, ok := scopeSelectors[r.Scope]
		if !ok {
			bad("scope %q: say scope: line, project, vm, service or exporter", r.Scope)
		}
		sel := r.selectors()
		for _, name := range []string{"line", "exporter", "project", "vm", "service"} {
			glob := sel[name]
			if glob == "" {
				continue
			}
			if _, err := path.Match(glob, ""); err != nil {
				bad("%s selector %q: %v", name, glob, err)
			}
			if ok && !slices.Contains(sels, name) {
				bad("a %s selector does not apply to %s rows (they carry %s)", name, r.Scope, strings.Join(sels, ", "))
			}
		}
		if r.Value == Utilisation && r.Scope != rollup.ScopeLine {
			bad("utilisation is of lines: scope must be line")
		}
		if r.Value == Utilisation && len(f.Lines) == 0 {
			bad("utilisation needs line capacities under lines:")
		}
		if r.Line != "" && !strings.ContainsAny(r.Line, "*?[") {
			if _, named := f.lineNames[r.Line]; !named {
				if _, keyed := f.Lines[r.Line]; !keyed && len(strings.Fields(r.Line)) != 2 {
					bad("line %q is neither a line name under lines: nor \"EXPORTER INTERFACE\"", r.Line)
				}
			}
		}
		for _, what := range []struct {
			kind string
			m    map[string]string
		}{{"label", r.Labels}, {"annotation", r.Annotations}} {
			for _, k := range sortedKeys(what.m) {
				if !labelName.MatchString(k) {
					bad("%s name %q: use letters, digits and _, not starting with a digit (Alertmanager refuses such an alert)", what.kind, k)
				} else if what.kind == "label" && len(syslogLabelPrefix)+len(k) > syslogMaxName {
					bad("label name %q: at most %d characters (syslog names it %s%s, and RFC 5424 names hold %d)",
						k, syslogMaxName-len(syslogLabelPrefix), syslogLabelPrefix, k, syslogMaxName)
				}
			}
		}
		r.templates = map[string]*template.Template{}
		for k, text := range r.Annotations {
			t, err := template.New(k).Funcs(templateFuncs).Parse(text)
			if err == nil {
				// A field that does not exist fails here, at load.
				err = t.Execute(&bytes.Buffer{}, TemplateData{Labels: map[string]string{}, Values: map[string]float64{}})
			}
			if err != nil {
				bad("annotation %s: %v", k, err)
				continue
			}
			r.templates[k] = t
		}
		if r.RateLimit == 0 {
			r.RateLimit = f.RateLimit
		}
	}
	if err := f.Detectors.validate(); err != nil {
		errs = append(errs, f.errorf(-1, "detectors: %v", err))
	}
	return errors.Join(errs...)
}

// lineKey is a line's "EXPORTER INTERFACE" as the rollups write it: the
// address in its canonical form (netip's: IPv6 in lower case, compressed).
func lineKey(key string) (string, error) {
	f := strings.Fields(key)
	if len(f) != 2 {
		return "", errors.New(`want "EXPORTER INTERFACE", e.g. "10.1.0.3 vmnic0"`)
	}
	a, err := netip.ParseAddr(f[0])
	if err != nil {
		return "", fmt.Errorf("%q is not an exporter's IP address", f[0])
	}
	return a.String() + " " + f[1], nil
}

func (r *Rule) selectors() map[string]string {
	return map[string]string{"project": r.Project, "line": r.Line, "vm": r.VM, "service": r.Service, "exporter": r.Exporter}
}

func (r *Rule) inferScope() string {
	switch {
	case r.Value == Utilisation || r.Line != "":
		return rollup.ScopeLine
	case r.VM != "":
		return rollup.ScopeVM
	case r.Project != "":
		return rollup.ScopeProject
	case r.Service != "":
		return rollup.ScopeService
	case r.Exporter != "":
		return rollup.ScopeExporter
	}
	return ""
}

// Projects are the project names the rules and detectors name.
func (f *File) Projects() []string {
	var out []string
	for _, r := range f.Rules {
		if r.Project != "" && !strings.ContainsAny(r.Project, "*?[") && !slices.Contains(out, r.Project) {
			out = append(out, r.Project)
		}
	}
	for _, p := range f.Detectors.NewPeer.Projects {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// CheckProjects refuses rules naming a project that is not in known (the
// networks file's and vCenter inventory's projects), each at its line.
func (f *File) CheckProjects(known map[string]bool) error {
	var errs []error
	for i, r := range f.Rules {
		if r.Project != "" && !strings.ContainsAny(r.Project, "*?[") && !known[r.Project] {
			errs = append(errs, f.errorf(i, "rule %q: unknown project %q (not in the networks file or the vCenter inventory)", r.Name, r.Project))
		}
	}
	for _, p := range f.Detectors.NewPeer.Projects {
		if !known[p] {
			errs = append(errs, f.errorf(-1, "detectors: new_peer: unknown project %q", p))
		}
	}
	return errors.Join(errs...)
}

// sortByLine orders joined problems by their line, as a reader goes.
func sortByLine(err error) error {
	errs := yamlconf.Unjoin(err)
	line := func(e error) int {
		var ye *yamlconf.Error
		if errors.As(e, &ye) {
			return ye.Line
		}
		return 0
	}
	slices.SortStableFunc(errs, func(a, b error) int { return line(a) - line(b) })
	return errors.Join(errs...)
}
