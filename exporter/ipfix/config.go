package ipfix

import (
	"errors"
	"fmt"
	"time"
)

// Configuration of the encoder.
type Configuration struct {
	// ObservationDomain is the observation domain id of every message.
	ObservationDomain uint32
	// MTU is the path MTU to the collectors; a message is at most MTU-48
	// bytes, so that with IPv6 and UDP headers it fits in one packet.
	MTU int
	// TemplateRefreshInterval and TemplateRefreshMessages re-send the
	// templates (and the statistics options record) when that much export
	// time has passed or that many messages were sent (RFC 7011 §8.4: over
	// UDP, templates must be repeated).
	TemplateRefreshInterval time.Duration
	TemplateRefreshMessages int
	// ProbeName and PacketsURL, when either is set, are sent with the
	// templates in an identity options record scoped to the observation
	// domain (observationDomainName and spanflow's packetsURL), so that the
	// collector can say which probe's packet ring holds a flow's packets.
	ProbeName, PacketsURL string
}

// DefaultConfiguration returns the defaults.
func DefaultConfiguration() Configuration {
	return Configuration{MTU: 1400, TemplateRefreshInterval: time.Minute, TemplateRefreshMessages: 100}
}

// headroom is what the IPv6 and UDP headers take from the MTU.
const headroom = 48

// Validate checks the configuration.
func (c Configuration) Validate() error {
	var errs []error
	if c.MTU < 576 || c.MTU > 65535 {
		errs = append(errs, fmt.Errorf("mtu %d: must be between 576 and 65535", c.MTU))
	}
	if c.TemplateRefreshInterval < time.Second {
		errs = append(errs, fmt.Errorf("template refresh interval %s: must be at least 1s", c.TemplateRefreshInterval))
	}
	for name, v := range map[string]string{"probe-name": c.ProbeName, "packet-ring-url": c.PacketsURL} {
		if len(v) > maxIdentity {
			errs = append(errs, fmt.Errorf("%s: at most %d bytes, not %d", name, maxIdentity, len(v)))
		}
	}
	if c.TemplateRefreshMessages < 1 {
		errs = append(errs, fmt.Errorf("template refresh messages %d: must be at least 1", c.TemplateRefreshMessages))
	}
	return errors.Join(errs...)
}
