package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"syscall"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	_ "github.com/vmware/govmomi/vapi/simulator" // the tagging service (REST) in vcsim

	"github.com/spanflow/spanflow/internal/reporter"
)

// VCenter is the demo's simulated vCenter: govmomi's vcsim, in process,
// holding the estate. It is populated through the vSphere API (port groups,
// VMs, NICs, tags) as an administrator would; what vcsim cannot do through
// the API (host names, guest addresses reported by VMware Tools) is set in
// its registry the way ESXi and the guests would report it.
type VCenter struct {
	r      *reporter.Reporter
	estate *Estate
	listen string

	model  *simulator.Model
	server *simulator.Server
}

// newVCenter returns the simulator; Start builds and serves it on listen
// (host:port, port 0 for any).
func newVCenter(r *reporter.Reporter, estate *Estate, listen string) *VCenter {
	return &VCenter{r: r, estate: estate, listen: listen}
}

// Name names the component in lifecycle errors.
func (v *VCenter) Name() string { return "simulated vCenter" }

// URL is the SDK URL, without credentials.
func (v *VCenter) URL() string {
	u := *v.server.URL
	u.User = nil
	return u.String()
}

// Credentials are vcsim's login.
func (v *VCenter) Credentials() (user, password string) {
	p, _ := simulator.DefaultLogin.Password()
	return simulator.DefaultLogin.Username(), p
}

// Start creates the inventory and serves it.
func (v *VCenter) Start() (err error) {
	m := simulator.VPX()
	m.Datacenter = 1
	m.Cluster = len(v.estate.Clusters)
	m.ClusterHost = len(v.estate.Hosts) / len(v.estate.Clusters)
	m.Host = 0
	m.Machine = 0
	m.Portgroup = 1 // makes the distributed switch DVS0
	if err := m.Create(); err != nil {
		return fmt.Errorf("create simulated inventory: %w", err)
	}
	v.model = m
	m.Service.Listen = &url.URL{Host: v.listen}
	m.Service.RegisterEndpoints = true
	// vcsim panics when it cannot listen; the port was checked free just
	// before, so this only catches a race with another program.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("serve simulated vCenter on %s: %v", v.listen, p)
			v.Stop()
		}
	}()
	v.server = m.Service.NewServer()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := v.populate(ctx); err != nil {
		v.Stop()
		return fmt.Errorf("populate simulated vCenter: %w", err)
	}
	return nil
}

// Stop closes the server, cutting open sessions, and drops the inventory.
func (v *VCenter) Stop() error {
	if v.server != nil {
		v.server.CloseClientConnections()
		v.server.Close()
		v.server = nil
	}
	if v.model != nil {
		v.model.Remove()
		v.model = nil
	}
	return nil
}

func (v *VCenter) populate(ctx context.Context) error {
	e, m := v.estate, v.model
	vc, err := vim25.NewClient(ctx, soap.NewClient(v.server.URL, true))
	if err != nil {
		return err
	}
	defer vc.CloseIdleConnections()
	if err := session.NewManager(vc).Login(ctx, simulator.DefaultLogin); err != nil {
		return err
	}
	defer session.NewManager(vc).Logout(context.Background())
	finder := find.NewFinder(vc, false)
	dc, err := finder.Datacenter(ctx, "DC0")
	if err != nil {
		return err
	}
	if err := rename(ctx, dc.Common, e.Datacenter); err != nil {
		return err
	}
	finder.SetDatacenter(dc)

	// Clusters and hosts get the estate's names.
	clusters, err := finder.ClusterComputeResourceList(ctx, "*")
	if err != nil {
		return err
	}
	slices.SortFunc(clusters, func(a, b *object.ClusterComputeResource) int { return cmpString(a.Name(), b.Name()) })
	if len(clusters) != len(e.Clusters) {
		return fmt.Errorf("%d clusters, want %d", len(clusters), len(e.Clusters))
	}
	hosts := map[string]*object.HostSystem{}
	pools := map[string]*object.ResourcePool{}
	for ci, cl := range clusters {
		hs, err := cl.Hosts(ctx)
		if err != nil {
			return err
		}
		if err := rename(ctx, cl.Common, e.Clusters[ci]); err != nil {
			return err
		}
		slices.SortFunc(hs, func(a, b *object.HostSystem) int { return cmpString(a.Reference().Value, b.Reference().Value) })
		var ours []*Host
		for _, h := range e.Hosts {
			if h.Cluster == e.Clusters[ci] {
				ours = append(ours, h)
			}
		}
		if len(hs) != len(ours) {
			return fmt.Errorf("cluster %s: %d hosts, want %d", e.Clusters[ci], len(hs), len(ours))
		}
		for i, h := range hs {
			// ESXi hosts cannot be renamed through the API: they report
			// their name themselves.
			obj := m.Map().Get(h.Reference()).(*simulator.HostSystem)
			m.Map().WithLock(m.Service.Context, obj, func() {
				m.Map().Update(m.Service.Context, obj, []types.PropertyChange{{Name: "name", Val: ours[i].Name}})
			})
			pool, err := h.ResourcePool(ctx)
			if err != nil {
				return err
			}
			hosts[ours[i].Name], pools[ours[i].Name] = h, pool
		}
	}

	// One distributed port group per project, with its VLAN.
	dvsRef, err := finder.Network(ctx, "DVS0")
	if err != nil {
		return err
	}
	dvs := dvsRef.(*object.DistributedVirtualSwitch)
	for _, p := range e.Projects {
		task, err := dvs.AddPortgroup(ctx, []types.DVPortgroupConfigSpec{{
			Name: p.PortGroup, Type: string(types.DistributedVirtualPortgroupPortgroupTypeEarlyBinding), NumPorts: 32,
			DefaultPortConfig: &types.VMwareDVSPortSetting{Vlan: &types.VmwareDistributedVirtualSwitchVlanIdSpec{VlanId: int32(p.VLAN)}},
		}})
		if err == nil {
			err = task.Wait(ctx)
		}
		if err != nil {
			return fmt.Errorf("add port group %s: %w", p.PortGroup, err)
		}
	}

	// The tag category "project" and a tag per tagged project.
	rc := rest.NewClient(vc)
	if err := rc.Login(ctx, simulator.DefaultLogin); err != nil {
		return err
	}
	defer rc.Logout(context.Background())
	tm := tags.NewManager(rc)
	catID, err := tm.CreateCategory(ctx, &tags.Category{Name: "project", Cardinality: "SINGLE", AssociableTypes: []string{"VirtualMachine"}})
	if err != nil {
		return fmt.Errorf("create tag category: %w", err)
	}
	tagIDs := map[string]string{}
	for _, p := range e.Projects {
		if p.Tagged {
			if tagIDs[p.Name], err = tm.CreateTag(ctx, &tags.Tag{Name: p.Name, CategoryID: catID}); err != nil {
				return fmt.Errorf("create tag %s: %w", p.Name, err)
			}
		}
	}

	folders, err := dc.Folders(ctx)
	if err != nil {
		return err
	}
	for _, vm := range e.VMs {
		pg, err := finder.Network(ctx, vm.Project.PortGroup)
		if err != nil {
			return err
		}
		backing, err := pg.EthernetCardBackingInfo(ctx)
		if err != nil {
			return err
		}
		card := &types.VirtualVmxnet3{VirtualVmxnet: types.VirtualVmxnet{VirtualEthernetCard: types.VirtualEthernetCard{
			VirtualDevice: types.VirtualDevice{Key: -100, Backing: backing},
			AddressType:   string(types.VirtualEthernetCardMacTypeManual), MacAddress: vm.MACString(),
		}}}
		changes, err := object.VirtualDeviceList{card}.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
		if err != nil {
			return err
		}
		task, err := folders.VmFolder.CreateVM(ctx, types.VirtualMachineConfigSpec{
			Name: vm.Name, GuestId: string(types.VirtualMachineGuestOsIdentifierOtherLinux64Guest),
			Files: &types.VirtualMachineFileInfo{VmPathName: "[LocalDS_0]"}, DeviceChange: changes,
		}, pools[vm.Host.Name], hosts[vm.Host.Name])
		if err != nil {
			return err
		}
		info, err := task.WaitForResult(ctx, nil)
		if err != nil {
			return fmt.Errorf("create VM %s: %w", vm.Name, err)
		}
		ref := info.Result.(types.ManagedObjectReference)
		ovm := object.NewVirtualMachine(vc, ref)
		if task, err = ovm.PowerOn(ctx); err == nil {
			err = task.Wait(ctx)
		}
		if err != nil {
			return fmt.Errorf("power on %s: %w", vm.Name, err)
		}
		if err := v.reportGuest(vm, ref); err != nil {
			return err
		}
		if id, ok := tagIDs[vm.Project.Name]; ok {
			if err := tm.AttachTag(ctx, id, ref); err != nil {
				return fmt.Errorf("tag %s: %w", vm.Name, err)
			}
		}
	}
	return nil
}

// reportGuest sets the VM's guest addresses as VMware Tools reports them
// (guest.net): vcsim runs no guest.
func (v *VCenter) reportGuest(vm *VM, ref types.ManagedObjectReference) error {
	m := v.model
	ctx := m.Service.Context
	obj, ok := m.Map().Get(ref).(*simulator.VirtualMachine)
	if !ok {
		return fmt.Errorf("VM %s not in the simulator's registry", vm.Name)
	}
	var err error
	m.Map().WithLock(ctx, obj, func() {
		nets := slices.Clone(obj.Guest.Net)
		if len(nets) != 1 {
			err = fmt.Errorf("VM %s: %d guest NICs, want 1", vm.Name, len(nets))
			return
		}
		ips := []string{vm.IPv4.String()}
		if vm.IPv6.IsValid() {
			ips = append(ips, vm.IPv6.String())
		}
		nets[0].IpAddress = ips
		m.Map().Update(ctx, obj, []types.PropertyChange{{Name: "guest.net", Val: nets}})
	})
	return err
}

func rename(ctx context.Context, c object.Common, name string) error {
	task, err := c.Rename(ctx, name)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		return fmt.Errorf("rename %s to %s: %w", c.Reference(), name, err)
	}
	return nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// checkFree fails with a one-line reason naming flag when addr (host:port)
// cannot be bound on network ("tcp" or "udp"). Port 0 is always free.
func checkFree(network, addr, flag string) error {
	var err error
	switch network {
	case "udp":
		var c net.PacketConn
		if c, err = net.ListenPacket("udp", addr); err == nil {
			c.Close()
		}
	default:
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err == nil {
			l.Close()
		}
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return &PortInUseError{Network: network, Addr: addr, Flag: flag}
	}
	return fmt.Errorf("listen on %s %s: %w (change it with %s)", network, addr, err, flag)
}

// PortInUseError says a port the demo needs is taken, and which flag moves it.
type PortInUseError struct {
	Network, Addr, Flag string
}

func (e *PortInUseError) Error() string {
	return fmt.Sprintf("%s port %s is already in use: choose another with %s PORT (0 picks a free one)", e.Network, e.Addr, e.Flag)
}
