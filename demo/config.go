package demo

import (
	"errors"
	"fmt"
	"time"

	"github.com/spanflow/spanflow/internal/esconn"
)

// Configuration of a demo run.
type Configuration struct {
	// Duration of the traffic; the run lasts a few seconds more (vCenter
	// start, inventory load, last flows).
	Duration time.Duration
	// Rate is the mirrored traffic's average, packets per second.
	Rate int
	// Port is the collector's IPFIX port on 127.0.0.1 (0: any free port).
	Port int
	// VCenterPort is the simulated vCenter's port on 127.0.0.1 (0: any).
	VCenterPort int
	// Output is the NDJSON file the collector writes; empty: flows.ndjson
	// in a new temporary directory, kept after the run.
	Output string
	// Pcap, when set, also writes the mirrored frames to this pcap file,
	// for `spanflow exporter run --pcap`.
	Pcap string
	// ESURL, when set, also indexes the flows into that Elasticsearch.
	ESURL string
	// KibanaURL is only printed in the Kibana steps.
	KibanaURL string
	// Seed makes the traffic; the same seed, rate and duration give the
	// same sessions.
	Seed uint64
	// ObservationDomain of the exporter's IPFIX messages; 0 takes the start
	// time in seconds, so each run's documents can be told apart.
	ObservationDomain uint32
	// ActiveTimeout and IdleTimeout of the exporter's flow table, short so
	// that flows arrive while the demo runs.
	ActiveTimeout, IdleTimeout time.Duration
}

// DefaultConfiguration is a 15-second run at 2,000 packets/s.
func DefaultConfiguration() Configuration {
	return Configuration{
		Duration:      15 * time.Second,
		Rate:          2000,
		Port:          14739,
		VCenterPort:   18989,
		KibanaURL:     "http://127.0.0.1:5601",
		Seed:          1,
		ActiveTimeout: 10 * time.Second,
		IdleTimeout:   3 * time.Second,
	}
}

// Limits of the settings.
const (
	MinDuration = 3 * time.Second
	MaxRate     = 20000
)

// Validate checks the settings; each error names the flag to change.
func (c Configuration) Validate() error {
	var errs []error
	if c.Duration < MinDuration || c.Duration > time.Hour {
		errs = append(errs, fmt.Errorf("--duration %s: must be between %s and 1h", c.Duration, MinDuration))
	}
	if c.Rate < 10 || c.Rate > MaxRate {
		errs = append(errs, fmt.Errorf("--rate %d: must be between 10 and %d packets/s", c.Rate, MaxRate))
	}
	for flag, p := range map[string]int{"--port": c.Port, "--vcenter-port": c.VCenterPort} {
		if p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("%s %d: not a port number", flag, p))
		}
	}
	if c.Port != 0 && c.Port == c.VCenterPort {
		// Different protocols, but one port is less confusing to debug.
		errs = append(errs, errors.New("--port and --vcenter-port must differ"))
	}
	if c.ESURL != "" {
		if err := esconn.CheckURL(c.ESURL); err != nil {
			errs = append(errs, fmt.Errorf("--es-url: %w", err))
		}
	}
	if c.ActiveTimeout < time.Second || c.IdleTimeout < time.Second {
		errs = append(errs, errors.New("exporter timeouts must be at least 1s"))
	}
	return errors.Join(errs...)
}
