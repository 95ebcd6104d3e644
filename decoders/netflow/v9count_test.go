package netflow

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

// TestV9CountOfTemplatesOnly: a NetFlow v9 datagram whose header counts
// fewer sets than it holds (softflowd 1.1.0 counts its templates) has
// every set read, on both decoding paths: before, the data sets after the
// count were dropped without a word. A count above the sets, and bytes
// after the last whole set, change nothing.
func TestV9CountOfTemplatesOnly(t *testing.T) {
	tpl := flowSet(0, 1, 0, 0, 4, 0, 8, 0, 4, 0, 12, 0, 4, 0, 4, 0, 1, 0, 1, 0, 8)
	rec := []byte{10, 0, 0, 1, 10, 0, 0, 2, 6, 0, 0, 0, 0, 0, 0, 5, 220}
	two := append(append([]byte{}, rec...), rec...)
	for _, tc := range []struct {
		name  string
		count uint16
		tail  []byte
	}{
		{"count of templates", 1, nil},
		{"count of zero", 0, nil},
		{"count of records", 4, nil},
		{"count of templates, a short tail", 1, []byte{0, 0}},
	} {
		for _, slow := range []bool{false, true} {
			goflow2Only = slow
			s := NewState(netip.MustParseAddr("192.0.2.1"), DefaultLimits(), nil)
			// Template and data in one datagram, and data alone in the next.
			for i, p := range [][]byte{
				message(9, 1, tpl, flowSet(256, two...)),
				message(9, 1, flowSet(256, rec...)),
			} {
				p = append(p, tc.tail...)
				binary.BigEndian.PutUint16(p[2:], tc.count)
				orig := append([]byte(nil), p...)
				out, info, err := s.Decode(p, time.Unix(1e9, 0), nil)
				if want := []int{2, 1}[i]; err != nil || len(out) != want || info.Records != want {
					t.Errorf("%s (goflow2 path %v), datagram %d: %d records (info %d), error %v; want %d", tc.name, slow, i, len(out), info.Records, err, want)
				}
				if string(p) != string(orig) {
					t.Errorf("%s: the datagram was changed in place", tc.name)
				}
			}
			goflow2Only = false
		}
	}
}
