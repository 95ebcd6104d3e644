package networks

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"sort"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/yamlconf"
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
	return ReadFile(c.File)
}

// ReadFile reads the networks file at path. Every problem comes back, one
// line each (errors.Join) as "PATH:LINE: problem".
func ReadFile(path string) ([]Network, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read networks file: %w", err)
	}
	nets, err := parse(data)
	return nets, yamlconf.InFile(path, err)
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
//
// Every problem comes back, each a *yamlconf.Error with its line.
func Parse(r io.Reader) ([]Network, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	return parse(data)
}

func parse(data []byte) ([]Network, error) {
	var raw map[string]Network
	err := yamlconf.Decode(data, &raw)
	var ye *yamlconf.Error
	if err != nil && !errors.As(err, &ye) {
		return nil, err // not YAML
	}
	errs := yamlconf.Unjoin(err)
	lines, _ := yamlconf.KeyLinesOf(data) // the file is YAML
	out := make([]Network, 0, len(raw))
	key := map[netip.Prefix]string{} // as the file writes it
	for cidr, n := range raw {
		bad := func(format string, args ...any) {
			errs = append(errs, &yamlconf.Error{Line: lines[cidr], Msg: fmt.Sprintf(format, args...)})
		}
		p, err := netip.ParsePrefix(cidr)
		switch {
		case err != nil:
			bad("%s is not a network prefix (write ADDRESS/LENGTH, such as 10.0.0.0/8 or 2001:db8::/32)", cidr)
			continue
		case p.Masked() != p:
			bad("%s has host bits set (write %s)", cidr, p.Masked())
			continue
		}
		n.Prefix = p
		key[p] = cidr
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Prefix.String() < out[j].Prefix.String() })
	// The same prefix written two ways (10.0.0.0/8, ::ffff:10.0.0.0/104).
	first := map[netip.Prefix]netip.Prefix{}
	for _, n := range out {
		p := canonical(n.Prefix)
		if f, ok := first[p]; ok {
			errs = append(errs, &yamlconf.Error{Line: lines[key[n.Prefix]],
				Msg: fmt.Sprintf("%s is listed twice (also as %s at line %d): keep one", key[n.Prefix], key[f], lines[key[f]])})
			continue
		}
		first[p] = n.Prefix
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b error) int { return lineOf(a) - lineOf(b) })
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func lineOf(err error) int {
	var ye *yamlconf.Error
	if errors.As(err, &ye) {
		return ye.Line
	}
	return 0
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
