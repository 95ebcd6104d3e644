package netflow

import (
	"fmt"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/flow"
)

// FuzzKnownSets decodes a message of data sets after a template message,
// once through decodeKnown and once through goflow2's path, and checks that
// both give the same records, the same Info and the same error: the fast
// path of known data templates must not change what is decoded.
func FuzzKnownSets(f *testing.F) {
	// Template 256: source address, destination address, protocol,
	// octets (8 bytes), and a variable-length interface name.
	tpl10 := message(10, 1, flowSet(2, 1, 0, 0, 5, 0, 8, 0, 4, 0, 12, 0, 4, 0, 4, 0, 1, 0, 1, 0, 8, 0, 82, 0xff, 0xff))
	tpl9 := message(9, 1, flowSet(0, 1, 0, 0, 4, 0, 8, 0, 4, 0, 12, 0, 4, 0, 4, 0, 1, 0, 1, 0, 8))
	rec := []byte{10, 0, 0, 1, 10, 0, 0, 2, 6, 0, 0, 0, 0, 0, 0, 5, 220, 3, 'e', 't', 'h'}
	rec9 := rec[:17]
	f.Add(uint8(10), message(10, 1, flowSet(256, rec...)))
	f.Add(uint8(10), message(10, 1, flowSet(256, append(append([]byte{}, rec...), rec...)...), flowSet(256, rec...)))
	f.Add(uint8(10), message(10, 1, flowSet(256, rec[:10]...)))
	f.Add(uint8(10), message(10, 2, flowSet(256, rec...)))
	f.Add(uint8(10), message(10, 1, flowSet(257, rec...), flowSet(256, rec...)))
	f.Add(uint8(9), message(9, 1, flowSet(256, rec9...), flowSet(256, rec9...)))
	f.Add(uint8(9), message(9, 1, flowSet(256, append(append([]byte{}, rec9...), 0, 0, 0)...)))
	f.Fuzz(func(t *testing.T, version uint8, p []byte) {
		tpl := tpl10
		if version == 9 {
			tpl = tpl9
		}
		now := time.Unix(1e9, 0)
		decode := func(slow bool) ([]flow.Record, Info, string) {
			goflow2Only = slow
			defer func() { goflow2Only = false }()
			s := NewState(netip.MustParseAddr("192.0.2.1"), DefaultLimits(), nil)
			if _, _, err := s.Decode(tpl, now, nil); err != nil {
				t.Fatal(err)
			}
			var out []flow.Record
			var info Info
			var err error
			for range 2 { // twice: sequence and held state carry over
				out, info, err = s.Decode(p, now, out)
			}
			return out, info, fmt.Sprint(err)
		}
		fr, fi, fe := decode(false)
		sr, si, se := decode(true)
		if !reflect.DeepEqual(fr, sr) || !reflect.DeepEqual(fi, si) || fe != se {
			t.Fatalf("fast path differs from goflow2's:\nrecords %+v\n   vs   %+v\ninfo %+v vs %+v\nerr %s vs %s", fr, sr, fi, si, fe, se)
		}
	})
}
