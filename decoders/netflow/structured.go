package netflow

import (
	"encoding/binary"
	"strconv"

	nf "github.com/netsampler/goflow2/v2/decoders/netflow"

	"github.com/spanflow/spanflow/decoders/netflow/ie"
	"github.com/spanflow/spanflow/internal/flow"
)

// RFC 6313 structured data: basicList (a list of values of one element),
// subTemplateList (records of one template) and subTemplateMultiList
// (records of several templates), as YAF sends its DNS and TLS data. They
// are written as JSON arrays (of values, or of objects named like the
// record's own elements) in the element's netflow.* field.
//
// Bounds: lists nest at most maxNesting deep and a list holds at most
// maxListEntries entries and maxListBytes of JSON; a template whose records take no bytes ends its
// list (it would repeat forever). Anything malformed ends the value: what
// decoded is kept.
const (
	maxNesting     = 4
	maxListEntries = 1024
	maxListBytes   = 64 << 10 // of JSON, per list (names make it longer than its bytes)
)

// structured renders a list element's value as a JSON array; ok is false
// when nothing could be read from it.
func (s *State) structured(typ ie.Type, v []byte, depth int) ([]byte, bool) {
	if depth >= maxNesting || len(v) < 1 {
		return nil, false
	}
	v = v[1:] // semantic
	b := []byte{'['}
	n := 0
	switch typ {
	case ie.BasicList:
		if len(v) < 4 {
			return nil, false
		}
		id, l := binary.BigEndian.Uint16(v), binary.BigEndian.Uint16(v[2:])
		v = v[4:]
		var pen uint32
		if id&0x8000 != 0 {
			if len(v) < 4 {
				return nil, false
			}
			pen, id, v = binary.BigEndian.Uint32(v), id&0x7fff, v[4:]
		}
		if l == 0 {
			return nil, false
		}
		for len(v) > 0 && n < maxListEntries && len(b) < maxListBytes {
			var x []byte
			x, v = field(v, l)
			if x == nil {
				break
			}
			var val []byte
			if val = s.value(pen, id, x, depth); val == nil {
				continue
			}
			if n > 0 {
				b = append(b, ',')
			}
			b = append(b, val...)
			n++
		}
	case ie.SubTemplateList:
		if len(v) < 2 {
			return nil, false
		}
		b, n = s.records(b, binary.BigEndian.Uint16(v), v[2:], depth, n)
	case ie.SubTemplateMultiList:
		for len(v) >= 4 && n < maxListEntries && len(b) < maxListBytes {
			id, l := binary.BigEndian.Uint16(v), int(binary.BigEndian.Uint16(v[2:]))
			if l < 4 || l > len(v) {
				break
			}
			b, n = s.records(b, id, v[4:l], depth, n)
			v = v[l:]
		}
	default:
		return nil, false
	}
	return append(b, ']'), true
}

// records appends the records of one template in data as JSON objects.
func (s *State) records(b []byte, id uint16, data []byte, depth, n int) ([]byte, int) {
	tpl, ok := s.templates[templateKey(s.hdr.version, s.hdr.domain, id)].(nf.TemplateRecord)
	if !ok {
		return b, n
	}
	size := 0
	for _, f := range tpl.Fields {
		if f.Length == 0xffff {
			size++ // at least its length byte
		} else {
			size += int(f.Length)
		}
	}
	if size == 0 {
		return b, n
	}
	for len(data) >= size && n < maxListEntries && len(b) < maxListBytes {
		if n > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		first := true
		for _, f := range tpl.Fields {
			var x []byte
			x, data = field(data, f.Length)
			if x == nil {
				data = nil
				break
			}
			pen := f.Pen
			if !f.PenProvided {
				pen = 0
			}
			name, _, _ := element(pen, f.Type)
			val := s.value(pen, f.Type, x, depth)
			if val == nil {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = flow.AppendJSONString(b, name)
			b = append(b, ':')
			b = append(b, val...)
		}
		b = append(b, '}')
		n++
	}
	return b, n
}

// field cuts one field of length l (0xffff: variable, RFC 7011 §7) off data;
// nil when data is too short.
func field(data []byte, l uint16) (x, rest []byte) {
	n := int(l)
	if l == 0xffff {
		if len(data) < 1 {
			return nil, nil
		}
		n, data = int(data[0]), data[1:]
		if n == 0xff {
			if len(data) < 2 {
				return nil, nil
			}
			n, data = int(binary.BigEndian.Uint16(data)), data[2:]
		}
	}
	if n > len(data) {
		return nil, nil
	}
	return data[:n:n], data[n:]
}

// value renders one element's value as JSON (nil: left out).
func (s *State) value(pen uint32, id uint16, v []byte, depth int) []byte {
	name, t, known := element(pen, id)
	if known && (t == ie.BasicList || t == ie.SubTemplateList || t == ie.SubTemplateMultiList) {
		out, ok := s.structured(t, v, depth+1)
		if !ok {
			return nil
		}
		return out
	}
	x, ok := extra(name, t, known, v)
	switch {
	case !ok:
		return nil
	case x.Raw != nil:
		return x.Raw
	case x.IsStr:
		return flow.AppendJSONString(nil, x.Str)
	}
	return strconv.AppendUint(nil, x.Num, 10)
}
