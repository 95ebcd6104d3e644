package collector

import (
	"fmt"
	"slices"
	"time"

	"github.com/spanflow/spanflow/collector/alert"
	"github.com/spanflow/spanflow/enrich/networks"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

// AlertConfiguration is the alerting stage: the rules file and where alerts
// go (docs/alerting.md).
type AlertConfiguration struct {
	Rules             string        `yaml:"rules" file:"true" category:"Alerting" help:"YAML rules FILE: thresholds on the one-second rollups and built-in detectors (check it with spanflow rules check)"`
	AlertmanagerURLs  []string      `yaml:"alertmanager-url" category:"Alerting" help:"Prometheus Alertmanager to post alerts to (v2 API), http://HOST:9093; repeatable"`
	ResendInterval    time.Duration `yaml:"alertmanager-resend-interval" category:"Alerting" help:"post firing alerts to Alertmanager again this often (their endsAt is four intervals ahead)"`
	WebhookURL        string        `yaml:"alert-webhook-url" category:"Alerting" help:"URL receiving each alert change as JSON (retried with backoff until it answers 2xx)"`
	WebhookSecretFile string        `yaml:"alert-webhook-secret-file" file:"true" category:"Alerting" help:"file holding the secret that signs webhook bodies (HMAC-SHA256 in X-Spanflow-Signature)"`
	Syslog            []string      `yaml:"alert-syslog" category:"Alerting" help:"syslog receiver for RFC 5424 alert messages, udp://HOST:PORT or tcp://HOST:PORT (octet counting); repeatable"`
	KibanaURL         string        `yaml:"kibana-url" category:"Alerting" help:"Kibana base URL, for the Discover link on each alert"`
	QueueSize         int           `yaml:"alert-queue-size" category:"Alerting" help:"alert notifications waiting per webhook or syslog destination; more are dropped and counted"`
	Pin               bool          `yaml:"alert-pin" category:"Alerting" help:"pin each alert's packets in the packet rings of the probes that saw its traffic (the probes' packet-ring-url, from their IPFIX); line and exporter alerts pin on their exporter's probe, others on every probe seen in the last hour"`
	PinBefore         time.Duration `yaml:"alert-pin-before" category:"Alerting" help:"the pin starts this long before the alert's condition began"`
	PinAfter          time.Duration `yaml:"alert-pin-after" category:"Alerting" help:"the pin ends this long after the alert resolves"`
	PinHold           time.Duration `yaml:"alert-pin-hold" category:"Alerting" help:"while the alert fires, the pin reaches this far past its start"`
	PinTokenFile      string        `yaml:"alert-pin-token-file" file:"true" category:"Alerting" help:"file holding the token of the probes' packet ring servers (their packet-ring-token-file)"`
	PinCAFile         string        `yaml:"alert-pin-ca-file" file:"true" category:"Alerting" help:"PEM CAs of the probes' packet ring server certificates"`
	PinCertFile       string        `yaml:"alert-pin-cert-file" file:"true" category:"Alerting" help:"PEM client certificate for probes that want mutual TLS"`
	PinKeyFile        string        `yaml:"alert-pin-key-file" file:"true" category:"Alerting" help:"PEM key of alert-pin-cert-file"`
	PinNetworks       []string      `yaml:"alert-pin-networks" category:"Alerting" help:"network (CIDR) of probe servers that are not on their exporter's own address; the token goes only to an exporter's own address or these (the probe URLs come from unauthenticated IPFIX); repeatable"`
}

func defaultAlertConfiguration() AlertConfiguration {
	d := alert.DefaultConfiguration()
	p := alert.DefaultPinConfiguration()
	return AlertConfiguration{ResendInterval: d.ResendInterval, QueueSize: d.QueueSize, PinBefore: p.Before, PinAfter: p.After, PinHold: p.Hold}
}

func (c AlertConfiguration) alert() alert.Configuration {
	d := alert.DefaultConfiguration()
	d.Rules, d.AlertmanagerURLs, d.ResendInterval = c.Rules, nonEmpty(c.AlertmanagerURLs), c.ResendInterval
	d.WebhookURL, d.WebhookSecretFile, d.Syslog = c.WebhookURL, c.WebhookSecretFile, nonEmpty(c.Syslog)
	d.KibanaURL, d.QueueSize = c.KibanaURL, c.QueueSize
	if c.Pin {
		d.Pin = &alert.PinConfiguration{Before: c.PinBefore, After: c.PinAfter, Hold: c.PinHold,
			TokenFile: c.PinTokenFile, CAFile: c.PinCAFile, CertFile: c.PinCertFile, KeyFile: c.PinKeyFile,
			Networks: nonEmpty(c.PinNetworks)}
	}
	return d
}

func (c AlertConfiguration) validate() []error {
	if c.Rules == "" && len(nonEmpty(c.AlertmanagerURLs)) == 0 && c.WebhookURL == "" && len(nonEmpty(c.Syslog)) == 0 && !c.Pin {
		return nil
	}
	var errs []error
	if _, err := (alert.PinConfiguration{Networks: nonEmpty(c.PinNetworks)}).ParseNetworks(); err != nil && c.Pin {
		errs = append(errs, settingErr("alert-pin-networks", err))
	}
	if err := c.alert().Validate(); err != nil {
		errs = append(errs, settingErr("rules", err))
	}
	return errs
}

// newAlerts builds the alerting stage; its projects are those of the
// networks file and the vCenter inventory, read when it starts (after the
// enrichers, so the inventory is loaded).
func newAlerts(r *reporter.Reporter, cfg Configuration, deps Dependencies, enr *Enrichers) (*alert.Component, error) {
	projects := func() map[string]bool {
		known := map[string]bool{}
		for _, e := range enr.Chain {
			if n, ok := e.(*networks.Component); ok {
				for _, nw := range n.Table().Networks() {
					if nw.Project != "" {
						known[nw.Project] = true
					}
				}
			}
		}
		if enr.VSphere != nil {
			if s := enr.VSphere.Snapshot(); s != nil {
				for _, vm := range s.VMs() {
					if vm.Project != "" {
						known[vm.Project] = true
					}
					for _, nic := range vm.NICs {
						if nic.Project != "" {
							known[nic.Project] = true
						}
					}
				}
			}
		}
		return known
	}
	acfg := cfg.Alerts.alert()
	if slices.Contains(cfg.outputSpecs(), "elasticsearch") {
		// Alerts are indexed beside the flows, in spanflow-alerts-*.
		es := cfg.ElasticsearchOutput()
		if deps.ESTransport != nil {
			es.Connection.Transport = deps.ESTransport
		}
		x, err := alert.NewIndex(r.Sub("alerts index"), es.Connection, es.Setup, acfg.QueueSize)
		if err != nil {
			return nil, fmt.Errorf("alerts index: %w", err)
		}
		acfg.Elasticsearch = x
	}
	a, err := alert.New(r, acfg, alert.Dependencies{Projects: projects})
	if err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	return a, nil
}

var _ flow.Sink = (*alert.Component)(nil)
