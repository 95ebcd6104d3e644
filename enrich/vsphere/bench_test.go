package vsphere

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// syntheticVMs builds an inventory listing of n VMs with two NICs each (one
// with an IPv4 and an IPv6 address, one with an IPv4 address), plus a few
// addresses shared by two VMs in different VLANs.
func syntheticVMs(n int) []VM {
	vms := make([]VM, 0, n)
	for i := 0; i < n; i++ {
		hi, lo := byte(i>>8), byte(i)
		vms = append(vms, VM{
			Name: fmt.Sprintf("vm-%05d", i), UUID: fmt.Sprintf("4201%04x-0000-0000-0000-000000000000", i),
			PowerState: "poweredOn", Host: fmt.Sprintf("esx-%03d", i%200), Cluster: fmt.Sprintf("cl-%02d", i%20),
			Datacenter: "dc-1", Project: fmt.Sprintf("project-%d", i%50),
			NICs: []NIC{
				{MAC: flow.MAC{0x00, 0x50, 0x56, 0x00, hi, lo}, Network: "dvpg-app-110", VLAN: 110,
					IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 1, hi, lo}), netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: lo, 14: hi})}},
				{MAC: flow.MAC{0x00, 0x50, 0x56, 0x01, hi, lo}, Network: "dvpg-mgmt-300", VLAN: 300,
					IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 2, hi, lo})}},
			},
		})
	}
	// Overlapping tenants: 10.9.x.y in VLAN 201 and 202.
	for i := 0; i < 100; i++ {
		for _, vlan := range []uint16{201, 202} {
			vms = append(vms, VM{Name: fmt.Sprintf("tenant-%d-%d", vlan, i), PowerState: "poweredOn",
				NICs: []NIC{{VLAN: vlan, Network: fmt.Sprintf("dvpg-tenant-%d", vlan), IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 9, 0, byte(i)})}}}})
		}
	}
	return vms
}

func benchComponent(tb testing.TB, s *Snapshot) *Component {
	tb.Helper()
	c := &Component{loaded: make(chan struct{})}
	c.metrics = newMetrics(reporter.NewForTest(nil), c)
	c.snap.Store(s)
	return c
}

// flowsFor returns records between inventory addresses (both ends known),
// with one in eight ends unknown and some overlapping addresses with VLANs.
func flowsFor(n int) []flow.Record {
	recs := make([]flow.Record, 4096)
	for i := range recs {
		a, b := (i*7919)%n, (i*104729)%n
		r := flow.Record{
			SrcAddr: netip.AddrFrom4([4]byte{10, 1, byte(a >> 8), byte(a)}),
			DstAddr: netip.AddrFrom4([4]byte{10, 2, byte(b >> 8), byte(b)}),
		}
		switch i % 8 {
		case 1:
			r.SrcAddr = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(a), 14: byte(a >> 8)})
			r.DstAddr = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(b), 14: byte(b >> 8)})
		case 3:
			r.DstAddr = netip.AddrFrom4([4]byte{203, 0, 113, byte(b)}) // the internet
		case 5:
			r.SrcAddr, r.VLAN = netip.AddrFrom4([4]byte{10, 9, 0, byte(a % 100)}), 202
		}
		recs[i] = r
	}
	return recs
}

func TestEnrichDoesNotAllocate(t *testing.T) {
	c := benchComponent(t, NewSnapshot(syntheticVMs(1000), time.Now()))
	recs := flowsFor(1000)
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		r := recs[i%len(recs)]
		c.Enrich(&r)
		i++
	})
	if allocs != 0 {
		t.Errorf("Enrich allocates %v times per flow", allocs)
	}
	r := recs[5]
	c.Enrich(&r)
	if want := fmt.Sprintf("tenant-202-%d", (5*7919)%1000%100); r.Src.VSphere == nil || r.Src.VSphere.VMName != want {
		t.Errorf("VLAN 202 end: %+v", r.Src.VSphere)
	}
}

// BenchmarkEnrich is the hot path: both ends of a flow looked up in a
// 10,000-VM snapshot (about 30,000 addresses). cpu-ns/op is the process's
// CPU time per flow, the figure to read on a loaded machine.
func BenchmarkEnrich(b *testing.B) {
	const n = 10000
	c := benchComponent(b, NewSnapshot(syntheticVMs(n), time.Now()))
	recs := flowsFor(n)
	b.ReportAllocs()
	runtime.GC()
	b.ResetTimer()
	start := testutil.CPUTime()
	for i := 0; i < b.N; i++ {
		r := &recs[i&4095]
		r.Src.VSphere, r.Dst.VSphere = nil, nil
		c.Enrich(r)
	}
	b.ReportMetric(float64(testutil.CPUTime()-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkEnrichParallel runs the hot path on every core at once, as the
// collector's workers do; the snapshot is shared, only the counters contend.
func BenchmarkEnrichParallel(b *testing.B) {
	const n = 10000
	c := benchComponent(b, NewSnapshot(syntheticVMs(n), time.Now()))
	recs := flowsFor(n)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		local := slices.Clone(recs)
		i := 0
		for pb.Next() {
			r := &local[i&4095]
			r.Src.VSphere, r.Dst.VSphere = nil, nil
			c.Enrich(r)
			i++
		}
	})
}

// BenchmarkSnapshotBuild is the cost of one rebuild after changes.
func BenchmarkSnapshotBuild(b *testing.B) {
	vms := syntheticVMs(10000)
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var keep *Snapshot
	for i := 0; i < b.N; i++ {
		keep = NewSnapshot(slices.Clone(vms), time.Now())
	}
	b.StopTimer()
	vms = nil
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB-retained")
	runtime.KeepAlive(keep)
}

// BenchmarkInitialLoad loads a 10,000-VM simulated vCenter (vcsim, in
// process: 10 clusters of 10 hosts, 1,000 VMs per cluster, each with a
// guest-reported IPv4 and IPv6 address) from login to the first snapshot.
// Run it with -benchtime=1x: building the simulated estate takes minutes.
// SPANFLOW_VSPHERE_BENCH_VMS sets another size (a multiple of 10).
func BenchmarkInitialLoad(b *testing.B) {
	if testing.Short() {
		b.Skip("builds a 10,000-VM simulated vCenter: minutes")
	}
	vms := 10000
	if s := os.Getenv("SPANFLOW_VSPHERE_BENCH_VMS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 10 {
			b.Fatalf("SPANFLOW_VSPHERE_BENCH_VMS=%q: want a number of VMs, at least 10", s)
		}
		vms = n
	}
	m := simulator.VPX()
	m.Datacenter = 1
	m.Cluster = 10
	m.ClusterHost = 10
	m.Host = 0
	m.Machine = vms / 10
	m.Portgroup = 1
	m.Autostart = true
	setupStart := time.Now()
	if err := m.Create(); err != nil {
		b.Fatal(err)
	}
	defer m.Remove()
	ctx := m.Service.Context
	i := 0
	for _, obj := range m.Map().All("VirtualMachine") {
		vm := obj.(*simulator.VirtualMachine)
		m.Map().WithLock(ctx, vm, func() {
			net := slices.Clone(vm.Guest.Net)
			for j := range net {
				net[j].IpAddress = []string{
					netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String(),
					netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)}).String(),
				}
			}
			m.Map().Update(ctx, vm, []types.PropertyChange{{Name: "guest.net", Val: net}})
		})
		i++
	}
	s := m.Service.NewServer()
	defer s.Close()
	b.Logf("simulated %d VMs in %s", i, time.Since(setupStart).Round(time.Second))

	u := *s.URL
	u.User = nil
	cfg := DefaultConfiguration()
	cfg.URL = u.String()
	cfg.User = simulator.DefaultLogin.Username()
	cfg.Password, _ = simulator.DefaultLogin.Password()
	cfg.Insecure = true
	cfg.ProjectRules = []string{"folder:1", "portgroup:^(DC0)_"}
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		var before, after runtime.MemStats
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		start := time.Now()
		c, err := New(reporter.NewForTest(nil), cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Start(); err != nil {
			b.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		err = c.WaitLoaded(wctx)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		vms := len(c.Snapshot().VMs())
		addrs, _ := c.Snapshot().Len()
		if vms != i || addrs != 2*i {
			b.Fatalf("loaded %d VMs and %d addresses, want %d and %d", vms, addrs, i, 2*i)
		}
		b.ReportMetric(took.Seconds(), "s-to-first-snapshot")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB-heap-growth")
		b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/(1<<20), "MiB-allocated")
		if err := c.Stop(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer() // closing the simulator is not part of the load
}
