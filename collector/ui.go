package collector

import (
	"errors"
	"strings"
	"time"

	"github.com/spanflow/spanflow/collector/alert"
	"github.com/spanflow/spanflow/collector/noc"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/yamlconf"
)

// UIConfiguration is the live view for NOC screens (docs/noc.md): a page
// served by the collector, fed every rollup tick.
type UIConfiguration struct {
	Listen         string        `yaml:"ui" category:"Live view" help:"serve the live NOC view at http://ADDR/ (ADDR or :PORT, which binds 127.0.0.1); beyond loopback it needs ui-tls-cert-file and ui-token-file or ui-user-header; \"\" disables"`
	TLSCertFile    string        `yaml:"ui-tls-cert-file" file:"true" category:"Live view" help:"PEM certificate (with its intermediates) to serve the live view over HTTPS"`
	TLSKeyFile     string        `yaml:"ui-tls-key-file" file:"true" category:"Live view" help:"PEM key of ui-tls-cert-file"`
	TokenFile      string        `yaml:"ui-token-file" file:"true" category:"Live view" help:"file holding the token (16 characters or more) a screen must give: Authorization: Bearer, or ?token= once (kept in a cookie)"`
	UserHeader     string        `yaml:"ui-user-header" category:"Live view" help:"header in which a trusted reverse proxy names the authenticated user (X-Forwarded-User); believed only from ui-trusted-proxy"`
	TrustedProxies []string      `yaml:"ui-trusted-proxy" category:"Live view" help:"network (CIDR) of the reverse proxy setting ui-user-header; repeatable"`
	MaxClients     int           `yaml:"ui-max-clients" category:"Live view" help:"live streams open at once; more are refused (503) and counted"`
	MaxRows        int           `yaml:"ui-max-rows" category:"Live view" help:"rows per list (lines charted, projects, services, exporters, Sankey links), the heaviest"`
	History        time.Duration `yaml:"ui-history" category:"Live view" help:"how far back the line load charts go (kept in memory: ui-max-rows lines, one value a tick)"`
	Delay          time.Duration `yaml:"ui-delay" category:"Live view" help:"show each second this long after it ends, when shorter than rollup-delay (alerts keep rollup-delay); bytes arriving later show in the next second"`
	Rotate         time.Duration `yaml:"ui-rotate" category:"Live view" help:"kiosk mode (?kiosk=1): how long each view is shown before the next"`
}

func defaultUIConfiguration() UIConfiguration {
	d := noc.DefaultConfiguration()
	return UIConfiguration{MaxClients: d.MaxClients, MaxRows: d.MaxRows, History: d.History, Delay: d.Delay, Rotate: d.Rotate}
}

func (c Configuration) ui() noc.Configuration {
	d := noc.DefaultConfiguration()
	u := c.UI
	d.Listen, d.TLSCertFile, d.TLSKeyFile, d.TokenFile = u.Listen, u.TLSCertFile, u.TLSKeyFile, u.TokenFile
	d.UserHeader, d.TrustedProxies, d.MaxClients, d.MaxRows = u.UserHeader, nonEmpty(u.TrustedProxies), u.MaxClients, u.MaxRows
	d.History, d.Delay, d.Rotate, d.KibanaURL = u.History, u.Delay, u.Rotate, c.Alerts.KibanaURL
	if d.KibanaDataView == "" {
		d.KibanaDataView = alert.DefaultConfiguration().KibanaDataView
	}
	return d
}

func (c Configuration) validateUI() []error {
	if c.UI.Listen == "" {
		return nil
	}
	var errs []error
	if !c.Rollups.Enabled {
		errs = append(errs, settingErr("ui", errors.New("the live view needs the rollups: remove rollups: false")))
	}
	if c.Input.Pcap != "" {
		errs = append(errs, settingErr("ui", errors.New("the live view needs live listeners, not --pcap")))
	}
	for _, e := range yamlconf.Unjoin(c.ui().Validate()) {
		key, msg, _ := strings.Cut(e.Error(), ": ")
		errs = append(errs, settingErr(key, errors.New(msg)))
	}
	return errs
}

// newUI builds the live view on the rollups; its lines' capacities and
// names are the rules file's.
func (c *Collector) newUI(r *reporter.Reporter) (*noc.Server, error) {
	lines := map[string]noc.LineInfo{}
	if c.alerts != nil {
		for k, l := range c.alerts.File().Lines {
			lines[k] = noc.LineInfo{Capacity: float64(l.Capacity), Name: l.Name}
		}
	}
	s, err := noc.New(r, c.cfg.ui(), noc.Dependencies{Rollups: c.rollups, Lines: lines,
		Health: func() (uint64, uint64) { return c.Datagrams(), c.KernelDrops() }})
	if err != nil {
		return nil, err
	}
	if c.alerts != nil {
		prev := c.alerts.Dispatcher.Observe
		c.alerts.Dispatcher.Observe = func(a alert.Alert) {
			if prev != nil {
				prev(a)
			}
			s.Observe(a)
		}
	}
	return s, nil
}

// UI is the live view, nil without --ui.
func (c *Collector) UI() *noc.Server { return c.ui }
