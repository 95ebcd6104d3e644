// Package collector assembles the collector's data path, the counterpart
// of package exporter:
//
//	listen (UDP, IPFIX/TCP) or a capture ─▶ taps (forward) ─▶ pipeline: decode ─▶ enrich ─▶ outputs
//
// Each stage is its own package; New builds them from one Configuration in
// one order, Start starts them in that order and Stop stops them in
// reverse. Outputs and enrichers are registered in registry.go.
package collector

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/spanflow/spanflow/collector/alert"
	"github.com/spanflow/spanflow/collector/forward"
	"github.com/spanflow/spanflow/collector/listen"
	"github.com/spanflow/spanflow/collector/noc"
	"github.com/spanflow/spanflow/collector/pcapreplay"
	"github.com/spanflow/spanflow/collector/pipeline"
	"github.com/spanflow/spanflow/collector/rollup"
	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/enrich/vsphere"
	"github.com/spanflow/spanflow/internal/lifecycle"
	"github.com/spanflow/spanflow/internal/reporter"
)

// Dependencies are what the collector takes from whoever embeds it.
type Dependencies struct {
	// Stdout is where the stdout output writes (default os.Stdout).
	Stdout io.Writer
	// ESTransport, when set, carries the requests of the Elasticsearch
	// output, the rollups index and the alerts index
	// (the demo closes its idle connections when it ends).
	ESTransport http.RoundTripper
	// Outputs are more sinks, written after the configured outputs.
	Outputs []pipeline.Output
}

// Collector is the collector's data path.
type Collector struct {
	r          *reporter.Reporter
	cfg        Configuration
	components []lifecycle.Component // in start order
	group      lifecycle.Group
	pipeline   *pipeline.Pipeline
	listener   *listen.Listener // nil when replaying a capture
	vsphere    *vsphere.Component
	alerts     *alert.Component // nil without --rules
	rollups    *rollup.Engine   // nil when disabled
	ui         *noc.Server      // nil without --ui
	datagrams  atomic.Uint64    // handled by the pipeline, from every socket and connection
}

// New builds the collector's components; nothing runs before Start.
func New(r *reporter.Reporter, cfg Configuration, deps Dependencies) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Collector{r: r, cfg: cfg}
	if cfg.MetricsListen != "" {
		c.components = append(c.components, reporter.NewMetricsServer(r, cfg.MetricsListen))
	}
	var pdeps pipeline.Dependencies
	var err error
	for _, spec := range cfg.outputSpecs() {
		kind, arg, _ := strings.Cut(spec, ":")
		o, err := outputs[kind].build(r.Sub("output "+kind), cfg, deps, arg)
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", spec, err)
		}
		c.components = append(c.components, o)
		pdeps.Outputs = append(pdeps.Outputs, pipeline.Output{Name: spec, Sink: o})
	}
	if cfg.Rollups.Enabled {
		if c.rollups, err = rollup.New(r.Sub("rollups"), cfg.rollups()); err != nil {
			return nil, err
		}
		if cfg.Rollups.IndexInterval > 0 && slices.Contains(cfg.outputSpecs(), "elasticsearch") {
			ix, err := rollup.NewIndexer(r.Sub("rollups index"), cfg.rollupIndex(deps), c.rollups)
			if err != nil {
				return nil, fmt.Errorf("rollups index: %w", err)
			}
			c.components = append(c.components, ix)
		}
		pdeps.Outputs = append(pdeps.Outputs, pipeline.Output{Name: "rollups", Sink: c.rollups})
	}
	pdeps.Outputs = append(pdeps.Outputs, deps.Outputs...)
	enr, err := NewEnrichers(r, cfg)
	if err != nil {
		return nil, err
	}
	c.components = append(c.components, enr.Components...)
	pdeps.Enrichers, c.vsphere = enr.Chain, enr.VSphere
	if cfg.Alerts.Rules != "" {
		// After the enrichers: its Start refuses rules naming projects the
		// networks file and the vCenter inventory do not know.
		if c.alerts, err = newAlerts(r.Sub("alert"), cfg, deps, enr); err != nil {
			return nil, err
		}
		c.components = append(c.components, c.alerts)
		pdeps.Outputs = append(pdeps.Outputs, pipeline.Output{Name: "alerts", Sink: c.alerts})
		if c.rollups != nil {
			c.rollups.Subscribe(c.alerts) // the rules judge every snapshot
		}
	}
	if cfg.UI.Listen != "" {
		// Before the rollups: subscribed before they tick, serving before
		// the first snapshot, stopped after the last.
		if c.ui, err = c.newUI(r.Sub("ui")); err != nil {
			return nil, err
		}
		c.components = append(c.components, c.ui)
		pdeps.Outputs = append(pdeps.Outputs, pipeline.Output{Name: "ui", Sink: c.ui})
	}
	if c.rollups != nil {
		// Started after the indexer (its template is in before the first
		// tick) and the alert stage, stopped before both: the last ticks of
		// a replay are indexed and judged.
		c.components = append(c.components, c.rollups)
	}
	if fcfg := cfg.forward(); len(fcfg.Targets) > 0 {
		fw, err := forward.New(r.Sub("forward"), fcfg)
		if err != nil {
			return nil, err
		}
		c.components = append(c.components, fw)
		pdeps.Taps = append(pdeps.Taps, fw)
	}
	pcfg, err := cfg.pipeline()
	if err != nil {
		return nil, err
	}
	if c.pipeline, err = pipeline.New(r.Sub("pipeline"), pcfg, pdeps); err != nil {
		return nil, err
	}
	c.components = append(c.components, c.pipeline)
	if cfg.Input.Pcap == "" {
		c.listener, err = listen.New(r.Sub("listen"), cfg.listen(), listen.Dependencies{NewHandler: func() listen.Handler {
			return &countingHandler{h: c.pipeline.NewWorker(), n: &c.datagrams}
		}})
		if err != nil {
			return nil, err
		}
		c.components = append(c.components, c.listener)
	}
	return c, nil
}

// reopener is a component with files to open again on request (SIGHUP).
type reopener interface{ Reopen() error }

// reopen opens the file outputs among components again, and says how many.
func reopen(components []lifecycle.Component) (int, error) {
	n := 0
	var errs []error
	for _, c := range components {
		if r, ok := c.(reopener); ok {
			n++
			errs = append(errs, r.Reopen())
		}
	}
	return n, errors.Join(errs...)
}

// Reopen opens the NDJSON output files again (after logrotate moved them
// away), and says how many outputs it reopened.
func (c *Collector) Reopen() (int, error) { return reopen(c.components) }

// Start starts the components in order: metrics, outputs, enrichers (the
// vCenter inventory is waited for up to vcenter-wait), taps, the pipeline,
// then the listeners. On failure what started is stopped.
func (c *Collector) Start() error {
	err := c.group.Start(c.components...)
	var inUse *listen.PortInUseError
	if errors.As(err, &inUse) {
		// Say which setting holds the address, and how to share on purpose.
		in := c.cfg.Input
		key := "ipfix-tls-listen"
		for k, addrs := range map[string][]string{"netflow-listen": in.NetFlowListen, "ipfix-listen": in.IPFIXListen,
			"sflow-listen": in.SFlowListen, "ipfix-tcp-listen": in.IPFIXTCPListen} {
			if slices.Contains(addrs, inUse.Addr) && (inUse.Network == "udp") == (k != "ipfix-tcp-listen") {
				key = k
			}
		}
		share := "to share it on purpose, set listen-reuseport: true (--listen-reuseport) in every collector on it, and the kernel splits the traffic between them"
		if c.cfg.Input.ReusePort {
			share = "it is not shared: the process holding it was started without SO_REUSEPORT, or by another user"
		}
		return fmt.Errorf("%w (another collector?): stop it or choose another port with --%s; %s", err, key, share)
	}
	return err
}

// Stop stops the components in reverse order: listeners first, outputs
// last, so every record decoded is written.
func (c *Collector) Stop() error {
	return c.group.Stop()
}

// ReplayStats is what a capture replay read.
type ReplayStats struct {
	pcapreplay.Stats
	// SetsWithoutTemplate are data sets still held for a template at the
	// capture's end, dropped and counted.
	SetsWithoutTemplate int
}

// Replay reads the flow datagrams of the configured capture (--pcap)
// through the pipeline; the collector must be started. Data sets still
// waiting for a template at the end are dropped and counted.
func (c *Collector) Replay() (ReplayStats, error) {
	if c.cfg.Input.Pcap == "" {
		return ReplayStats{}, errors.New("no capture to replay: give --pcap FILE")
	}
	w := c.pipeline.NewWorker()
	st, err := pcapreplay.Read(c.cfg.Input.Pcap, func(dg decoders.Datagram, _ netip.AddrPort) error {
		w.Handle(dg)
		return nil
	})
	return ReplayStats{Stats: st, SetsWithoutTemplate: c.pipeline.Flush()}, err
}

// Addrs are the addresses the listeners are bound to, once started.
func (c *Collector) Addrs() []net.Addr {
	if c.listener == nil {
		return nil
	}
	return c.listener.Addrs()
}

// KernelDrops is the number of datagrams the kernel dropped on the UDP
// sockets (receive buffer full).
func (c *Collector) KernelDrops() uint64 {
	if c.listener == nil {
		return 0
	}
	return c.listener.KernelDrops()
}

// Datagrams is the number of datagrams received and handled by the
// pipeline (decoded, enriched and written) so far.
func (c *Collector) Datagrams() uint64 {
	return c.datagrams.Load()
}

// Alerts is the alerting stage, nil without a rules file. It reads flows
// as a pipeline output and every rollup snapshot as a subscriber.
func (c *Collector) Alerts() *alert.Component { return c.alerts }

// Rollups is the rollup engine, nil when --rollups=false. Subscribe to it
// before Start.
func (c *Collector) Rollups() *rollup.Engine { return c.rollups }

// VSphere is the vCenter enricher, nil without a vCenter.
func (c *Collector) VSphere() *vsphere.Component { return c.vsphere }

// countingHandler counts the datagrams a listener's socket or connection
// handed to the pipeline, once handled. Handlers come and go with IPFIX/TCP
// connections, so they share one counter rather than being kept.
type countingHandler struct {
	h *pipeline.Worker
	n *atomic.Uint64
}

func (c *countingHandler) Handle(dg decoders.Datagram) {
	c.h.Handle(dg)
	c.n.Add(1)
}

func (c *countingHandler) HandleBatch(dgs []decoders.Datagram) {
	c.h.HandleBatch(dgs)
	c.n.Add(uint64(len(dgs)))
}
