package exporter

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/spanflow/spanflow/exporter/export"
	"github.com/spanflow/spanflow/exporter/ipfix"
	"github.com/spanflow/spanflow/exporter/meter"
)

// Configuration of the exporter. The YAML keys are the command's flag names.
type Configuration struct {
	Pcap                    string   `yaml:"pcap"`
	Collectors              []string `yaml:"collector"`
	ActiveTimeout           Duration `yaml:"active-timeout"`
	IdleTimeout             Duration `yaml:"idle-timeout"`
	ObservationDomain       uint32   `yaml:"observation-domain"`
	MaxFlows                int      `yaml:"max-flows"`
	MTU                     int      `yaml:"mtu"`
	TemplateRefreshInterval Duration `yaml:"template-refresh"`
	TemplateRefreshMessages int      `yaml:"template-refresh-messages"`
}

// Duration is a time.Duration written as "60s" or "1m30s" in YAML.
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration such as 60s", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// DefaultConfiguration returns the defaults of every setting.
func DefaultConfiguration() Configuration {
	m, e := meter.DefaultConfiguration(), ipfix.DefaultConfiguration()
	return Configuration{
		ActiveTimeout:           Duration(m.ActiveTimeout),
		IdleTimeout:             Duration(m.IdleTimeout),
		MaxFlows:                m.MaxFlows,
		MTU:                     e.MTU,
		TemplateRefreshInterval: Duration(e.TemplateRefreshInterval),
		TemplateRefreshMessages: e.TemplateRefreshMessages,
	}
}

// LoadFile reads a YAML configuration over c; unknown keys are errors.
func (c *Configuration) LoadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read configuration: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && err.Error() != "EOF" {
		return fmt.Errorf("configuration %s: %w", path, oneLine(err))
	}
	return nil
}

// oneLine flattens yaml.v3's multi-line type errors.
func oneLine(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return errors.New(joinSemicolon(te.Errors))
	}
	return err
}

func joinSemicolon(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += "; "
		}
		out += x
	}
	return out
}

func (c Configuration) meter() meter.Configuration {
	return meter.Configuration{ActiveTimeout: time.Duration(c.ActiveTimeout), IdleTimeout: time.Duration(c.IdleTimeout), MaxFlows: c.MaxFlows}
}

func (c Configuration) ipfix() ipfix.Configuration {
	return ipfix.Configuration{ObservationDomain: c.ObservationDomain, MTU: c.MTU,
		TemplateRefreshInterval: time.Duration(c.TemplateRefreshInterval), TemplateRefreshMessages: c.TemplateRefreshMessages}
}

func (c Configuration) export() export.Configuration {
	return export.Configuration{Collectors: c.Collectors}
}

// Validate checks every setting; the error names each wrong one.
func (c Configuration) Validate() error {
	var errs []error
	if c.Pcap == "" {
		errs = append(errs, errors.New("no capture: give --pcap FILE"))
	}
	errs = append(errs, c.export().Validate(), c.meter().Validate(), c.ipfix().Validate())
	return errors.Join(errs...)
}

// MarshalYAML writes a duration the way UnmarshalYAML reads it.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }
