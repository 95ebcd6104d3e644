// Package networks is the collector's networks enrichment: a YAML file maps
// CIDRs to a name, site, role and project for what vCenter does not know
// (physical servers, the internet, load balancers), and, with the vCenter
// inventory, it tells each flow's locality (internal/external) and
// direction (east-west/north-south/unknown); flows to multicast groups and
// on the link (link-local addresses, broadcast) are neither: their
// locality and direction are multicast or link-local.
//
// It runs after the vsphere enricher: an end that enricher found in the
// inventory (Record.Src/Dst.VSphere set) is internal whatever the file says.
package networks

import (
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

// Values of flow.Record.Locality and Direction.
const (
	Internal   = "internal"
	External   = "external"
	EastWest   = "east-west"
	NorthSouth = "north-south"
	Unknown    = "unknown"
	// LinkLocal and Multicast are both the locality and the direction of
	// flows that never cross a router towards a host (link-local
	// addresses, the limited broadcast) or go to a group: neither
	// east-west nor north-south traffic.
	LinkLocal = "link-local"
	Multicast = "multicast"
)

// Address ranges whose flows are LinkLocal or Multicast unless the networks
// file lists them (or a part of them): a listed network wins.
var (
	multicastRanges = []netip.Prefix{netip.MustParsePrefix("224.0.0.0/4"), netip.MustParsePrefix("ff00::/8")}
	linkLocalRanges = []netip.Prefix{netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("fe80::/10"),
		netip.MustParsePrefix("255.255.255.255/32")}
	multicastFirst = firstBytesOf(multicastRanges)
	linkLocalFirst = firstBytesOf(linkLocalRanges)
)

// firstBytes marks, per family, the first bytes of the addresses a list of
// ranges holds: in looks no further at an address whose first byte none
// of them has, most flows' addresses, and spares them a Contains per range.
type firstBytes struct{ v4, v6 [256]bool }

func firstBytesOf(ranges []netip.Prefix) *firstBytes {
	f := new(firstBytes)
	for _, r := range ranges {
		t := &f.v6
		if r.Addr().Is4() {
			t = &f.v4
		}
		span := 1 << (8 - min(r.Bits(), 8))
		base := int(r.Addr().AsSlice()[0]) &^ (span - 1)
		for i := base; i < base+span; i++ {
			t[i] = true
		}
	}
	return f
}

// Component holds the networks table; it has nothing to start or stop.
type Component struct {
	table                                             *Table
	eastWest, northSouth, other, linkLocal, multicast prometheus.Counter
}

// New reads the networks (file or defaults) and builds the lookup table.
func New(r *reporter.Reporter, config Configuration) (*Component, error) {
	nets, err := config.load()
	if err != nil {
		return nil, err
	}
	f := r.Factory("networks")
	f.GaugeFunc("networks", "Networks in the networks table (file or defaults).", func() float64 { return float64(len(nets)) })
	flows := f.CounterVec("flows_total", "Flows by the direction the networks table and inventory gave them.", "direction")
	return &Component{table: NewTable(nets),
		eastWest: flows.WithLabelValues(EastWest), northSouth: flows.WithLabelValues(NorthSouth),
		other: flows.WithLabelValues(Unknown), linkLocal: flows.WithLabelValues(LinkLocal),
		multicast: flows.WithLabelValues(Multicast)}, nil
}

// in says whether addr lies in one of ranges and no network of the table
// listed within that range holds it (a broader one, such as ::/0 external,
// does not count).
func (c *Component) in(addr netip.Addr, ranges []netip.Prefix, first *firstBytes) bool {
	addr = addr.Unmap()
	switch {
	case addr.Is4():
		if !first.v4[addr.As4()[0]] {
			return false
		}
	case addr.Is6():
		if !first.v6[addr.As16()[0]] {
			return false
		}
	}
	for _, r := range ranges {
		if !r.Contains(addr) {
			continue
		}
		n, ok := c.table.Lookup(addr)
		listed := ok && n.Prefix.Bits() >= r.Bits() && r.Contains(n.Prefix.Addr().Unmap())
		return !listed
	}
	return false
}

// scope is Multicast for a flow to a multicast group, LinkLocal for one
// from or to a link-local address or to the limited broadcast, else "".
func (c *Component) scope(r *flow.Record) string {
	switch {
	case c.in(r.DstAddr, multicastRanges, multicastFirst):
		return Multicast
	case c.in(r.DstAddr, linkLocalRanges, linkLocalFirst) || c.in(r.SrcAddr, linkLocalRanges, linkLocalFirst):
		return LinkLocal
	}
	return ""
}

// Lookup returns the most specific network holding addr.
func (c *Component) Lookup(addr netip.Addr) (*Network, bool) { return c.table.Lookup(addr) }

// Table is the lookup table.
func (c *Component) Table() *Table { return c.table }

// side says whether one end is internal, external, or cannot be told (no
// address and no inventory entry).
type side uint8

const (
	sideUnknown side = iota
	sideInternal
	sideExternal
)

func (c *Component) side(addr netip.Addr, inInventory bool, info **flow.NetworkInfo) side {
	if !addr.IsValid() {
		if inInventory {
			return sideInternal
		}
		return sideUnknown
	}
	n, ok := c.table.Lookup(addr)
	if ok {
		*info = n.Info
	}
	if inInventory || (ok && !n.External) {
		return sideInternal
	}
	return sideExternal
}

// Enrich sets each end's network (name, site, role, project) from the
// file, and r.Locality and r.Direction: multicast to a multicast group,
// link-local from or to a link-local address or to 255.255.255.255 (unless
// the file lists that range or a part of it), else east-west when both
// ends are internal, north-south when exactly one is, unknown otherwise
// (transit traffic, or an end without an address).
func (c *Component) Enrich(r *flow.Record) {
	src := c.side(r.SrcAddr, r.Src.VSphere != nil, &r.Src.Network)
	dst := c.side(r.DstAddr, r.Dst.VSphere != nil, &r.Dst.Network)
	switch scope := c.scope(r); {
	case scope == Multicast:
		r.Locality, r.Direction = Multicast, Multicast
		c.multicast.Inc()
	case scope == LinkLocal:
		r.Locality, r.Direction = LinkLocal, LinkLocal
		c.linkLocal.Inc()
	case src == sideInternal && dst == sideInternal:
		r.Locality, r.Direction = Internal, EastWest
		c.eastWest.Inc()
	case src == sideUnknown || dst == sideUnknown:
		r.Locality, r.Direction = "", Unknown
		c.other.Inc()
	case src == sideInternal || dst == sideInternal:
		r.Locality, r.Direction = External, NorthSouth
		c.northSouth.Inc()
	default:
		r.Locality, r.Direction = External, Unknown
		c.other.Inc()
	}
}
