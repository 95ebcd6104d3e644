package collector

import (
	"os"
	"sort"
	"strings"

	"github.com/spanflow/spanflow/collector/output/elasticsearch"
	"github.com/spanflow/spanflow/collector/output/kafka"
	"github.com/spanflow/spanflow/collector/output/ndjson"
	"github.com/spanflow/spanflow/enrich/interfaces"
	"github.com/spanflow/spanflow/enrich/networks"
	"github.com/spanflow/spanflow/enrich/vsphere"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/lifecycle"
	"github.com/spanflow/spanflow/internal/reporter"
)

// output is one of the collector's outputs: a sink with a lifecycle.
type output interface {
	flow.Sink
	lifecycle.Component
}

// outputKind builds one kind of --output value, "KIND" or "KIND:ARG".
// Adding an output is one entry in outputs, with its settings as fields of
// Configuration (the command's flags and file keys follow from them).
type outputKind struct {
	arg   string // what ARG is, when the kind needs one
	build func(r *reporter.Reporter, cfg Configuration, deps Dependencies, arg string) (output, error)
}

var outputs = map[string]outputKind{
	"stdout": {build: func(r *reporter.Reporter, _ Configuration, deps Dependencies, _ string) (output, error) {
		w := deps.Stdout
		if w == nil {
			w = os.Stdout
		}
		return ndjson.New(r, ndjson.DefaultConfiguration(), w)
	}},
	"file": {arg: "a path (file:PATH)", build: func(r *reporter.Reporter, cfg Configuration, _ Dependencies, path string) (output, error) {
		return ndjson.New(r, cfg.ndjsonFile(path), nil)
	}},
	"kafka": {build: func(r *reporter.Reporter, cfg Configuration, _ Dependencies, _ string) (output, error) {
		return kafka.New(r, cfg.KafkaOutput())
	}},
	"elasticsearch": {build: func(r *reporter.Reporter, cfg Configuration, deps Dependencies, _ string) (output, error) {
		ecfg := cfg.ElasticsearchOutput()
		if deps.ESTransport != nil {
			ecfg.Connection.Transport = deps.ESTransport
		}
		return elasticsearch.New(r, ecfg)
	}},
}

func outputNames() string {
	names := make([]string, 0, len(outputs))
	for k, o := range outputs {
		if o.arg != "" {
			k += ":ARG"
		}
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// enricherKind builds one enricher; a nil enricher means it is not
// configured. component is started before the pipeline (nil: nothing to
// run).
type enricherKind struct {
	name  string
	build func(r *reporter.Reporter, cfg Configuration) (e flow.Enricher, component lifecycle.Component, err error)
}

// enrichers apply in this order, between decoding and the outputs: vCenter
// first, so that the networks enricher knows which ends are VMs (a VM is
// internal wherever its address is). Adding an enricher is one entry here.
var enrichers = []enricherKind{
	{"vsphere", func(r *reporter.Reporter, cfg Configuration) (flow.Enricher, lifecycle.Component, error) {
		if cfg.Enrichment.VCenter.URL == "" {
			return nil, nil, nil
		}
		vcfg, err := cfg.vsphere()
		if err != nil {
			return nil, nil, err
		}
		vs, err := vsphere.New(r, vcfg)
		if err != nil {
			return nil, nil, err
		}
		return vs, vs, nil
	}},
	{"networks", func(r *reporter.Reporter, cfg Configuration) (flow.Enricher, lifecycle.Component, error) {
		ncfg := networks.DefaultConfiguration()
		ncfg.File = cfg.Enrichment.Networks
		n, err := networks.New(r, ncfg)
		return n, nil, err
	}},
	{"interfaces", func(r *reporter.Reporter, cfg Configuration) (flow.Enricher, lifecycle.Component, error) {
		icfg := interfaces.DefaultConfiguration()
		icfg.File = cfg.Enrichment.InterfaceNames
		n, err := interfaces.New(r, icfg)
		return n, nil, err
	}},
}

// Enrichers are the configured enrichers, in the order they apply.
type Enrichers struct {
	Chain []flow.Enricher
	// Components are the enrichers to start before records flow (and to
	// stop after).
	Components []lifecycle.Component
	// VSphere is the vCenter enricher, nil without a vCenter.
	VSphere *vsphere.Component
}

// Enrich applies the chain to a record.
func (e *Enrichers) Enrich(r *flow.Record) {
	for _, x := range e.Chain {
		x.Enrich(r)
	}
}

// NewEnrichers builds the enrichers the configuration asks for; nothing
// runs before their components are started.
func NewEnrichers(r *reporter.Reporter, cfg Configuration) (*Enrichers, error) {
	out := &Enrichers{}
	for _, k := range enrichers {
		e, comp, err := k.build(r.Sub(k.name), cfg)
		if err != nil {
			return nil, err
		}
		if e == nil {
			continue
		}
		if comp != nil {
			out.Components = append(out.Components, comp)
		}
		if vs, ok := e.(*vsphere.Component); ok {
			out.VSphere = vs
		}
		out.Chain = append(out.Chain, e)
	}
	return out, nil
}
