package demo

import (
	"fmt"
	"net/netip"

	"github.com/spanflow/spanflow/enrich/networks"
)

// The estate the demo's simulated vCenter holds, and the addresses of the
// traffic around it. Everything the demo checks itself against (names,
// projects, hosts, lines) is defined here once.

// Project is a tenant network: a distributed port group with its VLAN. A
// project's name reaches the flows through a vSphere tag (category
// "project") when Tagged, else through the port group naming rule.
type Project struct {
	Name      string
	PortGroup string
	VLAN      uint16
	Tagged    bool
}

// Host is an ESXi host. Its uplink is mirrored to the probe as an ERSPAN II
// session; the uplink is a "line" of the demo's exporter.
type Host struct {
	Name    string
	Cluster string
	Session uint16 // ERSPAN session id
	IfIndex uint32 // ERSPAN port index: the line's interface id
	Vmk     netip.Addr
}

// LineName is the interface name the collector is told for the host's uplink.
func (h *Host) LineName() string { return h.Name + " vmnic0" }

// VM is a virtual machine of the estate.
type VM struct {
	Name    string
	Project *Project
	Host    *Host
	IPv4    netip.Addr
	IPv6    netip.Addr // invalid when the VM has no IPv6 address
	MAC     [6]byte
}

// MACString is the MAC as vCenter writes it.
func (v *VM) MACString() string {
	m := v.MAC
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

// Estate is the simulated data center and the peers outside it.
type Estate struct {
	Datacenter string
	Clusters   []string
	Hosts      []*Host
	Projects   []*Project
	VMs        []*VM
	// ProjectRules as the vsphere enricher takes them.
	ProjectRules []string
	// Networks is the networks table the collector is given.
	Networks []networks.Network

	// Peers outside vCenter.
	InternetClients []netip.Addr // north-south clients of the portal (IPv4 and IPv6)
	Partner         netip.Addr   // payments' card network API (external, listed)
	ObjectStore     netip.Addr   // batch's backup target (external, unlisted)
	DNS, NTP        netip.Addr   // data center services (internal, not VMs)
	GatewayMAC      [6]byte      // the router's MAC, seen on routed traffic
	ProbeAddr       netip.Addr   // where the hosts send ERSPAN
	ProbeMAC        [6]byte

	byAddr map[netip.Addr]*VM
}

// VMByAddr returns the VM holding the address, or nil.
func (e *Estate) VMByAddr(a netip.Addr) *VM { return e.byAddr[a.Unmap()] }

// Internal reports whether an address is inside the data center: a VM's,
// or one the networks table lists as not external.
func (e *Estate) Internal(a netip.Addr) bool {
	if e.VMByAddr(a) != nil {
		return true
	}
	best := -1
	internal := false
	for _, n := range e.Networks {
		if n.Prefix.Contains(a.Unmap()) && n.Prefix.Bits() > best {
			best, internal = n.Prefix.Bits(), !n.External
		}
	}
	return internal
}

// HostByIfIndex returns the host whose uplink has that interface id.
func (e *Estate) HostByIfIndex(i uint32) *Host {
	for _, h := range e.Hosts {
		if h.IfIndex == i {
			return h
		}
	}
	return nil
}

// vmRole describes the VMs of one role in a project.
type vmRole struct {
	prefix  string
	count   int
	firstIP int // last octet of the first VM's address
	v6      bool
}

// DefaultEstate is two clusters of six hosts in datacenter par1, eighteen
// VMs in three projects (payments, portal, batch), and their peers.
func DefaultEstate() *Estate {
	e := &Estate{
		Datacenter: "par1",
		Clusters:   []string{"prod-a", "prod-b"},
		// Tag first; the portal's VMs carry no tag and get their project
		// from the port group's name.
		ProjectRules: []string{"tag:project", `portgroup:^dvpg-([a-z]+)-[0-9]+$`},
		Partner:      netip.MustParseAddr("192.0.2.80"),
		ObjectStore:  netip.MustParseAddr("203.0.113.200"),
		DNS:          netip.MustParseAddr("10.0.0.53"),
		NTP:          netip.MustParseAddr("10.0.0.123"),
		GatewayMAC:   [6]byte{0x00, 0x00, 0x0c, 0x9f, 0xf0, 0x01},
		ProbeAddr:    netip.MustParseAddr("10.0.1.250"),
		ProbeMAC:     [6]byte{0x00, 0x50, 0x56, 0x0f, 0x00, 0xfa},
		byAddr:       map[netip.Addr]*VM{},
	}
	for c, cluster := range e.Clusters {
		for i := 1; i <= 6; i++ {
			n := c*6 + i
			e.Hosts = append(e.Hosts, &Host{
				Name:    fmt.Sprintf("esx-%c%02d", 'a'+c, i),
				Cluster: cluster,
				Session: uint16(n),
				IfIndex: uint32(1000 + n),
				Vmk:     netip.AddrFrom4([4]byte{10, 0, 1, byte(n)}),
			})
		}
	}
	roles := map[string][]vmRole{
		"payments": {{"pay-api", 3, 11, true}, {"pay-db", 2, 21, false}, {"pay-cache", 1, 31, false}},
		"portal":   {{"web", 4, 11, true}, {"portal-app", 2, 21, true}},
		"batch":    {{"batch-sched", 1, 5, false}, {"batch-worker", 4, 11, false}, {"etl", 1, 21, false}},
	}
	for _, p := range []struct {
		name   string
		vlan   uint16
		tagged bool
	}{{"payments", 110, true}, {"portal", 120, false}, {"batch", 130, true}} {
		proj := &Project{Name: p.name, PortGroup: fmt.Sprintf("dvpg-%s-%d", p.name, p.vlan), VLAN: p.vlan, Tagged: p.tagged}
		e.Projects = append(e.Projects, proj)
		for _, r := range roles[p.name] {
			for j := 0; j < r.count; j++ {
				octet := byte(r.firstIP + j)
				vm := &VM{
					Name:    fmt.Sprintf("%s-%02d", r.prefix, j+1),
					Project: proj,
					IPv4:    netip.AddrFrom4([4]byte{10, 10, byte(p.vlan), octet}),
					MAC:     [6]byte{0x00, 0x50, 0x56, 0x0a, byte(p.vlan), octet},
				}
				if r.v6 {
					vm.IPv6 = netip.MustParseAddr(fmt.Sprintf("fd00:10:%d::%x", p.vlan, octet))
				}
				// Spread the VMs over the hosts: VM n runs on host n (mod 12),
				// alternating clusters.
				n := len(e.VMs)
				vm.Host = e.Hosts[(n%2*6+n/2)%len(e.Hosts)]
				e.VMs = append(e.VMs, vm)
				e.byAddr[vm.IPv4] = vm
				if vm.IPv6.IsValid() {
					e.byAddr[vm.IPv6] = vm
				}
			}
		}
	}
	for i := 0; i < 48; i++ {
		e.InternetClients = append(e.InternetClients, netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i*5)}))
	}
	for i := 0; i < 24; i++ {
		e.InternetClients = append(e.InternetClients, netip.AddrFrom4([4]byte{203, 0, 113, byte(20 + i*7)}))
	}
	for i := 0; i < 24; i++ {
		e.InternetClients = append(e.InternetClients, netip.MustParseAddr(fmt.Sprintf("2001:db8:beef:%x::%x", i%4+1, 0x100+i*17)))
	}
	e.Networks = []networks.Network{
		{Prefix: netip.MustParsePrefix("10.10.0.0/16"), Name: "par1-vm", Site: "par1", Role: "vm"},
		{Prefix: netip.MustParsePrefix("fd00:10::/32"), Name: "par1-vm-v6", Site: "par1", Role: "vm"},
		{Prefix: netip.MustParsePrefix("10.0.0.0/24"), Name: "par1-services", Site: "par1", Role: "dns-ntp"},
		{Prefix: netip.MustParsePrefix("10.0.1.0/24"), Name: "par1-vmkernel", Site: "par1", Role: "esxi"},
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Name: "partner-cardnet", Role: "partner", External: true},
	}
	return e
}
