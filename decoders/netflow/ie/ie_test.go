package ie_test

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/spanflow/spanflow/decoders/netflow/ie"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestFieldNames: the generator's naming rules and the package's agree on
// every element, and no two elements of different types share a field name
// within IANA's registry.
func TestFieldNames(t *testing.T) {
	types := map[string]ie.Type{}
	for _, e := range ie.All() {
		prefix := ""
		if i := strings.IndexByte(e.Field, '_'); i > 0 && (e.PEN != 0 || e.ID >= 32768) {
			prefix = e.Field[:i]
		}
		if got := ie.FieldName(prefix, e.Name); got != e.Field {
			t.Errorf("%d/%d %s: FieldName %q, generated %q", e.PEN, e.ID, e.Name, got, e.Field)
		}
		if e.PEN == 0 && e.ID < 32768 {
			if old, ok := types[e.Field]; ok && old != e.Type {
				t.Errorf("IANA field %s has two types", e.Field)
			}
			types[e.Field] = e.Type
		}
	}
	for _, c := range []struct{ in, want string }{
		{"sourceIPv4Address", "source_ipv4_address"}, {"VRFname", "vrf_name"},
		{"SRC_FRAGMENTS", "src_fragments"}, {"httpX-Forwarded-For", "http_x_forwarded_for"},
		{"postNAPTSourceTransportPort", "post_napt_source_transport_port"},
	} {
		if got := ie.SnakeCase(c.in); got != c.want {
			t.Errorf("SnakeCase(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestIANANamesAgainstTshark compares the registry's IANA names with the
// names tshark gives the same element ids (for ids of 128 and above tshark
// uses IANA's names; below, NetFlow v9's, which are not compared). tshark
// 4.0's table is older than IANA's registry: elements IANA renamed since
// are listed apart.
func TestIANANamesAgainstTshark(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	out, err := exec.Command(tshark, "-G", "values").Output()
	if err != nil {
		t.Fatal(err)
	}
	// tshark names 213-215 collector*, IANA's registry export* (IANA's is
	// the registry the collector follows).
	renamed := map[uint16]bool{213: true, 214: true, 215: true}
	compared := 0
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 4 || f[0] != "V" || f[1] != "cflow.template_ipfix_field_type" {
			continue
		}
		id, err := strconv.Atoi(f[2])
		if err != nil || id < 128 || id >= 32768 || strings.ContainsAny(f[3], " _") || strings.ToUpper(f[3]) == f[3] {
			continue
		}
		e, ok := ie.Lookup(0, uint16(id))
		if !ok {
			t.Errorf("element %d (%s): tshark knows it, the registry does not", id, f[3])
			continue
		}
		compared++
		if !strings.EqualFold(e.Name, f[3]) && !renamed[uint16(id)] {
			t.Errorf("element %d: registry %q, tshark %q", id, e.Name, f[3])
		}
	}
	if compared < 300 {
		t.Errorf("compared only %d IANA names with tshark", compared)
	}
}
