package netflow

import (
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"

	nf "github.com/netsampler/goflow2/v2/decoders/netflow"

	"github.com/spanflow/spanflow/internal/flow"
)

// randomTemplate draws a template of fixed-length fields: the elements the
// programs decode in their loop at every length (theirs and others), the
// ones they leave to applyField, spanflow's and other enterprises'.
func randomTemplate(rng *rand.Rand) []nf.Field {
	iana := []uint16{1, 2, 4, 5, 6, 7, 8, 10, 11, 12, 14, 136, 152, 153, // decoded in the loop
		21, 22, 27, 28, 32, 34, 56, 58, 80, 85, 86, 89, 95, 148, 150, 151, 154, 160, 176, 210, 243, 252, 253, 999}
	lengths := []uint16{1, 2, 4, 8, 4, 8, 2, 3, 6, 16, 0}
	fields := make([]nf.Field, 1+rng.IntN(24))
	for i := range fields {
		f := nf.Field{Type: iana[rng.IntN(len(iana))], Length: lengths[rng.IntN(len(lengths))]}
		switch rng.IntN(8) {
		case 0:
			f.PenProvided, f.Pen = true, flow.EnterpriseNumber
			f.Type = []uint16{flow.IETCPRTTClientMicroseconds, flow.IETCPRTTServerMicroseconds,
				flow.IETCPRetransmittedPackets, flow.IETCPZeroWindowEvents, 77}[rng.IntN(5)]
		case 1:
			f.PenProvided, f.Pen = true, []uint32{9, 29305, 3054}[rng.IntN(3)]
		case 2:
			f.Pen = flow.EnterpriseNumber // without the enterprise bit: an IANA element
		}
		fields[i] = f
	}
	return fields
}

// TestProgramDecodesAsFieldByField: random templates and data, decoded by
// the compiled program and by decodeData, the field-by-field reader the
// capture tests check against tshark, give the same records.
func TestProgramDecodesAsFieldByField(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 8))
	exporter := netip.MustParseAddr("192.0.2.9")
	received := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	compiled, looped := 0, 0
	for range 20_000 {
		fields := randomTemplate(rng)
		p := compile(fields)
		if p == nil {
			if allEmpty(fields) {
				continue // records of no bytes: refused as a template
			}
			t.Fatalf("no program for fixed-length fields %+v", fields)
		}
		for _, o := range p.ops {
			if o.code != opField {
				looped++
			}
		}
		compiled++
		data := make([]byte, p.size*rng.IntN(5)+rng.IntN(p.size)) // whole records, then padding
		for i := range data {
			// Small values as often as any: zero addresses and ports, short times.
			if rng.IntN(3) == 0 {
				data[i] = byte(rng.Uint32())
			}
		}
		h := header{version: []uint16{9, 10}[rng.IntN(2)], domain: rng.Uint32N(3), exportSecs: 1_765_000_000 + rng.Uint32N(1000),
			sysUptime: rng.Uint32()}
		a := NewState(exporter, DefaultLimits(), nil)
		b := NewState(exporter, DefaultLimits(), nil)
		got := a.run(nil, p, a.domain(&h), &h, data, received)
		want := b.decodeData(nil, &h, fields, data, received)
		if len(got) != len(data)/p.size || !reflect.DeepEqual(got, want) {
			t.Fatalf("template %+v, data %x:\nprogram %+v\nfield by field %+v", fields, data, got, want)
		}
	}
	if looped < compiled {
		t.Errorf("%d fields decoded in the loop over %d templates: the draw misses the loop's elements", looped, compiled)
	}
}

func allEmpty(fields []nf.Field) bool {
	for _, f := range fields {
		if f.Length != 0 {
			return false
		}
	}
	return true
}

// TestProgramRefusesVariableLength: a template with a variable-length field
// has no program (decodeData reads it field by field), nor does one whose
// records would have no bytes.
func TestProgramRefusesVariableLength(t *testing.T) {
	if compile([]nf.Field{{Type: 8, Length: 4}, {Type: 82, Length: 0xffff}}) != nil {
		t.Error("program for a variable-length field")
	}
	if compile([]nf.Field{{Type: 210, Length: 0}}) != nil {
		t.Error("program for records of no bytes")
	}
}

// TestProgramFollowsTheTemplate: an exporter that redefines a template
// has its data read with the new definition, not the program (nor the
// state's last template) of the old; one that withdraws it has its data
// held for a template again.
func TestProgramFollowsTheTemplate(t *testing.T) {
	s := NewState(netip.MustParseAddr("192.0.2.9"), DefaultLimits(), nil)
	now := time.Unix(1_765_000_000, 0)
	data := message(10, 1, flowSet(300, 10, 0, 0, 1, 0, 80))
	for _, tc := range []struct {
		fields []nf.Field
		check  func(r *flow.Record) bool
	}{
		{[]nf.Field{{Type: 8, Length: 4}, {Type: 7, Length: 2}}, func(r *flow.Record) bool {
			return r.SrcAddr == netip.MustParseAddr("10.0.0.1") && r.SrcPort == 80
		}},
		{[]nf.Field{{Type: 12, Length: 4}, {Type: 11, Length: 2}}, func(r *flow.Record) bool {
			return r.DstAddr == netip.MustParseAddr("10.0.0.1") && r.DstPort == 80 && !r.SrcAddr.IsValid()
		}},
	} {
		tpl := nf.TemplateRecord{TemplateId: 300, FieldCount: uint16(len(tc.fields)), Fields: tc.fields}
		if err := (*templateStore)(s).AddTemplate(10, 1, 300, tpl); err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second time from the state's last template
			recs, _, err := s.Decode(data, now, nil)
			if err != nil || len(recs) != 1 || !tc.check(&recs[0]) {
				t.Fatalf("template %+v: %+v, %v", tc.fields, recs, err)
			}
		}
		if s.programs[templateKey(10, 1, 300)] == nil {
			t.Fatalf("template %+v decoded without its program", tc.fields)
		}
	}
	if _, err := (*templateStore)(s).RemoveTemplate(10, 1, 300); err != nil {
		t.Fatal(err)
	}
	recs, info, _ := s.Decode(data, now, nil)
	if len(recs) != 0 || info.Held != 1 {
		t.Fatalf("after the template's withdrawal: %+v, %d sets held", recs, info.Held)
	}
}

// FuzzProgram: a template drawn from the first bytes (three a field: the
// element, its length, its enterprise) and the rest as data, decoded by the
// program and field by field: the same records, and no panic.
func FuzzProgram(f *testing.F) {
	f.Add(uint8(10), []byte{0, 2, 0, 1, 1, 0, 9, 1, 0}, []byte{10, 0, 0, 1, 0, 0, 0, 9, 0, 80, 1, 2})
	f.Add(uint8(9), []byte{12, 3, 0, 13, 3, 0, 3, 0, 1}, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13})
	f.Fuzz(func(t *testing.T, version uint8, tpl, data []byte) {
		iana := []uint16{1, 2, 4, 5, 6, 7, 8, 10, 11, 12, 14, 136, 152, 153, 21, 22, 27, 28, 32, 56, 85, 150, 154, 243, 252}
		lengths := []uint16{1, 2, 4, 8, 3, 6, 16, 0}
		var fields []nf.Field
		for ; len(tpl) >= 3 && len(fields) < 64; tpl = tpl[3:] {
			fd := nf.Field{Type: iana[int(tpl[0])%len(iana)], Length: lengths[int(tpl[1])%len(lengths)]}
			switch tpl[2] % 4 {
			case 1:
				fd.PenProvided, fd.Pen = true, flow.EnterpriseNumber
				fd.Type = flow.IETCPRTTClientMicroseconds + uint16(tpl[0]%5)
			case 2:
				fd.PenProvided, fd.Pen = true, 9
			}
			fields = append(fields, fd)
		}
		p := compile(fields)
		if p == nil {
			return
		}
		h := header{version: 9 + uint16(version%2), domain: 1, exportSecs: 1_765_000_000, sysUptime: 100_000}
		exporter := netip.MustParseAddr("192.0.2.9")
		st := NewState(exporter, DefaultLimits(), nil)
		got := st.run(nil, p, st.domain(&h), &h, data, time.Unix(1_765_000_001, 0))
		want := NewState(exporter, DefaultLimits(), nil).decodeData(nil, &h, fields, data, time.Unix(1_765_000_001, 0))
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("template %+v, data %x:\nprogram %+v\nfield by field %+v", fields, data, got, want)
		}
	})
}

// TestProgramWithinTheBytes: a program counts against the exporter's
// bytes while it is kept and gives them back with its template; one the
// bytes have no room for is not kept, and its data is read field by field.
func TestProgramWithinTheBytes(t *testing.T) {
	fields := []nf.Field{{Type: 8, Length: 4}, {Type: 12, Length: 4}, {Type: 7, Length: 2}, {Type: 11, Length: 2}}
	tpl := nf.TemplateRecord{TemplateId: 300, FieldCount: uint16(len(fields)), Fields: fields}
	data := message(10, 1, flowSet(300, 10, 0, 0, 1, 10, 0, 0, 2, 0, 80, 1, 187))
	want := func(recs []flow.Record) bool {
		return len(recs) == 1 && recs[0].SrcAddr == netip.MustParseAddr("10.0.0.1") && recs[0].DstPort == 443
	}
	prog := programCost(compile(fields))
	for _, tc := range []struct {
		name     string
		room     int // bytes beyond the template and its domain
		compiled bool
	}{{"room", prog, true}, {"no room", prog - 1, false}} {
		t.Run(tc.name, func(t *testing.T) {
			limits := DefaultLimits()
			limits.MaxBytes = templateCost(tpl) + domainBytes + tc.room
			shared := NewBudget(1 << 20)
			s := NewState(netip.MustParseAddr("192.0.2.9"), limits, shared)
			if err := (*templateStore)(s).AddTemplate(10, 1, 300, tpl); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				recs, _, err := s.Decode(data, time.Unix(1_765_000_000, 0), nil)
				if err != nil || !want(recs) {
					t.Fatalf("%+v, %v", recs, err)
				}
			}
			if got := s.programs[templateKey(10, 1, 300)] != nil; got != tc.compiled {
				t.Fatalf("program kept: %t, want %t (%d bytes of %d)", got, tc.compiled, s.bytes, limits.MaxBytes)
			}
			if bytes, _ := s.recount(); bytes != s.bytes || s.bytes != shared.Used() {
				t.Fatalf("counted %d bytes, holds %d, shared %d", s.bytes, bytes, shared.Used())
			}
			if _, err := (*templateStore)(s).RemoveTemplate(10, 1, 300); err != nil {
				t.Fatal(err)
			}
			if s.bytes != 0 || shared.Used() != 0 {
				t.Fatalf("after the withdrawal: %d bytes counted, %d shared", s.bytes, shared.Used())
			}
		})
	}
}

// TestExtrasShareAllocations: records with an element kept as an extra
// (spanflow's exporter sends biflowDirection on its TCP records) take no
// allocation each: 30 such records a datagram cost at most one.
func TestExtrasShareAllocations(t *testing.T) {
	fields := []nf.Field{{Type: 8, Length: 4}, {Type: 12, Length: 4}, {Type: 1, Length: 8}, {Type: 2, Length: 8},
		{Type: 4, Length: 1}, {Type: 239, Length: 1}}
	p := compile(fields)
	if p == nil {
		t.Fatal("no program")
	}
	data := make([]byte, 30*p.size)
	for i := 0; i < len(data); i += p.size {
		data[i+p.size-2], data[i+p.size-1] = 6, byte(1+i/p.size%2)
	}
	h := header{version: 10, exportSecs: 1_765_000_000}
	s := NewState(netip.MustParseAddr("192.0.2.9"), DefaultLimits(), nil)
	received := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	var recs []flow.Record
	allocs := testing.AllocsPerRun(200, func() {
		recs = s.run(recs[:0], p, s.domain(&h), &h, data, received)
	})
	if len(recs) != 30 || len(recs[0].Extra) != 1 || recs[0].Extra[0].Name != "biflow_direction" || recs[1].Extra[0].Num != 2 {
		t.Fatalf("records %d, first extras %+v", len(recs), recs[0].Extra)
	}
	if allocs > 1 {
		t.Errorf("%v allocations a datagram of 30 records with an extra each, want at most 1", allocs)
	}
	// Records kept past the next datagrams keep their own extras, and an
	// extra appended to one does not land in another's.
	kept := append([]flow.Record(nil), recs...)
	for i := 0; i < len(data); i += p.size {
		data[i+p.size-1] = 0
	}
	for range 5 {
		recs = s.run(recs[:0], p, s.domain(&h), &h, data, received)
	}
	kept[0].Extra = append(kept[0].Extra, flow.Extra{Name: "x", Num: 9})
	for i, r := range kept {
		if r.Extra[0].Num != uint64(1+i%2) || i > 0 && len(r.Extra) != 1 {
			t.Fatalf("kept record %d: extras %+v", i, r.Extra)
		}
	}
	if recs[0].Extra[0].Num != 0 || len(recs[0].Extra) != 1 {
		t.Fatalf("new record's extras %+v", recs[0].Extra)
	}
}
