package vsphere

import (
	"context"
	"net/url"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	_ "github.com/vmware/govmomi/vapi/simulator" // the tagging service (REST) in vcsim

	"github.com/spanflow/spanflow/internal/flow"
)

// A simulated vCenter (govmomi's vcsim, in process) with the estate the
// tests look flows up in. Names, MACs, addresses, VLANs, tags and custom
// attributes are set here through the vSphere API; what vcsim decides itself
// (UUIDs, host and cluster names) is read back through the API as the
// expected value.

// simNIC is one virtual NIC of a simulated VM.
type simNIC struct {
	network string // port group: "pg-*" standard, "dvpg-*" distributed
	mac     string
	ips     []string
}

// simVM is a VM the test creates.
type simVM struct {
	name    string
	dc      int      // datacenter index
	host    string   // host name as vcsim names it (DC0_C0_H0, DC1_H0 for a standalone host)
	folder  []string // folders below the datacenter's VM folder
	nics    []simNIC
	off     bool   // leave powered off
	tag     string // tag in category "project"
	project string // custom attribute "project"
}

// Port groups per datacenter: name -> VLAN.
var simPortGroups = [2]map[string]int32{
	{"dvpg-payments-110": 110, "dvpg-tenant-a-201": 201, "dvpg-tenant-b-202": 202},
	{"dvpg-mgmt-300": 300, "pg-portal-120": 120, "pg-edge-130": 130},
}

func simEstate(restarted bool) []simVM {
	vms := []simVM{
		{name: "app-db-03", dc: 0, host: "DC0_C0_H0", folder: []string{"finance", "db"}, tag: "payments",
			nics: []simNIC{{"dvpg-payments-110", "00:50:56:00:00:01", []string{"10.1.0.3", "2001:db8:1::3"}}}},
		{name: "web-12", dc: 1, host: "DC1_C0_H1", project: "portal", nics: []simNIC{
			{"pg-portal-120", "00:50:56:00:00:02", []string{"10.2.0.12", "2001:db8:2::12"}},
			{"dvpg-mgmt-300", "00:50:56:00:00:12", []string{"192.168.30.12"}}}},
		{name: "batch-01", dc: 0, host: "DC0_C1_H0", folder: []string{"analytics", "jobs"},
			nics: []simNIC{{"dvpg-payments-110", "00:50:56:00:00:03", []string{"10.1.0.50"}}}},
		{name: "lb-01", dc: 1, host: "DC1_H0",
			nics: []simNIC{{"pg-edge-130", "00:50:56:00:00:04", []string{"10.3.0.4"}}}},
		{name: "tenant-a-01", dc: 0, host: "DC0_C0_H1",
			nics: []simNIC{{"dvpg-tenant-a-201", "00:50:56:00:00:0a", []string{"10.9.9.9"}}}},
		{name: "tenant-b-01", dc: 0, host: "DC0_C1_H1",
			nics: []simNIC{{"dvpg-tenant-b-202", "00:50:56:00:00:0b", []string{"10.9.9.9"}}}},
		{name: "off-01", dc: 0, host: "DC0_C0_H0", off: true,
			nics: []simNIC{{"dvpg-payments-110", "00:50:56:00:00:05", []string{"10.1.0.99"}}}},
	}
	if restarted {
		// What changed while vCenter was down.
		vms[2].nics[0].ips = []string{"10.1.0.77"}
		vms = append(vms, simVM{name: "new-01", dc: 0, host: "DC0_C0_H1",
			nics: []simNIC{{"dvpg-payments-110", "00:50:56:00:00:06", []string{"10.1.0.88"}}}})
	}
	return vms
}

// simBuilder is the account that builds the simulated estate.
var simBuilder = url.UserPassword("builder", "builder")

// simProjectRules are the rules the tests configure: tag, then attribute,
// then top folder, then port group names.
var simProjectRules = []string{"tag:project", "attribute:project", "folder:1", "portgroup:^pg-([a-z]+)-", "portgroup:^dvpg-tenant-([a-z]+)-"}

type sim struct {
	model  *simulator.Model
	server *simulator.Server
	c      *vim25.Client
	vms    map[string]*object.VirtualMachine
	hosts  map[string]*object.HostSystem
	pools  map[string]*object.ResourcePool // by host name
	tags   *tags.Manager
	tagIDs map[string]string // tag name -> ID, category "project"
}

// newSim starts a simulated vCenter on listen ("127.0.0.1:0" for any port)
// holding simEstate(restarted).
func newSim(t testing.TB, listen string, restarted bool) *sim {
	t.Helper()
	ctx := context.Background()
	m := simulator.VPX()
	m.Datacenter = 2
	m.Cluster = 2
	m.ClusterHost = 2
	m.Host = 1
	m.Machine = 0
	m.Portgroup = 1 // makes the DVS
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	// The estate is built as "builder"; spanflow's account ("user") may log
	// in only once it is complete. Besides being what a test wants, this
	// keeps spanflow's container view out of the simulator while entities are
	// added: vcsim can deadlock between adding an entity to a container view
	// and a WaitForUpdatesEx on that view (a lock order problem of vcsim's,
	// seen when the restarted simulator was being built).
	var ready atomic.Bool
	m.Service.Listen = &url.URL{Host: listen, User: simBuilder}
	m.Map().SessionManager().ValidLogin = func(req *types.Login) bool {
		if req.UserName == simBuilder.Username() {
			return true
		}
		pass, _ := simulator.DefaultLogin.Password()
		return ready.Load() && req.UserName == simulator.DefaultLogin.Username() && req.Password == pass
	}
	defer ready.Store(true)
	m.Service.RegisterEndpoints = true
	s := m.Service.NewServer()
	st := &sim{model: m, server: s, vms: map[string]*object.VirtualMachine{},
		hosts: map[string]*object.HostSystem{}, pools: map[string]*object.ResourcePool{}}
	t.Cleanup(st.stop)

	vc, err := vim25.NewClient(ctx, soap.NewClient(s.URL, true))
	if err != nil {
		t.Fatal(err)
	}
	if err := session.NewManager(vc).Login(ctx, simBuilder); err != nil {
		t.Fatal(err)
	}
	st.c = vc
	finder := find.NewFinder(vc, false)
	dcs, err := finder.DatacenterList(ctx, "*")
	if err != nil || len(dcs) != 2 {
		t.Fatalf("datacenters: %v %v", dcs, err)
	}
	slices.SortFunc(dcs, func(a, b *object.Datacenter) int { return compareStrings(a.Name(), b.Name()) })
	for i, dc := range dcs {
		finder.SetDatacenter(dc)
		hosts, err := finder.HostSystemList(ctx, "*/*")
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hosts {
			st.hosts[h.Name()] = h
			pool, err := h.ResourcePool(ctx)
			if err != nil {
				t.Fatal(err)
			}
			st.pools[h.Name()] = pool
		}
		dvsRef, err := finder.Network(ctx, "DVS0")
		if err != nil {
			t.Fatal(err)
		}
		dvs := dvsRef.(*object.DistributedVirtualSwitch)
		for name, vlan := range simPortGroups[i] {
			if name[:2] == "dv" {
				task, err := dvs.AddPortgroup(ctx, []types.DVPortgroupConfigSpec{{
					Name: name, Type: string(types.DistributedVirtualPortgroupPortgroupTypeEarlyBinding), NumPorts: 16,
					DefaultPortConfig: &types.VMwareDVSPortSetting{Vlan: &types.VmwareDistributedVirtualSwitchVlanIdSpec{VlanId: vlan}},
				}})
				if err == nil {
					err = task.Wait(ctx)
				}
				if err != nil {
					t.Fatalf("add %s: %v", name, err)
				}
				continue
			}
			spec := types.HostPortGroupSpec{Name: name, VlanId: vlan, VswitchName: "vSwitch0"}
			first := true
			for _, h := range hosts {
				if first { // creates the network in the datacenter
					ns, err := h.ConfigManager().NetworkSystem(ctx)
					if err == nil {
						err = ns.AddPortGroup(ctx, spec)
					}
					if err != nil {
						t.Fatalf("add %s: %v", name, err)
					}
					first = false
				}
				// vcsim's AddPortGroup updates the host's network system but
				// not HostSystem.config.network, which ESXi keeps in step:
				// do what ESXi does.
				hs := m.Map().Get(h.Reference()).(*simulator.HostSystem)
				m.Map().WithLock(m.Service.Context, hs, func() {
					hs.Config.Network.Portgroup = append(hs.Config.Network.Portgroup,
						types.HostPortGroup{Key: "key-vim.host.PortGroup-" + name, Spec: spec})
				})
			}
		}
	}

	// Tags and custom attributes, through the tagging service and the
	// custom fields manager.
	rc := rest.NewClient(vc)
	if err := rc.Login(ctx, simBuilder); err != nil {
		t.Fatal(err)
	}
	tm := tags.NewManager(rc)
	catID, err := tm.CreateCategory(ctx, &tags.Category{Name: "project", Cardinality: "SINGLE", AssociableTypes: []string{"VirtualMachine"}})
	if err != nil {
		t.Fatal(err)
	}
	cfm, err := object.GetCustomFieldsManager(vc)
	if err != nil {
		t.Fatal(err)
	}
	field, err := cfm.Add(ctx, "project", "VirtualMachine", nil, nil)
	if err != nil {
		t.Fatal(err)
	}

	tagIDs := map[string]string{}
	st.tags, st.tagIDs = tm, tagIDs
	for _, v := range simEstate(restarted) {
		finder.SetDatacenter(dcs[v.dc])
		folders, err := dcs[v.dc].Folders(ctx)
		if err != nil {
			t.Fatal(err)
		}
		folder := folders.VmFolder
		for _, name := range v.folder {
			sub, err := finder.Folder(ctx, folder.InventoryPath+"/"+name)
			if err != nil {
				sub, err = folder.CreateFolder(ctx, name)
				if err != nil {
					t.Fatal(err)
				}
				sub.InventoryPath = folder.InventoryPath + "/" + name
			}
			folder = sub
		}
		var devices object.VirtualDeviceList
		for i, n := range v.nics {
			var backing types.BaseVirtualDeviceBackingInfo
			if n.network[:2] == "dv" {
				net, err := finder.Network(ctx, n.network)
				if err != nil {
					t.Fatal(err)
				}
				backing, err = net.EthernetCardBackingInfo(ctx)
				if err != nil {
					t.Fatal(err)
				}
			} else {
				backing = &types.VirtualEthernetCardNetworkBackingInfo{VirtualDeviceDeviceBackingInfo: types.VirtualDeviceDeviceBackingInfo{DeviceName: n.network}}
			}
			card := &types.VirtualVmxnet3{VirtualVmxnet: types.VirtualVmxnet{VirtualEthernetCard: types.VirtualEthernetCard{
				VirtualDevice: types.VirtualDevice{Key: int32(-100 - i), Backing: backing},
				AddressType:   string(types.VirtualEthernetCardMacTypeManual), MacAddress: n.mac,
			}}}
			devices = append(devices, card)
		}
		changes, err := devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
		if err != nil {
			t.Fatal(err)
		}
		host := st.hosts[v.host]
		if host == nil {
			t.Fatalf("no host %s in %v", v.host, st.hosts)
		}
		task, err := folder.CreateVM(ctx, types.VirtualMachineConfigSpec{
			Name: v.name, GuestId: string(types.VirtualMachineGuestOsIdentifierOtherGuest),
			Files: &types.VirtualMachineFileInfo{VmPathName: "[LocalDS_0]"}, DeviceChange: changes,
		}, st.pools[v.host], host)
		if err != nil {
			t.Fatal(err)
		}
		info, err := task.WaitForResult(ctx, nil)
		if err != nil {
			t.Fatalf("create %s: %v", v.name, err)
		}
		vm := object.NewVirtualMachine(vc, info.Result.(types.ManagedObjectReference))
		st.vms[v.name] = vm
		if !v.off {
			task, err := vm.PowerOn(ctx)
			if err == nil {
				err = task.Wait(ctx)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		st.setGuestIPs(t, v.name, v.nics)
		if v.tag != "" {
			tagID, ok := tagIDs[v.tag]
			if !ok {
				if tagID, err = tm.CreateTag(ctx, &tags.Tag{Name: v.tag, CategoryID: catID}); err != nil {
					t.Fatal(err)
				}
				tagIDs[v.tag] = tagID
			}
			if err := tm.AttachTag(ctx, tagID, vm.Reference()); err != nil {
				t.Fatal(err)
			}
		}
		if v.project != "" {
			if err := cfm.Set(ctx, vm.Reference(), field.Key, v.project); err != nil {
				t.Fatal(err)
			}
		}
	}
	return st
}

// setGuestIPs reports addresses per NIC as VMware Tools would (guest.net):
// vcsim has no guest, so its registry is updated the way a guest report
// updates vCenter, notifying property collectors.
func (s *sim) setGuestIPs(t testing.TB, name string, nics []simNIC) {
	t.Helper()
	ctx := s.model.Service.Context
	obj := s.model.Map().Get(s.vms[name].Reference()).(*simulator.VirtualMachine)
	s.model.Map().WithLock(ctx, obj, func() {
		net := slices.Clone(obj.Guest.Net)
		if len(net) != len(nics) {
			t.Errorf("%s: %d guest NICs, want %d", name, len(net), len(nics))
			return
		}
		for i := range net {
			net[i].IpAddress = nics[i].ips
		}
		s.model.Map().Update(ctx, obj, []types.PropertyChange{{Name: "guest.net", Val: net}})
	})
}

// stop closes the simulated vCenter, cutting open connections as a
// stopped vCenter would.
func (s *sim) stop() {
	if s.server == nil {
		return
	}
	s.server.CloseClientConnections()
	s.server.Close()
	s.model.Remove()
	s.server = nil
}

// config returns an enrichment configuration for this vCenter.
func (s *sim) config() Configuration {
	u := *s.server.URL
	u.User = nil
	cfg := DefaultConfiguration()
	cfg.URL = u.String()
	cfg.User = simulator.DefaultLogin.Username()
	cfg.Password, _ = simulator.DefaultLogin.Password()
	cfg.ProjectRules = simProjectRules
	cfg.MaxWait = time.Second
	cfg.RequestTimeout = 10 * time.Second
	cfg.ReconnectMin = 100 * time.Millisecond
	cfg.ReconnectMax = 500 * time.Millisecond
	cfg.RebuildInterval = 50 * time.Millisecond
	cfg.TagRefresh = time.Second
	return cfg
}

// expected returns what the enrichment must say about a VM NIC, from the
// estate definition and from what vcsim reports through the API.
func (s *sim) expected(t testing.TB, vmName string, nic int, project string) *flow.VSphere {
	t.Helper()
	ctx := context.Background()
	var vm mo.VirtualMachine
	if err := s.vms[vmName].Properties(ctx, s.vms[vmName].Reference(), []string{"config.instanceUuid", "runtime.host"}, &vm); err != nil {
		t.Fatal(err)
	}
	var host mo.HostSystem
	if err := s.vms[vmName].Properties(ctx, *vm.Runtime.Host, []string{"name", "parent"}, &host); err != nil {
		t.Fatal(err)
	}
	var cluster mo.ManagedEntity
	if err := s.vms[vmName].Properties(ctx, *host.Parent, []string{"name"}, &cluster); err != nil {
		t.Fatal(err)
	}
	clusterName := cluster.Name
	if host.Parent.Type != "ClusterComputeResource" {
		clusterName = ""
	}
	var def simVM
	for _, v := range append(simEstate(false), simEstate(true)...) {
		if v.name == vmName {
			def = v
		}
	}
	return &flow.VSphere{VMName: vmName, VMUUID: vm.Config.InstanceUuid, HostName: host.Name, ClusterName: clusterName,
		DatacenterName: []string{"DC0", "DC1"}[def.dc], NetworkName: def.nics[nic].network, Project: project}
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
