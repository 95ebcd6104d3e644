// Package interfaces names the interfaces of flow exporters from a file the
// operator writes (exporter address -> ifIndex -> name). The collector applies
// it as a flow.Enricher after decoding: it fills
// observer.ingress/egress.interface.name, a configured name winning over the
// one the decoders took from the exporter's options data.
package interfaces

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
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
		f, err := os.Open(c.File)
		if err != nil {
			return nil, fmt.Errorf("read interface names: %w", err)
		}
		defer f.Close()
		if names, err = Parse(f); err != nil {
			return nil, fmt.Errorf("interface names file %s: %w", c.File, err)
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
	var raw map[string]map[uint32]string
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&raw); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	out := make(map[netip.Addr]map[uint32]string, len(raw))
	for s, m := range raw {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("exporter %q: %w", s, err)
		}
		a = a.Unmap()
		if _, dup := out[a]; dup {
			return nil, fmt.Errorf("exporter %s is listed twice", a)
		}
		for idx, name := range m {
			if idx == 0 {
				return nil, fmt.Errorf("exporter %s: ifIndex 0 means unknown and cannot be named", a)
			}
			if name == "" {
				return nil, fmt.Errorf("exporter %s: ifIndex %d has an empty name", a, idx)
			}
		}
		out[a] = m
	}
	return out, nil
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
