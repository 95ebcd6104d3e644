package netflow

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/flow"
)

// templateRecord defines template id with one field: protocolIdentifier,
// one byte.
func templateRecord(id uint16) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = binary.BigEndian.AppendUint16(b, 1)
	b = binary.BigEndian.AppendUint16(b, 4)
	return binary.BigEndian.AppendUint16(b, 1)
}

// templatesAndData is an IPFIX message: before data sets of template 256
// (one record of one byte each), then a template set that defines
// template 256 defs times over (with others between), then after more
// such data sets.
func templatesAndData(before, defs, after int) []byte {
	var sets [][]byte
	for range before {
		sets = append(sets, flowSet(256, 6))
	}
	var tpl []byte
	for i := range defs {
		tpl = append(tpl, templateRecord(256+uint16(i%2)*uint16(1+i%7))...)
	}
	sets = append(sets, flowSet(2, tpl...))
	for range after {
		sets = append(sets, flowSet(256, 17))
	}
	return message(10, 1, sets...)
}

// TestHeldBeforeTheirTemplate: the data sets of a datagram that come
// before their template's definition in it are counted as held (goflow2
// could not read them in order; they were decoded once it was known), the
// ones after it are not, however many times the template is defined.
func TestHeldBeforeTheirTemplate(t *testing.T) {
	for _, tc := range []struct{ before, defs, after int }{{1, 1, 0}, {0, 1, 1}, {3, 1, 2}, {2, 40, 5}, {0, 40, 7}} {
		s := NewState(netip.MustParseAddr("192.0.2.1"), DefaultLimits(), nil)
		recs, info, err := s.Decode(templatesAndData(tc.before, tc.defs, tc.after), time.Unix(1e9, 0), nil)
		if err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		if len(recs) != tc.before+tc.after || info.Held != tc.before {
			t.Errorf("%+v: %d records, %d held; want %d and %d", tc, len(recs), info.Held, tc.before+tc.after, tc.before)
		}
	}
}

// BenchmarkTemplatesAndData: one datagram of 62 KB that defines a template
// 4,000 times and carries 6,000 one-byte data sets of it before, as a hostile
// exporter could send over and over; ns/op is per datagram.
func BenchmarkTemplatesAndData(b *testing.B) {
	msg := templatesAndData(6000, 4000, 0)
	if len(msg) > 65535 {
		b.Fatalf("message of %d bytes", len(msg))
	}
	s := NewState(netip.MustParseAddr("192.0.2.1"), DefaultLimits(), nil)
	var out []flow.Record
	for b.Loop() {
		var err error
		out, _, err = s.Decode(msg, time.Unix(1e9, 0), out[:0])
		if err != nil {
			b.Fatal(err)
		}
	}
}
