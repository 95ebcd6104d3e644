// Package interfaces names the interfaces of flow exporters: the names an
// operator lists per exporter in a file, and the names exporters announce
// themselves in options data (IPFIX/NetFlow v9 interface options templates),
// which the collector's decoders hand over through Learn. The collector
// applies it as a flow.Enricher filling observer.ingress/egress.interface.name.
package interfaces

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
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
	// MaxLearned bounds the names learned from options data (they come from
	// the network, so a flood must not grow memory without end).
	MaxLearned int
}

// DefaultConfiguration configures no names and learns up to a million.
func DefaultConfiguration() Configuration { return Configuration{MaxLearned: 1 << 20} }

// Validate reads the file, so a bad one fails at startup.
func (c Configuration) Validate() error {
	if c.MaxLearned < 0 {
		return errors.New("interfaces: max learned names must not be negative")
	}
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

// Names holds configured and learned interface names. Lookups read an
// immutable map without locks; learning copies it (names change rarely:
// options data repeats the same names, which costs only a lookup).
type Names struct {
	configured map[key]string
	learned    atomic.Pointer[map[key]string]
	mu         sync.Mutex // serializes writers
	max        int

	learnedTotal, dropped prometheus.Counter
}

// New returns the names of Configuration.
func New(r *reporter.Reporter, config Configuration) (*Names, error) {
	if err := config.Validate(); err != nil {
		return nil, err
	}
	configured, err := config.load()
	if err != nil {
		return nil, err
	}
	f := r.Factory("interfaces")
	n := &Names{configured: configured, max: config.MaxLearned,
		learnedTotal: f.Counter("learned_total", "Interface names learned (new or changed) from exporters' options data."),
		dropped:      f.Counter("dropped_total", "Interface names not kept because the learned table is full."),
	}
	empty := map[key]string{}
	n.learned.Store(&empty)
	f.GaugeFunc("configured", "Interface names from the configuration.", func() float64 { return float64(len(configured)) })
	f.GaugeFunc("learned", "Interface names learned from options data.", func() float64 { return float64(len(*n.learned.Load())) })
	return n, nil
}

// Name returns the name of an exporter's interface: the configured one, else
// the learned one.
func (n *Names) Name(exporter netip.Addr, index uint32) (string, bool) {
	k := key{exporter.Unmap(), index}
	if s, ok := n.configured[k]; ok {
		return s, true
	}
	s, ok := (*n.learned.Load())[k]
	return s, ok
}

// Learn records names an exporter announced (ifIndex -> name), as the
// decoders read them from options data. Unchanged names cost a lookup each.
func (n *Names) Learn(exporter netip.Addr, names map[uint32]string) {
	exporter = exporter.Unmap()
	cur := *n.learned.Load()
	changed := false
	for idx, name := range names {
		if idx != 0 && name != "" && cur[key{exporter, idx}] != name {
			changed = true
			break
		}
	}
	if !changed {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	cur = *n.learned.Load()
	next := make(map[key]string, len(cur)+len(names))
	for k, v := range cur {
		next[k] = v
	}
	for idx, name := range names {
		k := key{exporter, idx}
		if idx == 0 || name == "" || next[k] == name {
			continue
		}
		if _, exists := next[k]; !exists && len(next) >= n.max {
			n.dropped.Inc()
			continue
		}
		next[k] = name
		n.learnedTotal.Inc()
	}
	n.learned.Store(&next)
}

// Enrich names the record's interfaces: a configured name always (the
// operator's word wins over what the exporter announced), else a learned one
// when the record carries none (the decoders already fill names from the
// options data of the record's own observation domain).
func (n *Names) Enrich(r *flow.Record) {
	if r.InIf != 0 {
		r.InIfName = n.pick(r.ObserverIP, r.InIf, r.InIfName)
	}
	if r.OutIf != 0 {
		r.OutIfName = n.pick(r.ObserverIP, r.OutIf, r.OutIfName)
	}
}

func (n *Names) pick(exporter netip.Addr, index uint32, current string) string {
	k := key{exporter.Unmap(), index}
	if s, ok := n.configured[k]; ok {
		return s
	}
	if current != "" {
		return current
	}
	return (*n.learned.Load())[k]
}
