package networks

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/spanflow/spanflow/internal/flow"
	"io"
	"net/netip"
	"os"
	"sort"

	"gopkg.in/yaml.v3"
)

// Network is what the networks file says about one prefix.
type Network struct {
	Prefix  netip.Prefix `yaml:"-" json:"prefix"`
	Name    string       `yaml:"name" json:"name,omitempty"`
	Site    string       `yaml:"site" json:"site,omitempty"`
	Role    string       `yaml:"role" json:"role,omitempty"`
	Project string       `yaml:"project" json:"project,omitempty"`
	// External marks a listed network as outside (a partner, the internet
	// behind a load balancer): flows to it are north-south.
	External bool `yaml:"external" json:"external,omitempty"`
	// Info is what flows carry of this network (source/destination.network.*);
	// nil when the file names nothing. Set by NewTable.
	Info *flow.NetworkInfo `yaml:"-" json:"-"`
}

// Configuration says where the networks come from.
type Configuration struct {
	// File is a YAML map from CIDR to network; empty uses DefaultNetworks.
	File string
	// Networks, when not nil, is used instead of File (tests, embedding).
	Networks []Network
}

// DefaultConfiguration reads no file: DefaultNetworks apply.
func DefaultConfiguration() Configuration { return Configuration{} }

// DefaultNetworks are internal when no networks file is given: private and
// unique-local ranges, shared address space and loopback. Link-local
// ranges are not among them: their flows are link-local (see Enrich),
// unless a file lists them.
func DefaultNetworks() []Network {
	var out []Network
	for _, p := range []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
		"127.0.0.0/8", "fc00::/7", "::1/128"} {
		out = append(out, Network{Prefix: netip.MustParsePrefix(p), Name: "private"})
	}
	return out
}

// Validate reads the file when one is set, so a bad file fails at startup.
func (c Configuration) Validate() error {
	_, err := c.load()
	return err
}

func (c Configuration) load() ([]Network, error) {
	switch {
	case c.Networks != nil:
		return c.Networks, checkDuplicates(c.Networks)
	case c.File == "":
		return DefaultNetworks(), nil
	}
	f, err := os.Open(c.File)
	if err != nil {
		return nil, fmt.Errorf("read networks file: %w", err)
	}
	defer f.Close()
	nets, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("networks file %s: %w", c.File, err)
	}
	return nets, nil
}

// Parse reads a networks file:
//
//	10.1.0.0/16:
//	  name: dc1-payments
//	  site: par1
//	  role: servers
//	  project: payments
//	203.0.113.0/24:
//	  name: partner-x
//	  external: true
func Parse(r io.Reader) ([]Network, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var raw map[string]Network
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	out := make([]Network, 0, len(raw))
	for cidr, n := range raw {
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			return nil, fmt.Errorf("network %q: %w", cidr, err)
		}
		if p.Masked() != p {
			return nil, fmt.Errorf("network %q has host bits set (did you mean %s?)", cidr, p.Masked())
		}
		n.Prefix = p
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Prefix.String() < out[j].Prefix.String() })
	return out, checkDuplicates(out)
}

func checkDuplicates(nets []Network) error {
	seen := make(map[netip.Prefix]bool, len(nets))
	for _, n := range nets {
		p := canonical(n.Prefix)
		if !p.IsValid() {
			return fmt.Errorf("network %s: invalid prefix", n.Prefix)
		}
		if seen[p] {
			return fmt.Errorf("network %s is listed twice", n.Prefix)
		}
		seen[p] = true
	}
	return nil
}

// canonical maps IPv4 prefixes into IPv4-mapped IPv6 space so one table
// holds both families.
func canonical(p netip.Prefix) netip.Prefix {
	if !p.IsValid() {
		return p
	}
	if p.Addr().Is4() {
		return netip.PrefixFrom(netip.AddrFrom16(p.Addr().As16()), p.Bits()+96)
	}
	return p.Masked()
}
