package networks

import (
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

const sample = `
10.0.0.0/8:
  name: datacenter
  site: par1
  role: servers
10.1.0.0/16:
  name: dc1-payments
  site: par1
  role: servers
  project: payments
10.1.2.0/24:
  name: payments-db
  project: payments
203.0.113.0/24:
  name: partner-x
  external: true
2001:db8::/32:
  name: v6-estate
  site: par1
2001:db8:1::/48:
  name: v6-payments
  project: payments
`

// sampleComponent is the enricher of the sample networks file.
func sampleComponent(t *testing.T) *Component {
	t.Helper()
	nets, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(reporter.NewForTest(nil), Configuration{Networks: nets})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParse(t *testing.T) {
	nets, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	tab := NewTable(nets)
	for _, tc := range []struct {
		addr string
		want string // network name, "" = none
	}{
		{"10.9.9.9", "datacenter"},
		{"10.1.9.9", "dc1-payments"},
		{"10.1.2.3", "payments-db"},
		{"10.1.2.255", "payments-db"},
		{"10.1.3.0", "dc1-payments"},
		{"10.255.255.255", "datacenter"},
		{"11.0.0.0", ""},
		{"9.255.255.255", ""},
		{"::ffff:10.1.2.3", "payments-db"},
		{"203.0.113.77", "partner-x"},
		{"2001:db8:1:2::1", "v6-payments"},
		{"2001:db8:2::1", "v6-estate"},
		{"2001:db9::1", ""},
		{"::a01:203", ""}, // IPv4-compatible, not mapped: not 10.1.2.3
	} {
		n, ok := tab.Lookup(netip.MustParseAddr(tc.addr))
		got := ""
		if ok {
			got = n.Name
		}
		if got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.addr, got, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"10.0.0.1/8:\n  name: x\n", "host bits set"},
		{"10.0.0.0/33:\n  name: x\n", "10.0.0.0/33"},
		{"banana:\n  name: x\n", "banana"},
		{"10.0.0.0/8:\n  nmae: x\n", "nmae"},
		{"10.0.0.0/8:\n  name: x\n10.0.0.0/8:\n  name: y\n", "given twice"},
	} {
		_, err := Parse(strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one mentioning %q", tc.in, err, tc.want)
		}
	}
	// The same prefix written twice in different forms.
	if _, err := Parse(strings.NewReader("10.0.0.0/8: {name: a}\n10.000.0.0/8: {name: b}\n")); err == nil {
		t.Errorf("a prefix listed twice was accepted")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "n.yaml"), []byte(sample), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := (Configuration{File: filepath.Join(dir, "n.yaml")}).Validate(); err != nil {
		t.Errorf("valid file: %v", err)
	}
	if err := (Configuration{File: filepath.Join(dir, "missing.yaml")}).Validate(); err == nil {
		t.Errorf("missing file accepted")
	}
}

// TestReadFileErrors: every problem of a networks file comes back on a
// line of its own with that file's name and line, in the words of its
// reader, never yaml.v3's.
func TestReadFileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, in string
		want     []string // after "PATH:"
	}{
		{"every problem", "10.1.0.0/16:\n  nam: x\n10.0.0.0/33:\n  name: y\n10.2.0.1/16: {name: z}\nbanana: {}\n10.3.0.0/16: {external: maybe}\n",
			[]string{
				`2: unknown key nam (known: name, site, role, project, external)`,
				`3: 10.0.0.0/33 is not a network prefix (write ADDRESS/LENGTH, such as 10.0.0.0/8 or 2001:db8::/32)`,
				`5: 10.2.0.1/16 has host bits set (write 10.2.0.0/16)`,
				`6: banana is not a network prefix (write ADDRESS/LENGTH, such as 10.0.0.0/8 or 2001:db8::/32)`,
				`7: external: "maybe" is not true or false`,
			}},
		{"a list", "- 10.0.0.0/8\n", []string{"1: the file must hold a mapping of keys, not a list"}},
		{"a network given a value", "10.0.0.0/8: dc1\n", []string{`1: 10.0.0.0/8: want a mapping of keys, not "dc1"`}},
		{"twice", "10.0.0.0/8: {name: a}\n\"::ffff:10.0.0.0/104\": {name: b}\n", []string{"2: ::ffff:10.0.0.0/104 is listed twice (also as 10.0.0.0/8 at line 1): keep one"}},
		{"tab", "10.0.0.0/8:\n\tname: a\n", []string{"2: found character that cannot start any token (indent with spaces: YAML does not allow tabs)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "n.yaml")
			os.WriteFile(path, []byte(tc.in), 0o600)
			_, err := ReadFile(path)
			var want []string
			for _, w := range tc.want {
				want = append(want, path+":"+w)
			}
			if err == nil || err.Error() != strings.Join(want, "\n") {
				t.Errorf("got:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
			}
			if err := (Configuration{File: path}).Validate(); err == nil || err.Error() != strings.Join(want, "\n") {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

// naive is the reference: every prefix tried, the longest holding addr wins.
func naive(nets []Network, addr netip.Addr) (int, bool) {
	best, bits := -1, -1
	for i, n := range nets {
		p := canonical(n.Prefix)
		a := addr
		if a.Is4() {
			a = netip.AddrFrom16(a.As16())
		}
		if p.Contains(a) && p.Bits() > bits {
			best, bits = i, p.Bits()
		}
	}
	return best, best >= 0
}

func randomPrefix(rng *rand.Rand, v6 bool) netip.Prefix {
	if v6 {
		var b [16]byte
		b[0], b[1] = 0x20, 0x01 // stay in a small part of the space so prefixes nest
		for i := 2; i < 16; i++ {
			b[i] = byte(rng.IntN(4))
		}
		return netip.PrefixFrom(netip.AddrFrom16(b), 16+rng.IntN(113)).Masked()
	}
	b := [4]byte{10, byte(rng.IntN(4)), byte(rng.IntN(8)), byte(rng.IntN(256))}
	return netip.PrefixFrom(netip.AddrFrom4(b), rng.IntN(33)).Masked()
}

func randomAddr(rng *rand.Rand, v6 bool) netip.Addr {
	if v6 {
		var b [16]byte
		b[0], b[1] = 0x20, 0x01
		for i := 2; i < 16; i++ {
			b[i] = byte(rng.IntN(4))
		}
		return netip.AddrFrom16(b)
	}
	return netip.AddrFrom4([4]byte{byte(9 + rng.IntN(3)), byte(rng.IntN(4)), byte(rng.IntN(8)), byte(rng.IntN(256))})
}

func TestTableAgainstNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		seen := map[netip.Prefix]bool{}
		var nets []Network
		for i := 0; i < 1+rng.IntN(40); i++ {
			p := randomPrefix(rng, rng.IntN(2) == 0)
			if seen[p] {
				continue
			}
			seen[p] = true
			nets = append(nets, Network{Prefix: p, Name: p.String()})
		}
		if round == 0 { // the edges of the space
			nets = append(nets, Network{Prefix: netip.MustParsePrefix("::/0"), Name: "all"},
				Network{Prefix: netip.MustParsePrefix("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"), Name: "last"})
		}
		tab := NewTable(nets)
		for i := 0; i < 500; i++ {
			a := randomAddr(rng, rng.IntN(2) == 0)
			want, wantOK := naive(nets, a)
			got, ok := tab.Lookup(a)
			if ok != wantOK || (ok && got.Name != nets[want].Name) {
				t.Fatalf("round %d, %s: got %v %v, want %v (networks %v)", round, a, got, ok, wantOK, nets)
			}
		}
	}
}

func TestDirection(t *testing.T) {
	c := sampleComponent(t)
	vm := &flow.VSphere{VMName: "vm"}
	ip := netip.MustParseAddr
	for _, tc := range []struct {
		name                string
		rec                 flow.Record
		locality, direction string
	}{
		{"both listed", flow.Record{SrcAddr: ip("10.1.2.3"), DstAddr: ip("2001:db8::1")}, Internal, EastWest},
		{"to an external network", flow.Record{SrcAddr: ip("10.1.2.3"), DstAddr: ip("203.0.113.9")}, External, NorthSouth},
		{"from the internet", flow.Record{SrcAddr: ip("198.51.100.1"), DstAddr: ip("10.0.0.1")}, External, NorthSouth},
		{"VM outside the listed networks", flow.Record{SrcAddr: ip("172.16.0.1"), DstAddr: ip("10.0.0.1"), Src: flow.Endpoint{VSphere: vm}}, Internal, EastWest},
		{"VM to the internet", flow.Record{SrcAddr: ip("172.16.0.1"), DstAddr: ip("8.8.8.8"), Src: flow.Endpoint{VSphere: vm}}, External, NorthSouth},
		{"transit", flow.Record{SrcAddr: ip("198.51.100.1"), DstAddr: ip("8.8.8.8")}, External, Unknown},
		{"no address", flow.Record{DstAddr: ip("10.0.0.1")}, "", Unknown},
	} {
		rec := tc.rec
		c.Enrich(&rec)
		if diff := cmp.Diff([]string{rec.Locality, rec.Direction}, []string{tc.locality, tc.direction}); diff != "" {
			t.Errorf("%s (-got, +want):\n%s", tc.name, diff)
		}
	}
}

func TestDefaultNetworks(t *testing.T) {
	c, err := New(reporter.NewForTest(nil), DefaultConfiguration())
	if err != nil {
		t.Fatal(err)
	}
	rec := flow.Record{SrcAddr: netip.MustParseAddr("192.168.1.1"), DstAddr: netip.MustParseAddr("fd00::1")}
	c.Enrich(&rec)
	if rec.Direction != EastWest {
		t.Errorf("private to unique-local: %s", rec.Direction)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte("10.0.0.0/8: {name: a}\n"))
	f.Add([]byte("::/0: {external: true}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		nets, err := Parse(strings.NewReader(string(data)))
		if err != nil {
			return
		}
		tab := NewTable(nets)
		for _, n := range nets {
			got, ok := tab.Lookup(n.Prefix.Addr())
			if !ok {
				t.Fatalf("%s: its own address is not found", n.Prefix)
			}
			if got.Prefix.Bits() < n.Prefix.Bits() {
				t.Fatalf("%s: found the shorter %s", n.Prefix, got.Prefix)
			}
		}
	})
}

func BenchmarkLookup(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	var nets []Network
	seen := map[netip.Prefix]bool{}
	for len(nets) < 1000 {
		p := randomPrefix(rng, len(nets)%2 == 0)
		if !seen[p] {
			seen[p] = true
			nets = append(nets, Network{Prefix: p})
		}
	}
	c, err := New(reporter.NewForTest(nil), Configuration{Networks: nets})
	if err != nil {
		b.Fatal(err)
	}
	recs := make([]flow.Record, 1024)
	for i := range recs {
		recs[i].SrcAddr, recs[i].DstAddr = randomAddr(rng, i%2 == 0), randomAddr(rng, i%3 == 0)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.Enrich(&recs[i&1023])
	}
}

// TestNetworkInfo: each end carries the most specific listed network's name,
// site, role and project, and the flow document writes them.
func TestNetworkInfo(t *testing.T) {
	c := sampleComponent(t)
	rec := flow.Record{SrcAddr: netip.MustParseAddr("10.1.2.3"), DstAddr: netip.MustParseAddr("198.51.100.1")}
	c.Enrich(&rec)
	if diff := cmp.Diff(rec.Src.Network, &flow.NetworkInfo{Name: "payments-db", Project: "payments"}); diff != "" {
		t.Errorf("source network (-got, +want):\n%s", diff)
	}
	if rec.Dst.Network != nil {
		t.Errorf("an unlisted address got network %+v", rec.Dst.Network)
	}
	rec = flow.Record{SrcAddr: netip.MustParseAddr("10.200.0.1"), DstAddr: netip.MustParseAddr("203.0.113.9")}
	c.Enrich(&rec)
	if diff := cmp.Diff([]*flow.NetworkInfo{rec.Src.Network, rec.Dst.Network},
		[]*flow.NetworkInfo{{Name: "datacenter", Site: "par1", Role: "servers"}, {Name: "partner-x"}}); diff != "" {
		t.Errorf("networks (-got, +want):\n%s", diff)
	}
	var e flow.Encoder
	doc := string(e.AppendDocument(nil, &rec))
	for _, want := range []string{`"source":{"ip":"10.200.0.1","network":{"name":"datacenter","role":"servers","site":"par1"}}`, `"network":{"name":"partner-x"}`} {
		if !strings.Contains(doc, want) {
			t.Errorf("document lacks %s:\n%s", want, doc)
		}
	}
	if testing.AllocsPerRun(100, func() { c.Enrich(&rec) }) != 0 {
		t.Error("Enrich allocates")
	}
}

// Flows to multicast groups and on the link are neither east-west nor
// north-south, with or without a networks file; a file that lists such a
// range (or a part of it) wins, a broader network (::/0 external) does not.
func TestLinkLocalAndMulticast(t *testing.T) {
	file := []Network{
		{Prefix: netip.MustParsePrefix("10.0.0.0/8")},
		{Prefix: netip.MustParsePrefix("0.0.0.0/0"), External: true},
		{Prefix: netip.MustParsePrefix("::/0"), External: true},
		{Prefix: netip.MustParsePrefix("169.254.169.0/24"), Name: "metadata"},
		{Prefix: netip.MustParsePrefix("239.192.0.0/14"), Name: "organization-local"},
	}
	for _, tc := range []struct {
		src, dst           string
		defaults, withFile string // direction without a file, with one
	}{
		{"10.0.0.1", "224.0.0.251", Multicast, Multicast},     // 224.0.0.0/24, mDNS
		{"10.0.0.1", "224.0.1.1", Multicast, Multicast},       // 224.0.0.0/4, NTP
		{"10.0.0.1", "239.255.255.250", Multicast, Multicast}, // SSDP
		{"10.0.0.1", "239.192.0.1", Multicast, EastWest},      // listed
		{"10.0.0.1", "255.255.255.255", LinkLocal, LinkLocal},
		{"169.254.7.1", "169.254.7.2", LinkLocal, LinkLocal},
		{"10.0.0.1", "169.254.1.1", LinkLocal, LinkLocal},
		{"10.0.0.1", "169.254.169.254", LinkLocal, EastWest}, // listed: the file wins
		{"fe80::2", "fe80::1", LinkLocal, LinkLocal},
		{"fe80::2", "ff02::fb", Multicast, Multicast}, // ff02::/16
		{"2001:db8::1", "ff05::1:3", Multicast, Multicast},
		{"::ffff:10.0.0.1", "::ffff:224.0.0.9", Multicast, Multicast}, // mapped
		{"10.0.0.1", "10.0.0.2", EastWest, EastWest},
		{"10.0.0.1", "198.51.100.7", NorthSouth, NorthSouth},
	} {
		for _, c := range []struct {
			cfg  Configuration
			want string
		}{{DefaultConfiguration(), tc.defaults}, {Configuration{Networks: file}, tc.withFile}} {
			comp, err := New(reporter.NewForTest(nil), c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			rec := flow.Record{SrcAddr: netip.MustParseAddr(tc.src), DstAddr: netip.MustParseAddr(tc.dst)}
			comp.Enrich(&rec)
			wantLocality := c.want
			switch c.want {
			case EastWest:
				wantLocality = Internal
			case NorthSouth:
				wantLocality = External
			}
			if rec.Direction != c.want || rec.Locality != wantLocality {
				t.Errorf("%s → %s (file %v): %s/%s, want %s/%s", tc.src, tc.dst, c.cfg.Networks != nil, rec.Locality, rec.Direction, wantLocality, c.want)
			}
		}
	}
}

// TestFirstBytesFilter: in, which skips addresses whose first byte no range
// has, answers as the ranges' Contains alone would, for addresses of every
// first byte in each family, mapped, zoned and invalid ones, with the file
// of TestLinkLocalAndMulticast listing parts of the ranges.
func TestFirstBytesFilter(t *testing.T) {
	comp, err := New(reporter.NewForTest(nil), Configuration{Networks: []Network{
		{Prefix: netip.MustParsePrefix("169.254.169.0/24"), Name: "metadata"},
		{Prefix: netip.MustParsePrefix("239.192.0.0/14"), Name: "organization-local"},
		{Prefix: netip.MustParsePrefix("ff05::/16"), Name: "site-local groups"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	unfiltered := func(addr netip.Addr, ranges []netip.Prefix) bool {
		all := &firstBytes{}
		for i := range all.v4 {
			all.v4[i], all.v6[i] = true, true
		}
		return comp.in(addr, ranges, all)
	}
	rng := rand.New(rand.NewPCG(8, 1))
	var addrs []netip.Addr
	for first := range 256 {
		for range 64 {
			var v [16]byte
			for i := range v {
				v[i] = byte(rng.Uint32())
			}
			v[0] = byte(first)
			if rng.IntN(2) == 0 {
				v[1] = []byte{254, 169, 0x80, 0xbf, 0xc0, 2}[rng.IntN(6)] // near the ranges' second bytes
			}
			a4 := netip.AddrFrom4([4]byte(v[:4]))
			addrs = append(addrs, a4, netip.AddrFrom16(a4.As16()), netip.AddrFrom16(v), netip.AddrFrom16(v).WithZone("eth0"))
		}
	}
	addrs = append(addrs, netip.Addr{}, netip.MustParseAddr("255.255.255.255"), netip.MustParseAddr("169.254.169.254"))
	hits := 0
	for _, a := range addrs {
		for _, rs := range []struct {
			ranges []netip.Prefix
			first  *firstBytes
		}{{multicastRanges, multicastFirst}, {linkLocalRanges, linkLocalFirst}} {
			got, want := comp.in(a, rs.ranges, rs.first), unfiltered(a, rs.ranges)
			if got != want {
				t.Fatalf("%v in %v: %t, without the filter %t", a, rs.ranges, got, want)
			}
			if got {
				hits++
			}
		}
	}
	if hits < 1000 {
		t.Errorf("only %d addresses in the ranges: the draw tests the filter one way only", hits)
	}
}
