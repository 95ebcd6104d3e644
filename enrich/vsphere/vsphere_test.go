package vsphere

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

func startEnrichment(t *testing.T, cfg Configuration) (*Component, *reporter.Reporter, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	r := reporter.NewForTest(&logs)
	c, err := New(r, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitLoaded(ctx); err != nil {
		t.Fatalf("%v\nlogs:\n%s", err, logs.String())
	}
	return c, r, &logs
}

func mac(s string) flow.MAC { return parseMAC(s) }

func lookups(t *testing.T, r *reporter.Reporter, result string) float64 {
	t.Helper()
	mfs, err := r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "spanflow_vsphere_lookups_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestFlowsGetInventoryFacts(t *testing.T) {
	s := newSim(t, "127.0.0.1:0", false)
	c, r, _ := startEnrichment(t, s.config())

	appDB := s.expected(t, "app-db-03", 0, "payments") // tag wins over folder "finance"
	web := s.expected(t, "web-12", 0, "portal")        // custom attribute
	webMgmt := s.expected(t, "web-12", 1, "portal")
	batch := s.expected(t, "batch-01", 0, "analytics") // folder level 1
	lb := s.expected(t, "lb-01", 0, "edge")            // port group pattern
	tenantA := s.expected(t, "tenant-a-01", 0, "a")
	tenantB := s.expected(t, "tenant-b-01", 0, "b")

	ip := netip.MustParseAddr
	cases := []struct {
		name             string
		rec              flow.Record
		wantSrc, wantDst *flow.VSphere
	}{
		{name: "v4 east-west", rec: flow.Record{SrcAddr: ip("10.1.0.3"), DstAddr: ip("10.2.0.12")}, wantSrc: appDB, wantDst: web},
		{name: "v6 east-west", rec: flow.Record{SrcAddr: ip("2001:db8:1::3"), DstAddr: ip("2001:db8:2::12")}, wantSrc: appDB, wantDst: web},
		{name: "second NIC", rec: flow.Record{SrcAddr: ip("192.168.30.12"), DstAddr: ip("10.1.0.50")}, wantSrc: webMgmt, wantDst: batch},
		{name: "to the internet", rec: flow.Record{SrcAddr: ip("10.3.0.4"), DstAddr: ip("203.0.113.7")}, wantSrc: lb},
		{name: "4in6 mapped", rec: flow.Record{SrcAddr: ip("::ffff:10.3.0.4"), DstAddr: ip("2001:db8:ffff::1")}, wantSrc: lb},
		{name: "same address, VLAN 201", rec: flow.Record{SrcAddr: ip("10.9.9.9"), DstAddr: ip("10.1.0.3"), VLAN: 201}, wantSrc: tenantA, wantDst: appDB},
		{name: "same address, VLAN 202", rec: flow.Record{SrcAddr: ip("10.9.9.9"), DstAddr: ip("10.1.0.3"), VLAN: 202}, wantSrc: tenantB, wantDst: appDB},
		{name: "same address, no VLAN", rec: flow.Record{SrcAddr: ip("10.9.9.9"), DstAddr: ip("198.51.100.9")}},
		// A mirrored vSwitch port gives the VM's own MAC: it names the NIC
		// when no VLAN does; a router's MAC names none of them.
		{name: "same address, no VLAN, tenant A's MAC", rec: flow.Record{SrcAddr: ip("10.9.9.9"), SrcMAC: mac("00:50:56:00:00:0a"), DstAddr: ip("10.1.0.3")}, wantSrc: tenantA, wantDst: appDB},
		{name: "same address, no VLAN, tenant B's MAC as destination", rec: flow.Record{SrcAddr: ip("10.1.0.3"), DstAddr: ip("10.9.9.9"), DstMAC: mac("00:50:56:00:00:0b")}, wantSrc: appDB, wantDst: tenantB},
		{name: "same address, no VLAN, a router's MAC", rec: flow.Record{SrcAddr: ip("10.9.9.9"), SrcMAC: mac("00:00:5e:00:01:01"), DstAddr: ip("198.51.100.10")}},
		{name: "by MAC when the address is not reported", rec: flow.Record{SrcAddr: ip("10.3.0.200"), SrcMAC: mac("00:50:56:00:00:04"), DstAddr: ip("10.2.0.12")}, wantSrc: lb, wantDst: web},
		{name: "powered-off VM", rec: flow.Record{SrcAddr: ip("10.1.0.99"), DstAddr: ip("10.1.0.3")}, wantDst: appDB},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := tc.rec
			c.Enrich(&rec)
			if diff := cmp.Diff(rec.Src.VSphere, tc.wantSrc); diff != "" {
				t.Errorf("source (-got, +want):\n%s", diff)
			}
			if diff := cmp.Diff(rec.Dst.VSphere, tc.wantDst); diff != "" {
				t.Errorf("destination (-got, +want):\n%s", diff)
			}
		})
	}
	// Unknown ends: 203.0.113.7, 2001:db8:ffff::1, 198.51.100.9,
	// 198.51.100.10, 10.1.0.99; ambiguous: 10.9.9.9 without VLAN, with and
	// without a router's MAC.
	if got := lookups(t, r, "unknown"); got != 5 {
		t.Errorf("unknown lookups = %v, want 5", got)
	}
	if got := lookups(t, r, "ambiguous"); got != 2 {
		t.Errorf("ambiguous lookups = %v, want 2", got)
	}
	if got := lookups(t, r, "found"); got != 19 {
		t.Errorf("found lookups = %v, want 19", got)
	}
	uuids := map[string]bool{}
	for _, vm := range c.Snapshot().VMs() {
		t.Logf("%+v", vm)
		if vm.UUID == "" || uuids[vm.UUID] {
			t.Errorf("%s: instance UUID %q empty or repeated", vm.Name, vm.UUID)
		}
		uuids[vm.UUID] = true
	}
	if n := len(c.Snapshot().VMs()); n != 7 {
		t.Errorf("inventory lists %d VMs, want 7", n)
	}
}

// eventually polls cond for up to 5 s: the bound for a change to show.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	start := time.Now()
	for {
		ok, state := cond()
		if ok {
			t.Logf("%s: seen after %s", what, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen within 5s; last state: %s", what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func lookupVM(c *Component, addr string) *flow.VSphere {
	rec := flow.Record{SrcAddr: netip.MustParseAddr(addr)}
	c.Enrich(&rec)
	return rec.Src.VSphere
}

func describe(vs *flow.VSphere) string {
	if vs == nil {
		return "<none>"
	}
	return vs.VMName + " on " + vs.HostName + "/" + vs.ClusterName + " project " + vs.Project
}

func TestChangesWhileRunning(t *testing.T) {
	s := newSim(t, "127.0.0.1:0", false)
	c, _, _ := startEnrichment(t, s.config())
	ctx := context.Background()

	// The guest reports a new address (through the API: vcsim applies
	// guestinfo set in extraConfig as the guest's address).
	task, err := s.vms["batch-01"].Reconfigure(ctx, types.VirtualMachineConfigSpec{ExtraConfig: []types.BaseOptionValue{
		&types.OptionValue{Key: "SET.guest.ipAddress", Value: "10.1.0.51"}}})
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "new address", func() (bool, string) {
		vs, old := lookupVM(c, "10.1.0.51"), lookupVM(c, "10.1.0.50")
		return vs != nil && vs.VMName == "batch-01" && old == nil, describe(vs) + ", old address: " + describe(old)
	})

	// Tagged while running: the tag rule comes before the folder rule.
	if got := lookupVM(c, "10.1.0.51"); got == nil || got.Project != "analytics" {
		t.Fatalf("batch-01 before tagging: %+v", got)
	}
	if err := s.tags.AttachTag(ctx, s.tagIDs["payments"], s.vms["batch-01"].Reference()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "new tag", func() (bool, string) {
		vs := lookupVM(c, "10.1.0.51")
		return vs != nil && vs.Project == "payments", describe(vs)
	})

	// vMotion to a host of the other cluster.
	task, err = s.vms["app-db-03"].Relocate(ctx, types.VirtualMachineRelocateSpec{
		Host: types.NewReference(s.hosts["DC0_C1_H0"].Reference()),
		Pool: types.NewReference(s.pools["DC0_C1_H0"].Reference()),
	}, types.VirtualMachineMovePriorityDefaultPriority)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	want := s.expected(t, "app-db-03", 0, "payments")
	if want.HostName != "DC0_C1_H0" || want.ClusterName != "DC0_C1" {
		t.Fatalf("vcsim did not move the VM: %+v", want)
	}
	eventually(t, "vMotion", func() (bool, string) {
		vs := lookupVM(c, "2001:db8:1::3")
		return cmp.Equal(vs, want), describe(vs)
	})

	// Destroyed.
	task, err = s.vms["lb-01"].PowerOff(ctx)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err == nil {
		task, err = s.vms["lb-01"].Destroy(ctx)
	}
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "destroyed", func() (bool, string) {
		vs := lookupVM(c, "10.3.0.4")
		for _, vm := range c.Snapshot().VMs() {
			if vm.Name == "lb-01" {
				return false, "still listed, lookup: " + describe(vs)
			}
		}
		return vs == nil, describe(vs)
	})
}

func TestVCenterRestart(t *testing.T) {
	s := newSim(t, "127.0.0.1:0", false)
	addr := s.server.URL.Host
	c, r, logs := startEnrichment(t, s.config())
	gauge := func(name string) float64 {
		mfs, _ := r.Registry.Gather()
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return -1
	}
	if got := gauge("spanflow_vsphere_connected"); got != 1 {
		t.Fatalf("connected = %v", got)
	}
	before := lookupVM(c, "10.1.0.50")
	if before == nil || before.VMName != "batch-01" {
		t.Fatalf("before the restart: %s", describe(before))
	}

	s.stop()
	deadline := time.Now().Add(10 * time.Second)
	for gauge("spanflow_vsphere_connected") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still connected 10s after vCenter stopped")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Down: the last inventory keeps serving and ages.
	time.Sleep(1500 * time.Millisecond)
	if got := lookupVM(c, "10.1.0.50"); got != before {
		t.Errorf("while vCenter is down: %s, want the last inventory's %s", describe(got), describe(before))
	}
	if a := gauge("spanflow_vsphere_inventory_age_seconds"); a < 1 {
		t.Errorf("inventory age while down = %v, want >= 1s", a)
	}

	// Started again on the same address, with what changed meanwhile.
	s2 := newSim(t, addr, true)
	if s2.server.URL.Host != addr {
		t.Fatalf("restarted on %s, want %s", s2.server.URL.Host, addr)
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		nw, old, moved := lookupVM(c, "10.1.0.88"), lookupVM(c, "10.1.0.50"), lookupVM(c, "10.1.0.77")
		if nw != nil && nw.VMName == "new-01" && old == nil && moved != nil && moved.VMName == "batch-01" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not caught up 15s after vCenter restarted: new=%s old=%s changed=%s\nlogs:\n%s",
				describe(nw), describe(old), describe(moved), logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if diff := cmp.Diff(lookupVM(c, "10.1.0.88"), s2.expected(t, "new-01", 0, "")); diff != "" {
		t.Errorf("after the restart (-got, +want):\n%s", diff)
	}
	if got := gauge("spanflow_vsphere_connected"); got != 1 {
		t.Errorf("connected after the restart = %v", got)
	}
	if a := gauge("spanflow_vsphere_inventory_age_seconds"); a > 3 {
		t.Errorf("inventory age after the restart = %v", a)
	}
}

func TestStartWaitsForFirstLoad(t *testing.T) {
	s := newSim(t, "127.0.0.1:0", false)
	cfg := s.config()
	cfg.StartWait = time.Minute
	c, err := New(reporter.NewForTest(nil), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if c.Snapshot() == nil {
		t.Fatal("Start returned before the first inventory")
	}

	// vCenter down: Start gives up waiting and does not fail.
	s.stop()
	cfg.StartWait = 2 * time.Second
	var logs bytes.Buffer
	c2, err := New(reporter.NewForTest(&logs), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Start(); err != nil {
		t.Fatalf("Start failed with vCenter down: %v", err)
	}
	if c2.Snapshot() != nil || c2.LastError() == nil {
		t.Errorf("with vCenter down: snapshot %v, last error %v", c2.Snapshot(), c2.LastError())
	}
	if err := c2.Stop(); err != nil {
		t.Fatal(err)
	}
	// Nothing was ever loaded: the log must not claim a last inventory.
	if log := logs.String(); strings.Contains(log, "serving the last inventory") || !strings.Contains(log, "until the inventory is loaded") {
		t.Errorf("vCenter down before any load, the log says:\n%s", log)
	}
}
