package vsphere

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/types"
)

func TestValidate(t *testing.T) {
	ok := DefaultConfiguration()
	ok.URL, ok.User = "https://vcenter.example.com", "u"
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid configuration: %v", err)
	}
	for _, tc := range []struct {
		change func(*Configuration)
		want   string
	}{
		{func(c *Configuration) { c.URL = "" }, "url is empty"},
		{func(c *Configuration) { c.URL = "ftp://x" }, "scheme"},
		{func(c *Configuration) { c.URL = "https://" }, "no host"},
		{func(c *Configuration) { c.User = "" }, "SPANFLOW_VCENTER_USER"},
		{func(c *Configuration) { c.CAFile = "/nonexistent/ca.pem" }, "CA file"},
		{func(c *Configuration) { c.ProjectRules = []string{"folder:zero"} }, "folder level"},
		{func(c *Configuration) { c.ProjectRules = []string{"portgroup:("} }, "portgroup:("},
		{func(c *Configuration) { c.ProjectRules = []string{"tag:"} }, "want tag:CATEGORY"},
		{func(c *Configuration) { c.MaxWait = 10 * time.Millisecond }, "max wait"},
		{func(c *Configuration) { c.ReconnectMax = time.Millisecond }, "reconnect max"},
		{func(c *Configuration) { c.TagRefresh = 0 }, "tag refresh"},
	} {
		c := ok
		tc.change(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want one mentioning %q", err, tc.want)
		}
	}
}

func TestProjectRules(t *testing.T) {
	m := newModel()
	vm := ref{Type: "VirtualMachine", Value: "vm-1"}
	m.fields[7] = "owner"
	m.tagRules["project"] = map[string]string{"vm-1": "from-tag"}
	o := &vmObj{custom: map[int32]string{7: "from-attribute"}}
	folders := []string{"top", "middle", "bottom"}
	for _, tc := range []struct {
		rules   []string
		network string
		want    string
	}{
		{[]string{"tag:project", "attribute:owner"}, "", "from-tag"},
		{[]string{"tag:other", "attribute:owner"}, "", "from-attribute"},
		{[]string{"attribute:none", "folder:1"}, "", "top"},
		{[]string{"folder:2"}, "", "middle"},
		{[]string{"folder:-1"}, "", "bottom"},
		{[]string{"folder:4", "folder:-4"}, "", ""},
		{[]string{"portgroup:^pg-([a-z]+)-"}, "pg-portal-120", "portal"},
		{[]string{"portgroup:^pg-[a-z]+"}, "pg-portal-120", "pg-portal"},
		{[]string{"portgroup:^pg-([a-z]+)-", "folder:1"}, "dvpg-x", "top"},
	} {
		var rules []ProjectRule
		for _, s := range tc.rules {
			r, err := ParseProjectRule(s)
			if err != nil {
				t.Fatal(err)
			}
			rules = append(rules, r)
		}
		if got := m.project(rules, vm, o, folders, tc.network); got != tc.want {
			t.Errorf("%v on %q: %q, want %q", tc.rules, tc.network, got, tc.want)
		}
	}
}

// A change inside a followed property (vCenter reports those when a filter
// asks for partial updates, and may do so for keyed arrays) makes the object
// be read again whole rather than applied wrongly.
func TestNestedChangeAsksForRefetch(t *testing.T) {
	m := newModel()
	vm := ref{Type: "VirtualMachine", Value: "vm-1"}
	if !m.apply(types.ObjectUpdate{Obj: vm, Kind: types.ObjectUpdateKindEnter, ChangeSet: []types.PropertyChange{
		{Name: "name", Val: "a", Op: types.PropertyChangeOpAssign},
		{Name: "guest.net", Val: types.ArrayOfGuestNicInfo{GuestNicInfo: []types.GuestNicInfo{{IpAddress: []string{"10.0.0.1"}}}}, Op: types.PropertyChangeOpAssign},
	}}) {
		t.Fatal("whole properties not applied")
	}
	if m.apply(types.ObjectUpdate{Obj: vm, Kind: types.ObjectUpdateKindModify, ChangeSet: []types.PropertyChange{
		{Name: `config.hardware.device[4000].macAddress`, Val: "00:50:56:aa:bb:cc", Op: types.PropertyChangeOpAssign},
	}}) {
		t.Fatal("a nested change was taken as applied")
	}
	m.applyContent(types.ObjectContent{Obj: vm, PropSet: []types.DynamicProperty{{Name: "name", Val: "b"}},
		MissingSet: []types.MissingProperty{{Path: "guest.net"}}})
	if m.vms[vm].name != "b" || m.vms[vm].guestNet != nil {
		t.Errorf("refetched object not applied: %+v", m.vms[vm])
	}
	m.apply(types.ObjectUpdate{Obj: vm, Kind: types.ObjectUpdateKindLeave})
	if _, ok := m.vms[vm]; ok {
		t.Errorf("VM kept after leaving")
	}
}

func TestSnapshotLookup(t *testing.T) {
	a := netip.MustParseAddr
	s := NewSnapshot([]VM{
		{Name: "one", PowerState: "poweredOn", NICs: []NIC{{IPs: []netip.Addr{a("10.0.0.1"), a("fe80::1%eth0")}, MAC: parseMAC("00:50:56:00:00:01"), VLAN: 10}}},
		{Name: "two", PowerState: "poweredOn", NICs: []NIC{{IPs: []netip.Addr{a("10.0.0.2")}, VLAN: 20, VNI: 5001}}},
		{Name: "three", PowerState: "poweredOn", NICs: []NIC{{IPs: []netip.Addr{a("10.0.0.2")}, VLAN: 30, VNI: 5002}}},
		{Name: "off", PowerState: "poweredOff", NICs: []NIC{{IPs: []netip.Addr{a("10.0.0.9")}}}},
	}, time.Now())
	for _, tc := range []struct {
		addr      string
		vlan      uint16
		vni       uint32
		want      string
		wantState Result
	}{
		{"10.0.0.1", 0, 0, "one", Found},
		{"::ffff:10.0.0.1", 99, 0, "one", Found}, // a single owner whatever the VLAN
		{"fe80::1", 0, 0, "one", Found},          // zones dropped
		{"10.0.0.2", 20, 0, "two", Found},
		{"10.0.0.2", 30, 0, "three", Found},
		{"10.0.0.2", 0, 5001, "two", Found},
		{"10.0.0.2", 30, 5001, "two", Found}, // the VNI is the more specific
		{"10.0.0.2", 30, 77, "three", Found}, // a segment ID that is no VNI: the VLAN decides
		{"10.0.0.2", 0, 0, "", Ambiguous},
		{"10.0.0.2", 40, 0, "", Ambiguous},
		{"10.0.0.9", 0, 0, "", Unknown},
	} {
		vs, res := s.Lookup(a(tc.addr), [6]byte{}, tc.vlan, tc.vni)
		got := ""
		if vs != nil {
			got = vs.VMName
		}
		if got != tc.want || res != tc.wantState {
			t.Errorf("%s vlan %d vni %d: %q %v, want %q %v", tc.addr, tc.vlan, tc.vni, got, res, tc.want, tc.wantState)
		}
	}
	if vs, _ := s.Lookup(netip.Addr{}, parseMAC("00:50:56:00:00:01"), 0, 0); vs == nil || vs.VMName != "one" {
		t.Errorf("lookup by MAC: %+v", vs)
	}
}

func FuzzParseProjectRule(f *testing.F) {
	for _, s := range []string{"tag:project", "attribute:owner", "folder:1", "folder:-2", "portgroup:^pg-([a-z]+)-", "x", "folder:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseProjectRule(s)
		if err != nil {
			return
		}
		if r.String() != s {
			t.Fatalf("rule %q prints as %q", s, r.String())
		}
		if r.Kind == RulePortGroup {
			_ = matchPortGroup(r, "pg-portal-120")
		}
	})
}
