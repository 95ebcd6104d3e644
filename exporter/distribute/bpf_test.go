//go:build linux && cgo

package distribute

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/net/bpf"

	"github.com/spanflow/spanflow/exporter/capture"
	"github.com/spanflow/spanflow/internal/testutil"
)

// filters cover what libpcap compiles: IPv4/IPv6, ports (with the
// fragment and header-length checks, MSH), VLAN, nets, length, arithmetic.
var filters = []string{
	"tcp", "udp or icmp or icmp6", "ip6", "arp", "tcp port 80", "not port 22", "portrange 1000-2000",
	"net 10.0.0.0/8", "host 192.168.1.10", "vlan and udp", "greater 200", "less 100",
	"ip[8] < 64", "tcp[tcpflags] & (tcp-syn|tcp-fin) != 0", "ip[2:2] / 4 > 100", "ip[2:2] % 7 = 3",
	"ether host 00:0c:29:14:16:a3", "proto 47", "ip6 and tcp and dst port 443",
	"tcp port 22", "host 10.5.5.1", "udp port 53", "ip6 and udp port 547",
}

func compiled(t testing.TB, expr string) (capture.Program, *bpf.VM) {
	raw, err := capture.CompileFilter(expr)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	p, err := capture.NewProgram(raw)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	insns := make([]bpf.Instruction, len(raw))
	for i, r := range raw {
		insns[i] = r.Disassemble()
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatal(err)
	}
	return p, vm
}

// TestProgramEqualsVM: on every frame of real captures (IPv4, IPv6, VLAN,
// tunnels, fragments, ARP), the interpreter keeps what x/net/bpf's VM
// keeps, for each filter.
func TestProgramEqualsVM(t *testing.T) {
	dir := filepath.Join(testutil.SharedTestdata(t), "mirror")
	var frames [][]byte
	for _, name := range []string{"ipfixprobe/mixed.pcap", "zeek/tcp-ssh-dups.pcap", "zeek/erspan.pcap", "ndpi/vxlan.pcap", "zeek/icmp_dot1q.pcap", "zeek/ipv6-fragmented-dns.pcap"} {
		for _, p := range testutil.ReadPcap(t, filepath.Join(dir, name)) {
			frames = append(frames, p.Data)
			// Truncated frames take the out-of-bounds paths.
			frames = append(frames, p.Data[:len(p.Data)/3])
		}
	}
	for _, expr := range filters {
		p, vm := compiled(t, expr)
		kept := 0
		for i, f := range frames {
			want, err := vm.Run(f)
			if err != nil {
				want = 0
			}
			if got := p.Run(f, uint32(len(f))); int(got) != want {
				t.Fatalf("%q, frame %d: kept %d, x/net/bpf keeps %d", expr, i, got, want)
			}
			if want > 0 {
				kept++
			}
		}
		t.Logf("%q keeps %d of %d frames", expr, kept, len(frames))
	}
}

func FuzzProgram(f *testing.F) {
	for _, name := range []string{"ipfixprobe/mixed.pcap", "zeek/erspan.pcap"} {
		path := filepath.Join(testutil.ModuleRoot(), "..", "shared", "testdata", "mirror", name)
		if _, err := os.Stat(path); err == nil {
			for i, p := range testutil.ReadPcap(f, path) {
				if i < 20 {
					f.Add(p.Data)
				}
			}
		}
	}
	f.Add([]byte{})
	var progs []capture.Program
	var vms []*bpf.VM
	for _, expr := range filters {
		p, vm := compiled(f, expr)
		progs, vms = append(progs, p), append(vms, vm)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		for i := range progs {
			want, err := vms[i].Run(frame)
			if err != nil {
				want = 0
			}
			if got := progs[i].Run(frame, uint32(len(frame))); int(got) != want {
				t.Fatalf("%q: kept %d, x/net/bpf keeps %d", filters[i], got, want)
			}
		}
	})
}

// FuzzParseFlag: any --distribute value gives a rule or an error, never a
// panic; a rule it gives validates or says why.
func FuzzParseFlag(f *testing.F) {
	for _, s := range []string{"iface:veth1", "vxlan://10.0.0.9:4789?vni=7&dedup=10ms tcp port 80", "erspan3://[2001:db8::1]?session=1023&snap-length=128", "gre://h?key=1&strip-tunnel", "erspan2://1.2.3.4?session=1&index=5&rate=10&queue-size=3&sample=2 arp", "%zz", "vxlan://?vni="} {
		f.Add(s)
	}
	lookupIP = func(string) ([]net.IP, error) { return nil, errors.New("no DNS in fuzzing") }
	defer func() { lookupIP = net.LookupIP }()
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseFlag(s)
		if err == nil {
			_ = r.Validate()
		}
		_, _ = ParseDestination(s)
	})
}

// BenchmarkFilter: the interpreter against x/net/bpf's VM, "not port 22"
// (IPv4 and IPv6 port checks with fragment tests) over a real capture's
// frames; one op is one frame.
func BenchmarkFilter(b *testing.B) {
	pkts := testutil.ReadPcap(b, filepath.Join(testutil.SharedTestdata(b), "mirror", "ipfixprobe/mixed.pcap"))
	p, vm := compiled(b, "not port 22")
	b.Run("interpreter", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			f := pkts[i%len(pkts)].Data
			p.Run(f, uint32(len(f)))
		}
	})
	b.Run("x-net-bpf-vm", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			vm.Run(pkts[i%len(pkts)].Data)
		}
	})
}

// TestMmsghdrSize: the layout sendmmsg reads, per architecture.
func TestMmsghdrSize(t *testing.T) {
	want := uintptr(64)
	if unsafe.Sizeof(uintptr(0)) == 4 {
		want = 32
	}
	if got := unsafe.Sizeof(mmsghdr{}); got != want {
		t.Errorf("mmsghdr is %d bytes, want %d", got, want)
	}
}
