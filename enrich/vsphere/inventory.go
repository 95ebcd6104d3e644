package vsphere

import (
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/spanflow/spanflow/internal/flow"
)

// The properties followed per managed object type. Every name here is
// handled by model.apply; anything else vCenter reports (a nested path into
// one of them) makes the object be read again whole.
var followed = map[string][]string{
	"VirtualMachine":              {"name", "config.instanceUuid", "config.template", "config.hardware.device", "runtime.host", "runtime.powerState", "guest.net", "guest.ipAddress", "parent", "customValue"},
	"HostSystem":                  {"name", "parent", "config.network.portgroup"},
	"ClusterComputeResource":      {"name", "parent"},
	"ComputeResource":             {"name", "parent"},
	"Datacenter":                  {"name", "parent", "vmFolder"},
	"Folder":                      {"name", "parent"},
	"Network":                     {"name"},
	"OpaqueNetwork":               {"name"},
	"DistributedVirtualPortgroup": {"name", "key", "config.defaultPortConfig"},
	"CustomFieldsManager":         {"field"},
}

// viewTypes are the inventory types the container view holds.
var viewTypes = []string{"VirtualMachine", "HostSystem", "ClusterComputeResource", "ComputeResource",
	"Datacenter", "Folder", "Network", "OpaqueNetwork", "DistributedVirtualPortgroup"}

type ref = types.ManagedObjectReference

type vmObj struct {
	name, uuid   string
	template     bool
	host, parent ref
	power        string
	devices      []types.BaseVirtualDevice
	guestNet     []types.GuestNicInfo
	guestIP      string
	custom       map[int32]string
}

type hostObj struct {
	name   string
	parent ref
	vlans  map[string]uint16 // standard port group name -> VLAN
}

type entityObj struct { // cluster, compute resource, folder, datacenter
	name     string
	parent   ref
	vmFolder ref // datacenters only
}

type netObj struct {
	name string
	key  string // distributed port group key
	vlan uint16
	vni  uint32 // overlay (NSX) port groups that report it
	dv   bool
}

// model is the inventory as vCenter last described it. Only the collector
// goroutine changes it, under Component.mu; snapshots are built from it.
type model struct {
	vms      map[ref]*vmObj
	hosts    map[ref]*hostObj
	entities map[ref]*entityObj
	nets     map[ref]*netObj
	fields   map[int32]string             // custom attribute key -> name
	tagRules map[string]map[string]string // tag category -> VM moref value -> tag name
}

func newModel() *model {
	return &model{vms: map[ref]*vmObj{}, hosts: map[ref]*hostObj{}, entities: map[ref]*entityObj{},
		nets: map[ref]*netObj{}, fields: map[int32]string{}, tagRules: map[string]map[string]string{}}
}

// apply folds one object update in. It returns false when a change named a
// path it does not handle whole: the caller reads that object again.
func (m *model) apply(u types.ObjectUpdate) bool {
	obj := u.Obj
	if u.Kind == types.ObjectUpdateKindLeave {
		delete(m.vms, obj)
		delete(m.hosts, obj)
		delete(m.entities, obj)
		delete(m.nets, obj)
		return true
	}
	complete := true
	for _, c := range u.ChangeSet {
		if !m.set(obj, c.Name, c.Val, c.Op == types.PropertyChangeOpRemove) {
			complete = false
		}
	}
	return complete
}

// applyContent folds in an object read whole (after a partial change).
func (m *model) applyContent(oc types.ObjectContent) {
	for _, p := range oc.PropSet {
		m.set(oc.Obj, p.Name, p.Val, false)
	}
	for _, mp := range oc.MissingSet {
		m.set(oc.Obj, mp.Path, nil, true)
	}
}

// set assigns one property; it reports false for a path it does not know.
func (m *model) set(obj ref, name string, val any, remove bool) bool {
	if remove {
		val = nil
	}
	switch obj.Type {
	case "VirtualMachine":
		vm := m.vms[obj]
		if vm == nil {
			vm = &vmObj{}
			m.vms[obj] = vm
		}
		switch name {
		case "name":
			vm.name, _ = val.(string)
		case "config.instanceUuid":
			vm.uuid, _ = val.(string)
		case "config.template":
			vm.template, _ = val.(bool)
		case "config.hardware.device":
			// Keep the network cards only: disks, controllers and the rest
			// would multiply the memory a large inventory takes.
			a, _ := val.(types.ArrayOfVirtualDevice)
			vm.devices = vm.devices[:0]
			for _, d := range a.VirtualDevice {
				if _, ok := d.(types.BaseVirtualEthernetCard); ok {
					vm.devices = append(vm.devices, d)
				}
			}
		case "runtime.host":
			vm.host = refOf(val)
		case "runtime.powerState":
			s, _ := val.(types.VirtualMachinePowerState)
			vm.power = string(s)
		case "guest.net":
			a, _ := val.(types.ArrayOfGuestNicInfo)
			vm.guestNet = a.GuestNicInfo
		case "guest.ipAddress":
			vm.guestIP, _ = val.(string)
		case "parent":
			vm.parent = refOf(val)
		case "customValue":
			a, _ := val.(types.ArrayOfCustomFieldValue)
			vm.custom = map[int32]string{}
			for _, cv := range a.CustomFieldValue {
				if s, ok := cv.(*types.CustomFieldStringValue); ok {
					vm.custom[s.Key] = s.Value
				}
			}
		default:
			return false
		}
	case "HostSystem":
		h := m.hosts[obj]
		if h == nil {
			h = &hostObj{}
			m.hosts[obj] = h
		}
		switch name {
		case "name":
			h.name, _ = val.(string)
		case "parent":
			h.parent = refOf(val)
		case "config.network.portgroup":
			a, _ := val.(types.ArrayOfHostPortGroup)
			h.vlans = make(map[string]uint16, len(a.HostPortGroup))
			for _, pg := range a.HostPortGroup {
				// 4095 is "all VLANs" (guest tagging): no one VLAN to match on.
				if pg.Spec.VlanId > 0 && pg.Spec.VlanId < 4095 {
					h.vlans[pg.Spec.Name] = uint16(pg.Spec.VlanId)
				}
			}
		default:
			return false
		}
	case "Network", "OpaqueNetwork", "DistributedVirtualPortgroup":
		n := m.nets[obj]
		if n == nil {
			n = &netObj{dv: obj.Type == "DistributedVirtualPortgroup"}
			m.nets[obj] = n
		}
		switch name {
		case "name":
			n.name, _ = val.(string)
		case "key":
			n.key, _ = val.(string)
		case "config.defaultPortConfig":
			n.vlan, n.vni = 0, 0
			var s *types.VMwareDVSPortSetting
			switch v := val.(type) {
			case types.VMwareDVSPortSetting:
				s = &v
			case *types.VMwareDVSPortSetting:
				s = v
			}
			if s != nil && s.VNI != nil && s.VNI.Value > 0 {
				n.vni = uint32(s.VNI.Value)
			}
			if s != nil && s.Vlan != nil {
				switch v := s.Vlan.(type) {
				case *types.VmwareDistributedVirtualSwitchVlanIdSpec:
					if v.VlanId > 0 && v.VlanId < 4095 {
						n.vlan = uint16(v.VlanId)
					}
				case *types.VmwareDistributedVirtualSwitchPvlanSpec:
					n.vlan = uint16(v.PvlanId)
				}
			}
		default:
			return false
		}
	case "CustomFieldsManager":
		if name != "field" {
			return false
		}
		a, _ := val.(types.ArrayOfCustomFieldDef)
		m.fields = make(map[int32]string, len(a.CustomFieldDef))
		for _, f := range a.CustomFieldDef {
			m.fields[f.Key] = f.Name
		}
	default: // folders, datacenters, clusters, compute resources
		e := m.entities[obj]
		if e == nil {
			e = &entityObj{}
			m.entities[obj] = e
		}
		switch name {
		case "name":
			e.name, _ = val.(string)
		case "parent":
			e.parent = refOf(val)
		case "vmFolder":
			e.vmFolder = refOf(val)
		default:
			return false
		}
	}
	return true
}

func refOf(v any) ref {
	switch r := v.(type) {
	case types.ManagedObjectReference:
		return r
	case *types.ManagedObjectReference:
		if r != nil {
			return *r
		}
	}
	return ref{}
}

// datacenterOf walks up from obj to its datacenter.
func (m *model) datacenterOf(obj ref) (ref, *entityObj) {
	for i := 0; i < 64 && obj.Value != ""; i++ { // bounded: a parent loop must not hang us
		e := m.entities[obj]
		if e == nil {
			return ref{}, nil
		}
		if obj.Type == "Datacenter" {
			return obj, e
		}
		obj = e.parent
	}
	return ref{}, nil
}

// folderPath lists the folder names from the datacenter's VM folder down to
// the folder holding the VM (excluded: the VM folder itself).
func (m *model) folderPath(parent ref, vmFolder ref) []string {
	var rev []string
	for i := 0; i < 64 && parent.Value != "" && parent.Type == "Folder" && parent != vmFolder; i++ {
		e := m.entities[parent]
		if e == nil {
			return nil
		}
		rev = append(rev, e.name)
		parent = e.parent
	}
	if parent != vmFolder {
		return nil // not under a datacenter's VM folder (a vApp, or a partial inventory)
	}
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	return rev
}

// build turns the model into VM listings with project names applied.
func (m *model) build(rules []ProjectRule, vnis map[string]uint32) []VM {
	dvpgByKey := make(map[string]*netObj)
	for _, n := range m.nets {
		if n.dv && n.key != "" {
			dvpgByKey[n.key] = n
		}
	}
	out := make([]VM, 0, len(m.vms))
	for moref, o := range m.vms {
		if o.template || o.name == "" {
			continue
		}
		vm := VM{Name: o.name, UUID: o.uuid, PowerState: o.power}
		host := m.hosts[o.host]
		var dc *entityObj
		if host != nil {
			vm.Host = host.name
			if cr := m.entities[host.parent]; cr != nil && host.parent.Type == "ClusterComputeResource" {
				vm.Cluster = cr.name
			}
			_, dc = m.datacenterOf(host.parent)
		}
		if dc == nil {
			_, dc = m.datacenterOf(o.parent)
		}
		var folders []string
		if dc != nil {
			vm.Datacenter = dc.name
			folders = m.folderPath(o.parent, dc.vmFolder)
			vm.Folder = strings.Join(folders, "/")
		}
		vm.NICs = m.nics(o, host, dvpgByKey, vnis)
		for i := range vm.NICs {
			vm.NICs[i].Project = m.project(rules, moref, o, folders, vm.NICs[i].Network)
		}
		if len(vm.NICs) > 0 {
			vm.Project = vm.NICs[0].Project
		} else {
			vm.Project = m.project(rules, moref, o, folders, "")
		}
		out = append(out, vm)
	}
	return out
}

func matchPortGroup(r ProjectRule, network string) string {
	if network == "" {
		return ""
	}
	m := r.Pattern.FindStringSubmatch(network)
	switch {
	case m == nil:
		return ""
	case len(m) > 1:
		return m[1]
	}
	return m[0]
}

// project applies the rules in order until one answers: tag, attribute and
// folder rules answer for the whole VM, port group rules for one NIC.
func (m *model) project(rules []ProjectRule, moref ref, o *vmObj, folders []string, network string) string {
	for _, r := range rules {
		var p string
		switch r.Kind {
		case RuleTag:
			p = m.tagRules[r.Name][moref.Value]
		case RuleAttribute:
			for key, name := range m.fields {
				if name == r.Name {
					p = o.custom[key]
					break
				}
			}
		case RuleFolder:
			switch {
			case r.Level > 0 && r.Level <= len(folders):
				p = folders[r.Level-1]
			case r.Level < 0 && -r.Level <= len(folders):
				p = folders[len(folders)+r.Level]
			}
		case RulePortGroup:
			p = matchPortGroup(r, network)
		}
		if p != "" {
			return p
		}
	}
	return ""
}

// nics joins the virtual ethernet cards (MAC, port group) with what the guest
// reports (addresses per card).
func (m *model) nics(o *vmObj, host *hostObj, dvpgByKey map[string]*netObj, vnis map[string]uint32) []NIC {
	var out []NIC
	byKey := map[int32]int{}
	for _, d := range o.devices {
		card, ok := d.(types.BaseVirtualEthernetCard)
		if !ok {
			continue
		}
		c := card.GetVirtualEthernetCard()
		nic := NIC{MAC: parseMAC(c.MacAddress)}
		switch b := c.Backing.(type) {
		case *types.VirtualEthernetCardNetworkBackingInfo:
			nic.Network = b.DeviceName
			if b.Network != nil {
				if n := m.nets[*b.Network]; n != nil {
					nic.Network = n.name
				}
			}
			if host != nil {
				nic.VLAN = host.vlans[nic.Network]
			}
		case *types.VirtualEthernetCardDistributedVirtualPortBackingInfo:
			if n := dvpgByKey[b.Port.PortgroupKey]; n != nil {
				nic.Network, nic.VLAN, nic.VNI = n.name, n.vlan, n.vni
			}
		}
		// Opaque (NSX) networks are named by the guest's report below.
		byKey[c.Key] = len(out)
		out = append(out, nic)
	}
	for _, g := range o.guestNet {
		i, ok := byKey[g.DeviceConfigId]
		if !ok {
			// A guest NIC without a virtual card (VPN, bridge in the guest):
			// keep its addresses under the name the guest reports.
			i = len(out)
			out = append(out, NIC{MAC: parseMAC(g.MacAddress), Network: g.Network})
		}
		nic := &out[i]
		if nic.Network == "" {
			nic.Network = g.Network
		}
		seen := map[netip.Addr]bool{}
		add := func(s string) {
			if a, err := netip.ParseAddr(s); err == nil {
				a = a.WithZone("").Unmap()
				if !seen[a] {
					seen[a] = true
					nic.IPs = append(nic.IPs, a)
				}
			}
		}
		for _, s := range g.IpAddress {
			add(s)
		}
		if g.IpConfig != nil {
			for _, ip := range g.IpConfig.IpAddress {
				add(ip.IpAddress)
			}
		}
	}
	if len(o.guestNet) == 0 && o.guestIP != "" && len(out) > 0 {
		if a, err := netip.ParseAddr(o.guestIP); err == nil {
			out[0].IPs = append(out[0].IPs, a.WithZone("").Unmap())
		}
	}
	for i := range out {
		out[i].MACString = out[i].MAC.String()
		if out[i].MAC.IsZero() {
			out[i].MACString = ""
		}
		if v, ok := vnis[out[i].Network]; ok {
			out[i].VNI = v
		}
	}
	return out
}

func parseMAC(s string) flow.MAC {
	var m flow.MAC
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return m
	}
	copy(m[:], hw)
	return m
}

// age is how old an inventory is.
func age(since time.Time) float64 {
	if since.IsZero() {
		return 0
	}
	return time.Since(since).Seconds()
}
