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
	// Interfaces are the live capture's interfaces, whose index the
	// exporter gives their frames' records as ingressInterface (unless a
	// frame brought its own, as ERSPAN II does). The encoder names each,
	// with the templates, in an interface options record
	// (ingressInterface, interfaceName) that collectors take for the
	// interface's name: spanflow's collector then has a line (exporter
	// and interface) for the probe's flows.
	Interfaces []Interface
	// ObservationPoints says that records carry an observation point
	// (a live capture: each interface is one): the TCP and plain templates
	// then keep observationPointId, so that records with nothing else of
	// the full template's (no VLAN, no tunnel) go in them.
	ObservationPoints bool
}

// Interface is a capture interface: its index and name on the probe.
type Interface struct {
	Index uint32
	Name  string
}

// MaxInterfaces bounds the interfaces named in the options records, so
// that they fit in a message with the templates (an exporter capturing on
// more names the first ones; the others' records still carry their index).
const MaxInterfaces = 16

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
	if len(c.Interfaces) > MaxInterfaces {
		errs = append(errs, fmt.Errorf("%d capture interfaces: at most %d are named in the options records", len(c.Interfaces), MaxInterfaces))
	}
	for _, i := range c.Interfaces {
		if i.Index == 0 || i.Name == "" || len(i.Name) > 64 {
			errs = append(errs, fmt.Errorf("interface %q (index %d): want an index and a name of 1 to 64 bytes", i.Name, i.Index))
		}
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
