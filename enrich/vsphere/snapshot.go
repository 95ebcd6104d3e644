package vsphere

import (
	"bytes"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/spanflow/spanflow/internal/flow"
)

// VM is what the inventory knows about one virtual machine: the listing that
// `spanflow vsphere inventory` prints, and the source of the lookup tables.
type VM struct {
	Name       string `json:"name"`
	UUID       string `json:"uuid"`
	PowerState string `json:"power_state"`
	Host       string `json:"host,omitempty"`
	Cluster    string `json:"cluster,omitempty"`
	Datacenter string `json:"datacenter,omitempty"`
	Folder     string `json:"folder,omitempty"` // path below the datacenter's VM folder
	Project    string `json:"project,omitempty"`
	NICs       []NIC  `json:"nics"`
}

// NIC is one virtual network card.
type NIC struct {
	MAC       flow.MAC     `json:"-"`
	MACString string       `json:"mac"`
	IPs       []netip.Addr `json:"ips"`
	Network   string       `json:"network,omitempty"` // port group or distributed port group
	VLAN      uint16       `json:"vlan,omitempty"`
	VNI       uint32       `json:"vni,omitempty"`
	Project   string       `json:"project,omitempty"` // may differ per NIC with a port group rule
}

// candidate is one (VM, NIC) an address or MAC may belong to.
type candidate struct {
	vs   *flow.VSphere
	vlan uint16
	vni  uint32
	mac  flow.MAC
}

// span locates an address's candidates in Snapshot.cands. Most addresses
// have one, kept in the span itself to spare the hot path a memory access.
type span struct {
	one      *flow.VSphere
	first, n uint32
}

// Snapshot is an immutable view of the inventory. Lookups read it without
// locks or allocations; the collector goroutine builds a new one and swaps it
// in atomically.
type Snapshot struct {
	byAddr map[[16]byte]span // IPv4 as IPv4-mapped IPv6: hashing 16 bytes beats hashing a netip.Addr
	byMAC  map[flow.MAC]span
	cands  []candidate
	vms    []VM
	// Built is when the snapshot was built from vCenter data.
	Built time.Time
}

// Result says how a lookup ended.
type Result uint8

// Lookup results.
const (
	Unknown   Result = iota // no VM has the address
	Found                   // one VM (NIC) has it, or the VLAN/VNI told which
	Ambiguous               // several VMs have it and the VLAN/VNI does not tell which
)

// VMs lists the inventory, sorted by VM name. The caller must not modify it.
func (s *Snapshot) VMs() []VM {
	if s == nil {
		return nil
	}
	return s.vms
}

// Lookup finds the VM end behind an address (or, when the address is unknown
// or invalid, a MAC). vlan and vni tell apart the VMs that share an address in
// different project networks; 0 means not known. It does not allocate; the
// returned value is shared and must not be modified.
func (s *Snapshot) Lookup(addr netip.Addr, mac flow.MAC, vlan uint16, vni uint32) (*flow.VSphere, Result) {
	if s == nil {
		return nil, Unknown
	}
	if addr.IsValid() {
		if sp, ok := s.byAddr[addr.As16()]; ok {
			return s.pick(sp, vlan, vni, mac)
		}
	}
	if !mac.IsZero() {
		if sp, ok := s.byMAC[mac]; ok {
			return s.pick(sp, vlan, vni, mac)
		}
	}
	return nil, Unknown
}

func (s *Snapshot) pick(sp span, vlan uint16, vni uint32, mac flow.MAC) (*flow.VSphere, Result) {
	if sp.n == 1 {
		return sp.one, Found
	}
	cands := s.cands[sp.first : sp.first+sp.n]
	// The VNI is the more specific; a segment ID that is no VNI (a GRE key)
	// matches nothing and the VLAN decides.
	if vni != 0 {
		if vs := only(cands, func(c *candidate) bool { return c.vni == vni }); vs != nil {
			return vs, Found
		}
	}
	if vlan != 0 {
		if vs := only(cands, func(c *candidate) bool { return c.vlan == vlan }); vs != nil {
			return vs, Found
		}
	}
	// The end's MAC names the NIC when the flow carries the VM's own (a
	// mirrored vSwitch port, not a routed hop): without a VLAN, or with the
	// same VLAN id in two sites, it still tells two projects' VMs apart.
	if !mac.IsZero() {
		if vs := only(cands, func(c *candidate) bool { return c.mac == mac }); vs != nil {
			return vs, Found
		}
	}
	// The same VM NIC listed twice is not ambiguous.
	if vs := only(cands, func(*candidate) bool { return true }); vs != nil {
		return vs, Found
	}
	return nil, Ambiguous
}

// only returns the one VM NIC among the candidates that match, or nil when
// none or several do.
func only(cands []candidate, match func(*candidate) bool) *flow.VSphere {
	var found *flow.VSphere
	for i := range cands {
		if !match(&cands[i]) {
			continue
		}
		if found != nil && found != cands[i].vs {
			return nil
		}
		found = cands[i].vs
	}
	return found
}

// Len is the number of distinct addresses and MACs indexed.
func (s *Snapshot) Len() (addrs, macs int) {
	if s == nil {
		return 0, 0
	}
	return len(s.byAddr), len(s.byMAC)
}

// NewSnapshot builds a snapshot from a VM listing: the inventory builds one
// from vCenter data, and tests or benchmarks from a listing of their own.
// Only powered-on VMs are indexed (others cannot send traffic and would
// only make addresses ambiguous), but every VM is listed. The snapshot takes
// vms over (it sorts them by name): the caller must not use it afterwards.
func NewSnapshot(vms []VM, built time.Time) *Snapshot {
	sort.Slice(vms, func(i, j int) bool {
		if vms[i].Name != vms[j].Name {
			return vms[i].Name < vms[j].Name
		}
		return vms[i].UUID < vms[j].UUID
	})
	var byAddr []keyed[[16]byte]
	var byMAC []keyed[flow.MAC]
	for i := range vms {
		vm := &vms[i]
		if vm.PowerState != "poweredOn" {
			continue
		}
		for j := range vm.NICs {
			nic := &vm.NICs[j]
			project := nic.Project
			if project == "" {
				project = vm.Project
			}
			c := candidate{vlan: nic.VLAN, vni: nic.VNI, mac: nic.MAC, vs: &flow.VSphere{
				VMName: vm.Name, VMUUID: vm.UUID, HostName: vm.Host, ClusterName: vm.Cluster,
				DatacenterName: vm.Datacenter, NetworkName: nic.Network, Project: project,
			}}
			for _, ip := range nic.IPs {
				byAddr = append(byAddr, keyed[[16]byte]{ip.As16(), c})
			}
			if !nic.MAC.IsZero() {
				byMAC = append(byMAC, keyed[flow.MAC]{nic.MAC, c})
			}
		}
	}
	s := &Snapshot{
		cands: make([]candidate, 0, len(byAddr)+len(byMAC)),
		vms:   vms,
		Built: built,
	}
	s.byAddr = spans(byAddr, func(a, b [16]byte) int { return bytes.Compare(a[:], b[:]) }, &s.cands)
	s.byMAC = spans(byMAC, func(a, b flow.MAC) int { return bytes.Compare(a[:], b[:]) }, &s.cands)
	return s
}

// keyed is a candidate under one of its keys (an address or a MAC).
type keyed[K comparable] struct {
	key K
	c   candidate
}

// spans groups the entries by key, appending each group's candidates to
// cands so that the key's span covers them. The entries are sorted (stably,
// by compare) to bring equal keys together.
func spans[K comparable](entries []keyed[K], compare func(a, b K) int, cands *[]candidate) map[K]span {
	slices.SortStableFunc(entries, func(a, b keyed[K]) int { return compare(a.key, b.key) })
	out := make(map[K]span, len(entries))
	for i := 0; i < len(entries); {
		j := i
		for j < len(entries) && entries[j].key == entries[i].key {
			*cands = append(*cands, entries[j].c)
			j++
		}
		out[entries[i].key] = span{one: entries[i].c.vs, first: uint32(len(*cands) - (j - i)), n: uint32(j - i)}
		i = j
	}
	return out
}
