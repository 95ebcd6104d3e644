package netflow

import (
	"encoding/binary"
	"encoding/hex"
	"math"
	"strconv"
	"time"

	"github.com/spanflow/spanflow/decoders/netflow/ie"
	"github.com/spanflow/spanflow/internal/flow"
)

// Enterprise numbers with special handling.
const (
	penJuniper = 2636
	penCisco   = 9
)

// element names an element without an ECS home: its registry entry, or
// ie_<id> / pen<N>_<id> (written as hex) when the registry does not know it.
func element(pen uint32, typ uint16) (string, ie.Type, bool) {
	if pen == ie.Reverse {
		if e, ok := ie.Lookup(0, typ); ok && typ < 32768 {
			return "reverse_" + e.Field, e.Type, true
		}
		return "reverse_" + strconv.Itoa(int(typ)), ie.OctetArray, false
	}
	if e, ok := ie.Lookup(pen, typ); ok {
		return e.Field, e.Type, true
	}
	if pen == 0 {
		return "ie_" + strconv.Itoa(int(typ)), ie.OctetArray, false
	}
	return "pen" + strconv.FormatUint(uint64(pen), 10) + "_" + strconv.Itoa(int(typ)), ie.OctetArray, false
}

// juniperProperties names Juniper's common properties (element 137 of PEN
// 2636): the top 6 bits of the value say which property the rest is.
var juniperProperties = [...]string{
	1: "juniper_forwarding_class_drop_priority",
	2: "juniper_forwarding_exception_code",
	3: "juniper_forwarding_nexthop_id",
	4: "juniper_egress_interface_index",
	5: "juniper_ingress_underlying_interface_index",
	6: "juniper_ingress_interface_index",
}

func juniperProperty(v []byte) (flow.Extra, bool) {
	if len(v) == 0 || len(v) > 8 {
		return flow.Extra{}, false
	}
	x := be(v)
	shift := uint(len(v)*8 - 6)
	id := x >> shift
	if int(id) >= len(juniperProperties) || juniperProperties[id] == "" {
		return flow.Extra{}, false
	}
	return flow.Extra{Name: juniperProperties[id], Num: x & (1<<shift - 1)}, true
}

// extra makes a netflow.<name> value from raw bytes of the element's type.
// A name always gets the same JSON type, whatever the value's length, so
// that Elasticsearch's dynamic mapping never conflicts: numbers for
// unsigned, signed and float elements, booleans, strings for everything
// else (dates in RFC 3339, addresses, MACs); values that do not fit their
// type are left out rather than written as another JSON type.
func extra(name string, typ ie.Type, known bool, v []byte) (flow.Extra, bool) {
	if !known {
		return flow.Extra{Name: name, Str: hex.EncodeToString(v), IsStr: true}, true
	}
	switch typ {
	case ie.Unsigned:
		if len(v) <= 8 {
			return flow.Extra{Name: name, Num: be(v)}, true
		}
		return flow.Extra{}, false
	case ie.Signed:
		if len(v) == 0 || len(v) > 8 {
			return flow.Extra{}, false
		}
		x := int64(be(v)) << (64 - 8*len(v)) >> (64 - 8*len(v)) // sign-extend
		return flow.Extra{Name: name, Raw: strconv.AppendInt(nil, x, 10)}, true
	case ie.Float:
		var f float64
		switch len(v) {
		case 4:
			f = float64(math.Float32frombits(binary.BigEndian.Uint32(v)))
		case 8:
			f = math.Float64frombits(binary.BigEndian.Uint64(v))
		default:
			return flow.Extra{}, false
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return flow.Extra{}, false
		}
		return flow.Extra{Name: name, Raw: strconv.AppendFloat(nil, f, 'g', -1, 64)}, true
	case ie.Boolean:
		// RFC 7011 §6.1.5: 1 is true, 2 is false.
		if len(v) != 1 || (v[0] != 1 && v[0] != 2) {
			return flow.Extra{}, false
		}
		return flow.Extra{Name: name, Raw: []byte(strconv.FormatBool(v[0] == 1))}, true
	case ie.IPv4, ie.IPv6:
		if a, ok := toAddr(v); ok {
			return flow.Extra{Name: name, Str: a.Unmap().String(), IsStr: true}, true
		}
		return flow.Extra{}, false
	case ie.MAC:
		if len(v) == 6 {
			return flow.Extra{Name: name, Str: flow.MAC(v).String(), IsStr: true}, true
		}
		return flow.Extra{}, false
	case ie.String:
		return flow.Extra{Name: name, Str: cleanString(v), IsStr: true}, true
	case ie.DateSeconds, ie.DateMillis, ie.DateMicros, ie.DateNanos:
		var t time.Time
		switch {
		case typ == ie.DateSeconds && len(v) == 4:
			t = time.Unix(int64(be(v)), 0)
		case typ == ie.DateMillis && len(v) == 8:
			t = time.UnixMilli(int64(be(v)))
		case (typ == ie.DateMicros || typ == ie.DateNanos) && len(v) == 8:
			t = ntpTime(be(v))
		default:
			return flow.Extra{}, false
		}
		return flow.Extra{Name: name, Str: t.UTC().Format(time.RFC3339Nano), IsStr: true}, true
	}
	return flow.Extra{Name: name, Str: hex.EncodeToString(v), IsStr: true}, true
}

// appendExtra appends the named value of an element to r.Extra.
func (s *State) appendExtra(r *flow.Record, pen uint32, typ uint16, v []byte) {
	if pen == penJuniper && typ == 137 {
		if x, ok := juniperProperty(v); ok {
			s.addExtra(r, x)
			return
		}
	}
	if pen == penCisco && typ == 12235 && len(v) >= 6 {
		// Cisco AVC's application HTTP host starts with the 4-byte NBAR
		// application id and a 2-byte sub-application id (tshark reads it so).
		s.addExtra(r, flow.Extra{Name: "cisco_app_http_host", Str: cleanString(v[6:]), IsStr: true})
		return
	}
	name, t, known := element(pen, typ)
	if known && (t == ie.BasicList || t == ie.SubTemplateList || t == ie.SubTemplateMultiList) {
		if raw, ok := s.structured(t, v, 0); ok {
			s.addExtra(r, flow.Extra{Name: name, Raw: raw})
		}
		return
	}
	if x, ok := extra(name, t, known, v); ok {
		s.addExtra(r, x)
	}
}

// extraSlab is how many Extra elements the records of a State share an
// allocation for.
const extraSlab = 64

// addExtra appends x to r.Extra, with the space taken from a slab the
// State's records share rather than one allocation per record (an
// exporter that sends biflowDirection, as spanflow's does on TCP records,
// took 1 allocation and 82 ns more a record). The slab only grows and is
// replaced when full, never rewritten, and each record's Extra is a
// slice of it whose capacity is its length: a record kept after the next
// datagram keeps its elements, and appending to its Extra elsewhere copies
// them.
func (s *State) addExtra(r *flow.Record, x flow.Extra) {
	n, k := len(s.extras), len(r.Extra)
	switch {
	case k > 0 && n > 0 && n < cap(s.extras) && &r.Extra[k-1] == &s.extras[n-1]:
		// r's elements end the slab: grow them in place.
		s.extras = append(s.extras, x)
		r.Extra = s.extras[n-k : n+1 : n+1]
	case k > 0:
		r.Extra = append(r.Extra, x)
	default:
		if n == cap(s.extras) {
			s.extras, n = make([]flow.Extra, 0, extraSlab), 0
		}
		s.extras = append(s.extras, x)
		r.Extra = s.extras[n : n+1 : n+1]
	}
}
