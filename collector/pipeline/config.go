package pipeline

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/spanflow/spanflow/decoders"
)

// Configuration of the pipeline.
type Configuration struct {
	// Allow lists the networks exporters may send from; empty allows all.
	// Datagrams from elsewhere are dropped and counted.
	Allow []netip.Prefix
	// Decoder bounds the per-exporter state.
	Decoder decoders.Configuration
	// ExpireInterval is how often data sets held for a template are checked
	// against the decoder's pending timeout (wall clock); 0 disables it, as
	// a capture replay must (its receive times are the capture's).
	ExpireInterval time.Duration
	// ExporterStatsInterval is how often one statistics document per
	// exporter and observation domain seen (flow.Record.Exporter) is written
	// to the outputs; 0 disables them.
	ExporterStatsInterval time.Duration
	// MaxExporterSeries bounds the exporters that get metric series of their
	// own (label exporter="ADDR"); an exporter gets them once it has
	// delivered a record, so spoofed sources sending garbage never do. The
	// others share exporter="other".
	MaxExporterSeries int
}

// DefaultConfiguration allows every exporter, with the decoder's default limits.
func DefaultConfiguration() Configuration {
	return Configuration{Decoder: decoders.DefaultConfiguration(), ExpireInterval: 5 * time.Second, ExporterStatsInterval: time.Minute, MaxExporterSeries: 1000}
}

// Validate checks the configuration.
func (c Configuration) Validate() error {
	if c.ExpireInterval < 0 {
		return fmt.Errorf("expire interval must not be negative")
	}
	if c.MaxExporterSeries < 1 {
		return fmt.Errorf("max exporter series must be at least 1, not %d", c.MaxExporterSeries)
	}
	if c.ExporterStatsInterval < 0 {
		return fmt.Errorf("exporter statistics interval must not be negative")
	}
	for _, p := range c.Allow {
		if !p.IsValid() {
			return fmt.Errorf("invalid allowed network %v", p)
		}
	}
	return c.Decoder.Validate()
}

// ParseAllow parses --allow values (CIDR, or a single address).
func ParseAllow(values []string) ([]netip.Prefix, error) {
	var ps []netip.Prefix
	for _, v := range values {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			a, aerr := netip.ParseAddr(v)
			if aerr != nil {
				return nil, fmt.Errorf("allowed exporter network %q: want a CIDR such as 10.0.0.0/8", v)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		ps = append(ps, p.Masked())
	}
	return ps, nil
}
