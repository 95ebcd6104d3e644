package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/spanflow/spanflow/collector"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// runSplit runs the command with its output and its logs apart.
func runSplit(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	app := newApp()
	var out, logs bytes.Buffer
	app.Writer, app.ErrWriter = &out, &logs
	app.ExitErrHandler = nil
	err := app.Run(append([]string{"spanflow"}, args...))
	return out.String(), logs.String(), err
}

// TestVSphereInventory runs `spanflow vsphere inventory` against vcsim and
// compares its listing with what the simulator holds.
func TestVSphereInventory(t *testing.T) {
	m := simulator.VPX()
	m.Datacenter = 1
	m.Cluster = 1
	m.ClusterHost = 2
	m.Host = 0
	m.Machine = 2
	m.Portgroup = 1
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	defer m.Remove()
	s := m.Service.NewServer()
	defer s.Close()

	// Give every VM a guest address as VMware Tools would report it, and
	// note what the simulator says about each.
	type truth struct{ mac, ip, host string }
	want := map[string]truth{}
	ctx := m.Service.Context
	for i, obj := range m.Map().All("VirtualMachine") {
		vm := obj.(*simulator.VirtualMachine)
		ip := "10.20.0." + string(rune('1'+i))
		m.Map().WithLock(ctx, vm, func() {
			net := slices.Clone(vm.Guest.Net)
			net[0].IpAddress = []string{ip, "2001:db8::" + string(rune('1'+i))}
			m.Map().Update(ctx, vm, []types.PropertyChange{{Name: "guest.net", Val: net}})
			host := m.Map().Get(*vm.Runtime.Host).(*simulator.HostSystem)
			want[vm.Name] = truth{mac: vm.Guest.Net[0].MacAddress, ip: ip, host: host.Name}
		})
	}
	if len(want) != 2 {
		t.Fatalf("simulator has %d VMs", len(want))
	}

	u := *s.URL
	u.User = nil
	t.Setenv("SPANFLOW_VCENTER_USER", "user")
	t.Setenv("SPANFLOW_VCENTER_PASSWORD", "pass")
	out, logs, err := runSplit(t, "vsphere", "inventory", "--vcenter-url", u.String(), "--format", "json", "--project-rule", "portgroup:^(DC0)_DVPG")
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, logs)
	}
	if strings.Contains(logs, "WARN") {
		t.Logf("logs:\n%s", logs)
	}
	var vms []struct {
		Name, Host, Cluster, Datacenter, Project string
		NICs                                     []struct {
			MAC, Network string
			IPs          []string
		}
	}
	if err := json.Unmarshal([]byte(out), &vms); err != nil {
		t.Fatalf("%v\n%s\nlogs:\n%s", err, out, logs)
	}
	if len(vms) != len(want) {
		t.Fatalf("listed %d VMs, want %d:\n%s", len(vms), len(want), out)
	}
	for _, vm := range vms {
		w, ok := want[vm.Name]
		if !ok {
			t.Errorf("unexpected VM %s", vm.Name)
			continue
		}
		if vm.Host != w.host || vm.Cluster != "DC0_C0" || vm.Datacenter != "DC0" || vm.Project != "DC0" {
			t.Errorf("%s: %+v, want host %s in DC0_C0/DC0, project DC0", vm.Name, vm, w.host)
		}
		hw, _ := net.ParseMAC(w.mac)
		if len(vm.NICs) != 1 || !strings.EqualFold(vm.NICs[0].MAC, strings.ReplaceAll(hw.String(), ":", "-")) ||
			vm.NICs[0].Network != "DC0_DVPG0" || !slices.Contains(vm.NICs[0].IPs, w.ip) {
			t.Errorf("%s: NICs %+v, want MAC %s with %s on DC0_DVPG0", vm.Name, vm.NICs, w.mac, w.ip)
		}
	}

	table, _, err := runSplit(t, "vsphere", "inventory", "--vcenter-url", u.String())
	if err != nil {
		t.Fatalf("%v\n%s", err, table)
	}
	t.Logf("table:\n%s", table)
	for name, w := range want {
		line := ""
		for _, l := range strings.Split(table, "\n") {
			if strings.HasPrefix(l, name+" ") {
				line = l
			}
		}
		if !strings.Contains(line, w.ip) || !strings.Contains(line, w.host) || !strings.Contains(line, "DC0_DVPG0") {
			t.Errorf("table row of %s is %q; table:\n%s", name, line, table)
		}
	}
}

func TestVSphereInventoryErrors(t *testing.T) {
	t.Setenv("SPANFLOW_VCENTER_USER", "user")
	t.Setenv("SPANFLOW_VCENTER_PASSWORD", "")
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"vsphere", "inventory"}, "--vcenter-url"},
		{[]string{"vsphere", "inventory", "--vcenter-url", closed}, "SPANFLOW_VCENTER_PASSWORD"},
		{[]string{"vsphere", "inventory", "--vcenter-url", closed, "--vcenter-password-file", pw}, "connection refused"},
		{[]string{"vsphere", "inventory", "--vcenter-url", "ftp://x", "--vcenter-password-file", pw}, "scheme"},
		{[]string{"vsphere", "inventory", "--vcenter-url", closed, "--vcenter-password-file", pw, "--project-rule", "color:red"}, "unknown kind"},
		{[]string{"vsphere", "inventory", "--vcenter-url", closed, "--vcenter-password-file", pw, "--format", "xml"}, "format"},
	} {
		out, err := run(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one mentioning %q\n%s", tc.args, err, tc.want, out)
		}
	}
}

// TestVSphereInventoryTLS checks certificate handling against vcsim over
// https: refused by default (its certificate is self-signed), accepted with
// its CA file or with the explicit --vcenter-insecure.
func TestVSphereInventoryTLS(t *testing.T) {
	m := simulator.VPX()
	m.Datacenter, m.Cluster, m.ClusterHost, m.Host, m.Machine = 1, 1, 1, 0, 1
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	defer m.Remove()
	m.Service.TLS = new(tls.Config)
	s := m.Service.NewServer()
	defer s.Close()
	ca, err := s.CertificateFile()
	if err != nil {
		t.Fatal(err)
	}
	u := *s.URL
	u.User = nil
	if u.Scheme != "https" {
		t.Fatalf("simulator serves %s", u.Scheme)
	}
	t.Setenv("SPANFLOW_VCENTER_USER", "user")
	t.Setenv("SPANFLOW_VCENTER_PASSWORD", "pass")
	if out, err := run(t, "vsphere", "inventory", "--vcenter-url", u.String()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("self-signed certificate accepted without a CA: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"--vcenter-ca", ca}, {"--vcenter-insecure"}} {
		out, err := run(t, append([]string{"vsphere", "inventory", "--vcenter-url", u.String()}, args...)...)
		if err != nil || !strings.Contains(out, "DC0_C0_RP0_VM0") {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
}

// TestEnrichersFromFlags builds the collector's enricher chain from its
// flags and checks the order: vCenter first, so a VM outside every listed
// network still counts as internal.
func TestEnrichersFromFlags(t *testing.T) {
	m := simulator.VPX()
	m.Datacenter, m.Cluster, m.ClusterHost, m.Host, m.Machine = 1, 1, 1, 0, 1
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	defer m.Remove()
	s := m.Service.NewServer()
	defer s.Close()
	ctx := m.Service.Context
	vm := m.Map().All("VirtualMachine")[0].(*simulator.VirtualMachine)
	m.Map().WithLock(ctx, vm, func() {
		net := slices.Clone(vm.Guest.Net)
		net[0].IpAddress = []string{"172.31.0.5"} // in no listed network
		m.Map().Update(ctx, vm, []types.PropertyChange{{Name: "guest.net", Val: net}})
	})

	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pw := write("pw", "pass\n")
	nets := write("networks.yaml", "10.0.0.0/8: {name: dc}\n")
	ifnames := write("ifnames.yaml", "192.0.2.1: {1: uplink}\n")
	u := *s.URL
	u.User = nil

	var got []flow.Record
	app := &cli.App{Name: "t", Flags: collectorRunFlags(), Writer: io.Discard, ErrWriter: io.Discard,
		Action: func(c *cli.Context) error {
			cfg, err := collectorConfiguration(c)
			if err != nil {
				return err
			}
			e, err := collector.NewEnrichers(reporter.NewForTest(nil), cfg)
			if err != nil {
				return err
			}
			if e.VSphere == nil || len(e.Components) != 1 {
				return errors.New("no vCenter component")
			}
			if err := e.VSphere.Start(); err != nil {
				return err
			}
			defer e.VSphere.Stop()
			wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := e.VSphere.WaitLoaded(wctx); err != nil {
				return err
			}
			for _, r := range []flow.Record{
				{SrcAddr: netip.MustParseAddr("172.31.0.5"), DstAddr: netip.MustParseAddr("10.1.2.3"), ObserverIP: netip.MustParseAddr("192.0.2.1"), InIf: 1},
				{SrcAddr: netip.MustParseAddr("172.31.0.5"), DstAddr: netip.MustParseAddr("8.8.8.8")},
			} {
				e.Enrich(&r)
				got = append(got, r)
			}
			return nil
		}}
	err := app.Run([]string{"t", "--vcenter-url", u.String(), "--vcenter-user", "user", "--vcenter-password-file", pw,
		"--networks", nets, "--interface-names", ifnames, "--project-rule", "folder:1", "--portgroup-vni", "DC0_DVPG0=5001"})
	if err != nil {
		t.Fatal(err)
	}
	if vs := got[0].Src.VSphere; vs == nil || vs.VMName != vm.Name {
		t.Errorf("source not enriched: %+v", vs)
	}
	if got[0].Direction != "east-west" || got[0].InIfName != "uplink" {
		t.Errorf("VM to a listed network: direction %q, interface %q", got[0].Direction, got[0].InIfName)
	}
	if got[1].Direction != "north-south" || got[1].Locality != "external" {
		t.Errorf("VM to the internet: %q %q", got[1].Direction, got[1].Locality)
	}
}

// TestCollectorEnrichesFromVCenter runs `spanflow collector run --pcap` on a
// NetFlow v5 capture with a simulated vCenter whose VMs own the addresses of
// the capture's first flow (read by tshark, an independent decoder): that
// flow's documents carry both VMs, the others none.
func TestCollectorEnrichesFromVCenter(t *testing.T) {
	capture := filepath.Join(testutil.SharedTestdata(t), "flows", "akvorado", "netflow", "nfv5.pcap")
	tshark := testutil.Command(t, "tshark")
	raw, err := exec.Command(tshark, "-r", capture, "-d", "udp.port==9990,cflow", "-T", "fields",
		"-e", "cflow.srcaddr", "-e", "cflow.dstaddr").Output()
	if err != nil {
		t.Fatal(err)
	}
	cols := strings.Split(strings.TrimSpace(string(raw)), "\t")
	if len(cols) != 2 {
		t.Fatalf("tshark printed %q", raw)
	}
	srcs, dsts := strings.Split(cols[0], ","), strings.Split(cols[1], ",")
	src, dst := srcs[0], dsts[0]
	flowsFromSrc := 0
	for i := range srcs {
		if srcs[i] == src && dsts[i] == dst {
			flowsFromSrc++
		}
	}

	m := simulator.VPX()
	m.Datacenter, m.Cluster, m.ClusterHost, m.Host, m.Machine = 1, 1, 2, 0, 2
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	defer m.Remove()
	s := m.Service.NewServer()
	defer s.Close()
	ctx := m.Service.Context
	owner := map[string]string{}
	for i, obj := range m.Map().All("VirtualMachine") {
		vm := obj.(*simulator.VirtualMachine)
		ip := []string{src, dst}[i]
		owner[ip] = vm.Name
		m.Map().WithLock(ctx, vm, func() {
			net := slices.Clone(vm.Guest.Net)
			net[0].IpAddress = []string{ip}
			m.Map().Update(ctx, vm, []types.PropertyChange{{Name: "guest.net", Val: net}})
		})
	}

	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("pass"), 0o600); err != nil {
		t.Fatal(err)
	}
	docs := filepath.Join(dir, "flows.ndjson")
	u := *s.URL
	u.User = nil
	out, logs, err := runSplit(t, "collector", "run", "--pcap", capture, "--output", "file:"+docs, "--metrics-listen", "",
		"--vcenter-url", u.String(), "--vcenter-user", "user", "--vcenter-password-file", pw)
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, logs)
	}
	data, err := os.ReadFile(docs)
	if err != nil {
		t.Fatal(err)
	}
	enriched, total := 0, 0
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var doc struct {
			Source, Destination struct {
				IP      string `json:"ip"`
				VSphere *struct {
					VM struct {
						Name string `json:"name"`
					} `json:"vm"`
				} `json:"vsphere"`
			}
			Flow struct {
				Direction string `json:"direction"`
			} `json:"flow"`
		}
		if err := json.Unmarshal([]byte(line), &doc); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		total++
		for _, end := range []struct {
			ip string
			vs *struct {
				VM struct {
					Name string `json:"name"`
				} `json:"vm"`
			}
		}{{doc.Source.IP, doc.Source.VSphere}, {doc.Destination.IP, doc.Destination.VSphere}} {
			want, isVM := owner[end.ip]
			switch {
			case isVM && (end.vs == nil || end.vs.VM.Name != want):
				t.Errorf("%s: vsphere %+v, want VM %s", end.ip, end.vs, want)
			case !isVM && end.vs != nil:
				t.Errorf("%s belongs to no VM but got %+v", end.ip, end.vs)
			}
		}
		if doc.Source.IP == src && doc.Destination.IP == dst {
			enriched++
			if doc.Flow.Direction != "east-west" {
				t.Errorf("VM to VM flow: direction %q", doc.Flow.Direction)
			}
		}
	}
	t.Logf("%d documents, %d between the two VMs", total, enriched)
	if total != len(srcs) || enriched != flowsFromSrc || enriched == 0 {
		t.Errorf("%d documents (tshark: %d records), %d between the two VMs (want %d)", total, len(srcs), enriched, flowsFromSrc)
	}
}

// `vsphere inventory` says it is loading, with the objects received so far,
// when stderr is a terminal (run under script(1), which gives it one), and
// nothing of the kind when stderr is a pipe.
func TestVSphereInventoryProgress(t *testing.T) {
	if testing.Short() {
		t.Skip("starts spanflow processes: skipped under -short")
	}
	scriptPath, err := exec.LookPath("script")
	if err != nil {
		t.Skip("no script(1) to give the command a terminal")
	}
	m := simulator.VPX()
	m.Machine = 40
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	defer m.Remove()
	s := m.Service.NewServer()
	defer s.Close()
	u := *s.URL
	u.User = nil
	args := []string{"vsphere", "inventory", "--vcenter-url", u.String(), "--format", "json"}
	env := append(os.Environ(), "SPANFLOW_VCENTER_USER=user", "SPANFLOW_VCENTER_PASSWORD=pass")

	// A pipe: the JSON and nothing else.
	cmd := spanflowProcess(t, args...)
	cmd.Env = append(cmd.Env, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if out, err := cmd.Output(); err != nil || !json.Valid(out) {
		t.Fatalf("inventory: %v\n%s\n%s", err, out, stderr.String())
	}
	if strings.Contains(stderr.String(), "loading the inventory") {
		t.Errorf("status line written to a pipe:\n%q", stderr.String())
	}

	// A terminal: the status line, with its count, then erased.
	cmd = exec.Command(scriptPath, "-qec", os.Args[0], os.DevNull)
	cmd.Env = append(env, "SPANFLOW_TEST_MAIN="+strings.Join(args, "\n"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("inventory on a terminal: %v\n%s", err, out)
	}
	want := regexp.MustCompile(`\r\x1b\[K. loading the inventory of ` + regexp.QuoteMeta(u.Host) + `… [0-9]+s(, [0-9,]+ objects? received)?`)
	if !want.Match(out) || !strings.Contains(string(out), "\r\x1b[K[") {
		t.Errorf("terminal output lacks the status line, then the JSON on a clean line:\n%q", out)
	}
}
