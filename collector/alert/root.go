package alert

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spanflow/spanflow/collector/rollup"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/lifecycle"
	"github.com/spanflow/spanflow/internal/reporter"
)

// Configuration is where alerts come from (the rules file) and where they
// go.
type Configuration struct {
	Rules             string
	AlertmanagerURLs  []string
	ResendInterval    time.Duration
	WebhookURL        string
	WebhookSecretFile string
	Syslog            []string // udp://HOST:PORT, tcp://HOST:PORT
	KibanaURL         string
	KibanaDataView    string
	QueueSize         int
	// Elasticsearch, when set, indexes every alert change (spanflow-alerts-*).
	Elasticsearch *Index
	// Pin, when set, pins the packets around each alert in the rings of
	// the probes that saw its traffic.
	Pin *PinConfiguration
}

// DefaultConfiguration re-sends firing alerts to Alertmanager every 30 s.
func DefaultConfiguration() Configuration {
	return Configuration{ResendInterval: 30 * time.Second, QueueSize: 10000, KibanaDataView: "spanflow-flows"}
}

// Validate checks what can be checked without reading files.
func (c Configuration) Validate() error {
	var errs []error
	if c.Rules == "" && (len(c.AlertmanagerURLs) > 0 || c.WebhookURL != "" || len(c.Syslog) > 0 || c.Pin != nil) {
		errs = append(errs, errors.New("alert destinations given without a rules file (--rules)"))
	}
	for _, s := range c.Syslog {
		if _, _, err := ParseSyslogTarget(s); err != nil {
			errs = append(errs, err)
		}
	}
	for _, u := range append(append([]string{}, c.AlertmanagerURLs...), c.WebhookURL, c.KibanaURL) {
		if u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			errs = append(errs, fmt.Errorf("URL %q: want http:// or https://", u))
		}
	}
	if p := c.Pin; p != nil && (p.Before < 0 || p.After < 0 || p.Hold <= 0) {
		errs = append(errs, errors.New("alert-pin-before and alert-pin-after must not be negative, alert-pin-hold must be positive"))
	}
	if p := c.Pin; p != nil && (p.CertFile == "") != (p.KeyFile == "") {
		errs = append(errs, errors.New("alert-pin-cert-file: give both alert-pin-cert-file and alert-pin-key-file"))
	}
	if c.ResendInterval <= 0 || c.QueueSize <= 0 {
		errs = append(errs, errors.New("alert resend interval and queue size must be positive"))
	}
	return errors.Join(errs...)
}

// Dependencies of the component.
type Dependencies struct {
	// Projects lists the projects the collector knows (networks file and
	// vCenter inventory), asked at Start; nil skips the check.
	Projects func() map[string]bool
}

// Component is the alerting stage: it subscribes to the rollups (Rollup)
// and reads flows (Write), and delivers through its sinks.
type Component struct {
	r          *reporter.Reporter
	cfg        Configuration
	deps       Dependencies
	file       *File
	m          *metrics
	Evaluator  *Evaluator
	Detectors  *FlowDetectors // nil when no flow detector is enabled
	Dispatcher *Dispatcher
	// Probes learns which probe serves each exporter's packet ring (with
	// Pin; else nil).
	Probes *Probes
	sinks  []Sink
	group  lifecycle.Group
}

// New reads the rules file and builds the sinks.
func New(r *reporter.Reporter, cfg Configuration, deps Dependencies) (*Component, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f, err := LoadRules(cfg.Rules)
	if err != nil {
		return nil, fmt.Errorf("rules %s: %w", cfg.Rules, err)
	}
	m := newMetrics(r)
	c := &Component{r: r, cfg: cfg, deps: deps, file: f, m: m}
	if len(cfg.AlertmanagerURLs) > 0 {
		c.sinks = append(c.sinks, NewAlertmanager(r.Sub("alertmanager"), m, cfg.AlertmanagerURLs, cfg.ResendInterval))
	}
	if cfg.WebhookURL != "" {
		var secret []byte
		if cfg.WebhookSecretFile != "" {
			b, err := os.ReadFile(cfg.WebhookSecretFile)
			if err != nil {
				return nil, fmt.Errorf("alert webhook secret: %w", err)
			}
			secret = []byte(strings.TrimSpace(string(b)))
		}
		c.sinks = append(c.sinks, NewWebhook(r.Sub("webhook"), m, cfg.WebhookURL, secret, cfg.QueueSize))
	}
	for _, t := range cfg.Syslog {
		s, err := NewSyslog(r.Sub("syslog"), m, t, cfg.QueueSize)
		if err != nil {
			return nil, err
		}
		c.sinks = append(c.sinks, s)
	}
	if cfg.Pin != nil {
		c.Probes = NewProbes()
		p, err := NewPinner(r.Sub("pin"), m, *cfg.Pin, c.Probes, cfg.QueueSize)
		if err != nil {
			return nil, err
		}
		c.sinks = append(c.sinks, p)
	}
	if cfg.Elasticsearch != nil {
		cfg.Elasticsearch.bind(m)
		c.sinks = append(c.sinks, cfg.Elasticsearch)
	}
	limits := map[string]int{}
	for _, rule := range f.Rules {
		limits[rule.Name] = rule.RateLimit
	}
	for _, d := range []string{RuleNewPeer, RulePortScan, RuleHalfOpen, RuleHalfOpenFlow, RuleDrop} {
		limits[d] = f.RateLimit
	}
	c.Dispatcher = newDispatcher(r, m, c.sinks, limits)
	c.Evaluator = NewEvaluator(f, cfg.KibanaURL, cfg.KibanaDataView, c.Dispatcher.Emit)
	c.Evaluator.Overflow = m.overflow.WithLabelValues("series").Inc
	c.Detectors = NewFlowDetectors(f.Detectors, cfg.KibanaURL, cfg.KibanaDataView, c.Dispatcher.Emit)
	if c.Detectors != nil {
		// A full table refuses a record per new source, address or peer
		// (a million clients fill port_scan's 10,000 sources in seconds):
		// the counters are resolved once, not their labels hashed each time.
		over := map[string]prometheus.Counter{}
		for _, d := range []string{"new_peer", "port_scan", "half_open"} {
			over[d] = m.overflow.WithLabelValues(d)
		}
		c.Detectors.Overflow = func(d string) {
			if o, ok := over[d]; ok {
				o.Inc()
				return
			}
			m.overflow.WithLabelValues(d).Inc()
		}
	}
	return c, nil
}

// Name of the component.
func (c *Component) Name() string { return "alert" }

// File is the rules file read.
func (c *Component) File() *File { return c.file }

// Start refuses rules naming unknown projects, then starts the sinks.
func (c *Component) Start() error {
	if c.deps.Projects != nil {
		if err := c.file.CheckProjects(c.deps.Projects()); err != nil {
			return fmt.Errorf("rules %s: %w", c.cfg.Rules, err)
		}
	}
	comps := make([]lifecycle.Component, len(c.sinks))
	for i, s := range c.sinks {
		comps[i] = s
	}
	return c.group.Start(comps...)
}

// Stop stops the sinks.
func (c *Component) Stop() error { return c.group.Stop() }

// Rollup judges a snapshot (rollup.Subscriber).
func (c *Component) Rollup(s *rollup.Snapshot) {
	c.Evaluator.Rollup(s)
	if c.Detectors != nil {
		c.Detectors.Rollup(s)
	}
}

// Write hands flows to the flow detectors and the probe directory
// (flow.Sink).
func (c *Component) Write(recs []flow.Record) error {
	if c.Probes != nil {
		c.Probes.Write(recs)
	}
	if c.Detectors == nil {
		return nil
	}
	return c.Detectors.Write(recs)
}
