package interfaces

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

const sample = `
192.0.2.1:
  1: ge-0/0/1
  2: ge-0/0/2
"2001:db8::1":
  10: uplink
`

func TestConfigured(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ifnames.yaml")
	if err := os.WriteFile(file, []byte(sample), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfiguration()
	cfg.File = file
	n, err := New(reporter.NewForTest(nil), cfg)
	if err != nil {
		t.Fatal(err)
	}
	exp1, exp2, exp3 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("198.51.100.7")

	for _, tc := range []struct {
		rec       flow.Record
		in, out   string
		situation string
	}{
		{flow.Record{ObserverIP: exp1, InIf: 1, OutIf: 2}, "ge-0/0/1", "ge-0/0/2", "configured"},
		{flow.Record{ObserverIP: netip.MustParseAddr("::ffff:192.0.2.1"), InIf: 2, OutIf: 3}, "ge-0/0/2", "", "mapped exporter"},
		{flow.Record{ObserverIP: exp2, InIf: 10, OutIf: 11}, "uplink", "", "unknown index"},
		{flow.Record{ObserverIP: exp3, InIf: 5, OutIf: 6}, "", "", "unknown exporter"},
		{flow.Record{ObserverIP: exp3, InIf: 5, InIfName: "from-record"}, "from-record", "", "name in the record"},
		{flow.Record{ObserverIP: exp1, InIf: 1, InIfName: "from-record"}, "ge-0/0/1", "", "configured name over the record's"},
		{flow.Record{ObserverIP: exp1}, "", "", "no index"},
	} {
		rec := tc.rec
		n.Enrich(&rec)
		if rec.InIfName != tc.in || rec.OutIfName != tc.out {
			t.Errorf("%s: got %q/%q, want %q/%q", tc.situation, rec.InIfName, rec.OutIfName, tc.in, tc.out)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"banana:\n  1: x\n", "banana"},
		{"192.0.2.1:\n  0: x\n", "ifIndex 0"},
		{"192.0.2.1:\n  1: \"\"\n", "empty name"},
		{"192.0.2.1:\n  one: x\n", "one"},
		{"192.0.2.1:\n  1: x\n\"::ffff:192.0.2.1\":\n  2: y\n", "twice"},
	} {
		_, err := Parse(strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one mentioning %q", tc.in, err, tc.want)
		}
	}
}

// TestReadFileErrors: every problem of an interface names file comes back
// on a line of its own with that file's name and line.
func TestReadFileErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "if.yaml")
	os.WriteFile(path, []byte("192.0.2.1:\n  1: a\n  0: b\n  one: c\nbanana:\n  1: x\n\"::ffff:192.0.2.1\":\n  2: y\n192.0.2.2: [a]\n"), 0o600)
	want := []string{
		path + `:3: exporter 192.0.2.1: ifIndex 0 means unknown and cannot be named`,
		path + `:4: key "one" is not a whole number`,
		path + `:5: banana is not an IP address (write the exporter's address, such as 192.0.2.1 or "2001:db8::1")`,
		path + `:7: exporter ::ffff:192.0.2.1 is listed twice (also as 192.0.2.1 at line 1): keep one`,
		path + `:9: 192.0.2.2: want a mapping of keys to values, not a list`,
	}
	_, err := ReadFile(path)
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("got:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
	os.WriteFile(path, []byte("- 192.0.2.1\n"), 0o600)
	if _, err := ReadFile(path); err == nil || err.Error() != path+":1: the file must hold a mapping of keys, not a list" {
		t.Errorf("a list: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte("10.0.0.1: {1: a}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		names, err := Parse(strings.NewReader(string(data)))
		if err != nil {
			return
		}
		n, err := New(reporter.NewForTest(nil), Configuration{Names: names})
		if err != nil {
			t.Fatal(err)
		}
		for exp, m := range names {
			for idx, name := range m {
				if got, _ := n.Name(exp, idx); got != name {
					t.Fatalf("%s %d: %q, want %q", exp, idx, got, name)
				}
			}
		}
	})
}

func BenchmarkEnrich(b *testing.B) {
	exp := netip.MustParseAddr("192.0.2.9")
	names := map[uint32]string{}
	for i := uint32(1); i <= 1000; i++ {
		names[i] = "ifname"
	}
	n, err := New(reporter.NewForTest(nil), Configuration{Names: map[netip.Addr]map[uint32]string{exp: names}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		rec := flow.Record{ObserverIP: exp, InIf: uint32(i%1000) + 1, OutIf: uint32(i%999) + 1}
		n.Enrich(&rec)
	}
}
