// Package interfaces names the interfaces of flow exporters from a file the
// operator writes (exporter address -> ifIndex -> name). The collector applies
// it as a flow.Enricher after decoding: it fills
// observer.ingress/egress.interface.name, a configured name winning over the
// one the decoders took from the exporter's options data.
package interfaces

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/yamlconf"
)

// Configuration says where configured names come from.
type Configuration struct {
	// File maps exporter address -> ifIndex -> name (YAML); empty: none.
	File string
	// Names, when not nil, is used instead of File.
	Names map[netip.Addr]map[uint32]string
}

// DefaultConfiguration configures no names.
func DefaultConfiguration() Configuration { return Configuration{} }

// Validate reads the file, so a bad one fails at startup.
func (c Configuration) Validate() error {
	_, err := c.load()
	return err
}

func (c Configuration) load() (map[key]string, error) {
	names := c.Names
	if names == nil && c.File != "" {
		var err error
		if names, err = ReadFile(c.File); err != nil {
			return nil, err
		}
	}
	out := map[key]string{}
	for exp, m := range names {
		for idx, name := range m {
			out[key{exp.Unmap(), idx}] = name
		}
	}
	return out, nil
}

// Parse reads an interface names file:
//
//	192.0.2.1:          # exporter address (the datagram's source or sFlow agent)
//	  1: ge-0/0/1       # ifIndex: name
//	  2: ge-0/0/2
//	"2001:db8::1":
//	  10: uplink
func Parse(r io.Reader) (map[netip.Addr]map[uint32]string, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	return parse(data)
}

// ReadFile reads the interface names file at path. Every problem comes
// back, one line each (errors.Join) as "PATH:LINE: problem".
func ReadFile(path string) (map[netip.Addr]map[uint32]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read interface names: %w", err)
	}
	names, err := parse(data)
	return names, yamlconf.InFile(path, err)
}

func parse(data []byte) (map[netip.Addr]map[uint32]string, error) {
	var raw map[string]map[uint32]string
	err := yamlconf.Decode(data, &raw)
	var ye *yamlconf.Error
	if err != nil && !errors.As(err, &ye) {
		return nil, err // not YAML
	}
	errs := yamlconf.Unjoin(err)
	lines := exporterLines(data)
	out := make(map[netip.Addr]map[uint32]string, len(raw))
	first := map[netip.Addr]string{}
	exporters := make([]string, 0, len(raw))
	for s := range raw {
		exporters = append(exporters, s)
	}
	slices.SortFunc(exporters, func(a, b string) int { return lines[a][""] - lines[b][""] })
	for _, s := range exporters {
		m := raw[s]
		bad := func(line int, format string, args ...any) {
			errs = append(errs, &yamlconf.Error{Line: line, Msg: fmt.Sprintf(format, args...)})
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			bad(lines[s][""], "%s is not an IP address (write the exporter's address, such as 192.0.2.1 or \"2001:db8::1\")", s)
			continue
		}
		a = a.Unmap()
		if f, dup := first[a]; dup {
			bad(lines[s][""], "exporter %s is listed twice (also as %s at line %d): keep one", s, f, lines[f][""])
			continue
		}
		first[a] = s
		for idx, name := range m {
			at := lines[s][strconv.FormatUint(uint64(idx), 10)]
			if idx == 0 {
				bad(at, "exporter %s: ifIndex 0 means unknown and cannot be named", s)
			}
			if name == "" {
				bad(at, "exporter %s: ifIndex %d has an empty name", s, idx)
			}
		}
		out[a] = m
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b error) int { return lineOf(a) - lineOf(b) })
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// exporterLines is the line of each exporter of the file (under "") and of
// each of its ifIndexes.
func exporterLines(data []byte) map[string]map[string]int {
	out := map[string]map[string]int{}
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return out
	}
	m := doc.Content[0].Content
	for i := 0; i+1 < len(m); i += 2 {
		lines := map[string]int{"": m[i].Line}
		for j := 0; j+1 < len(m[i+1].Content); j += 2 {
			lines[m[i+1].Content[j].Value] = m[i+1].Content[j].Line
		}
		out[m[i].Value] = lines
	}
	return out
}

func lineOf(err error) int {
	var ye *yamlconf.Error
	if errors.As(err, &ye) {
		return ye.Line
	}
	return 0
}

type key struct {
	exporter netip.Addr
	index    uint32
}

// Names holds the configured interface names; it is read-only once built, so
// lookups need no lock.
type Names struct {
	configured map[key]string
}

// New returns the names of Configuration.
func New(r *reporter.Reporter, config Configuration) (*Names, error) {
	configured, err := config.load()
	if err != nil {
		return nil, err
	}
	f := r.Factory("interfaces")
	f.GaugeFunc("configured", "Interface names from the configuration.", func() float64 { return float64(len(configured)) })
	return &Names{configured: configured}, nil
}

// Name returns the configured name of an exporter's interface.
func (n *Names) Name(exporter netip.Addr, index uint32) (string, bool) {
	s, ok := n.configured[key{exporter.Unmap(), index}]
	return s, ok
}

// Enrich names the record's interfaces that have a configured name (the
// operator's word wins over what the exporter announced in options data);
// other names the record carries are kept.
func (n *Names) Enrich(r *flow.Record) {
	if r.InIf != 0 {
		if s, ok := n.Name(r.ObserverIP, r.InIf); ok {
			r.InIfName = s
		}
	}
	if r.OutIf != 0 {
		if s, ok := n.Name(r.ObserverIP, r.OutIf); ok {
			r.OutIfName = s
		}
	}
}
