package noc

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Configuration of the live view. docs/noc.md explains each value.
type Configuration struct {
	// Listen is the HTTP address; one without a host (":8080") binds the
	// loopback interface. "" disables the view.
	Listen string
	// TLSCertFile and TLSKeyFile serve HTTPS; required beyond loopback.
	TLSCertFile, TLSKeyFile string
	// TokenFile holds the token a client must present (Authorization:
	// Bearer, the spanflow_ui_token cookie, or ?token= once).
	TokenFile string
	// UserHeader is the header a trusted reverse proxy sets to the
	// authenticated user; it is believed only from TrustedProxies.
	UserHeader     string
	TrustedProxies []string
	// MaxClients bounds the live streams open at once; more are refused
	// (503) and counted.
	MaxClients int
	// ClientQueue is how many frames wait for one client; a client that
	// falls further behind loses frames (counted), and is closed when a
	// write blocks for WriteTimeout.
	ClientQueue  int
	WriteTimeout time.Duration
	// History is how far back the line load charts go.
	History time.Duration
	// Delay is how long after a second ends the view shows it, when that is
	// shorter than the rollups' delay (which alerts and the rollups index
	// keep): the view then reads the rollups' open seconds
	// (rollup.Engine.Provisional). Bytes arriving later for a second
	// already shown count in the next second shown.
	Delay time.Duration
	// MaxRows bounds each list of a frame (lines, projects, services,
	// exporters, Sankey links), heaviest first.
	MaxRows int
	// MaxPairs bounds the project pairs the Sankey accumulates; the
	// traffic of more pairs counts under other → other.
	MaxPairs int
	// Rotate is how long the kiosk shows each view.
	Rotate time.Duration
	// KibanaURL and KibanaDataView make the Discover links.
	KibanaURL, KibanaDataView string
}

// DefaultConfiguration: off; 15 minutes of history, 50 rows, 64 clients.
func DefaultConfiguration() Configuration {
	return Configuration{
		MaxClients: 64, ClientQueue: 16, WriteTimeout: 10 * time.Second,
		History: 15 * time.Minute, Delay: 500 * time.Millisecond, MaxRows: 50, MaxPairs: 1000, Rotate: 20 * time.Second,
		UserHeader: "", KibanaDataView: "spanflow-flows",
	}
}

// Addr is Listen with the loopback address when it names no host.
func (c Configuration) Addr() string {
	a := strings.TrimSpace(c.Listen)
	if a == "" {
		return ""
	}
	if !strings.Contains(a, ":") {
		a = ":" + a
	}
	if strings.HasPrefix(a, ":") {
		return "127.0.0.1" + a
	}
	return a
}

// Loopback reports whether the view listens on the loopback interface only.
func (c Configuration) Loopback() bool {
	host, _, err := net.SplitHostPort(c.Addr())
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// Validate checks the configuration; errors start with the setting's name.
func (c Configuration) Validate() error {
	if c.Listen == "" {
		return nil
	}
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, port, err := net.SplitHostPort(c.Addr()); err != nil || port == "" {
		add("ui: %q: want HOST:PORT or :PORT", c.Listen)
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		// Said now, as for the other listen addresses, not as a bind
		// failure once the listeners run.
		add("ui: %q: port %s: want a number from 0 to 65535", c.Listen, port)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		add("ui-tls-cert-file: give both ui-tls-cert-file and ui-tls-key-file")
	}
	if c.UserHeader != "" && len(c.TrustedProxies) == 0 {
		add("ui-user-header: needs ui-trusted-proxy (the header is believed only from the proxy)")
	}
	for _, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			add("ui-trusted-proxy: %q: want a CIDR such as 10.0.0.5/32", p)
		}
	}
	if !c.Loopback() && c.Addr() != "" {
		if c.TLSCertFile == "" {
			add("ui: %s is beyond loopback: give ui-tls-cert-file and ui-tls-key-file", c.Addr())
		}
		if c.TokenFile == "" && c.UserHeader == "" {
			add("ui: %s is beyond loopback: give ui-token-file, or ui-user-header with ui-trusted-proxy", c.Addr())
		}
	}
	if c.MaxClients < 1 || c.ClientQueue < 1 || c.MaxRows < 1 || c.MaxPairs < 1 {
		add("ui-max-clients: ui-max-clients, ui-max-rows, the client queue and the pairs must each be at least 1")
	}
	if c.WriteTimeout <= 0 {
		add("ui-write-timeout: must be positive")
	}
	if c.History < time.Minute || c.History > 24*time.Hour {
		add("ui-history: must be between 1m and 24h, not %s", c.History)
	}
	if c.Delay < 0 || c.Delay > time.Minute {
		add("ui-delay: must be between 0 and 1m, not %s", c.Delay)
	}
	if c.Rotate < time.Second {
		add("ui-rotate: must be at least 1s, not %s", c.Rotate)
	}
	if c.KibanaURL != "" && !strings.HasPrefix(c.KibanaURL, "http://") && !strings.HasPrefix(c.KibanaURL, "https://") {
		add("kibana-url: %q: want http:// or https://", c.KibanaURL)
	}
	return errors.Join(errs...)
}
