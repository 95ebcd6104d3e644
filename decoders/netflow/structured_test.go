package netflow

import (
	"encoding/json"
	"net/netip"
	"testing"

	nf "github.com/netsampler/goflow2/v2/decoders/netflow"

	"github.com/spanflow/spanflow/decoders/netflow/ie"
)

// FuzzStructured feeds RFC 6313 list values to the structured-data reader
// with a domain that has a record template (of a nested list, a string and
// a number): it must not panic, must stay within its bounds and must write
// valid JSON.
func FuzzStructured(f *testing.F) {
	f.Add(uint8(ie.SubTemplateMultiList), []byte{0xff, 0x01, 0x36, 0x00, 0x0b, 0x03, 'a', 'b', 'c', 0, 1, 0, 0, 0, 5})
	f.Add(uint8(ie.SubTemplateList), []byte{0xff, 0x01, 0x36, 0x03, 'a', 'b', 'c', 0, 1, 0, 0, 0, 5})
	f.Add(uint8(ie.BasicList), []byte{0x03, 0x01, 0xe3, 0x00, 0x04, 0, 0, 0, 1, 0, 0, 0, 2})
	f.Add(uint8(ie.BasicList), []byte{0x03, 0x01, 0x23, 0xff, 0xff, 0x05, 0x03, 0x01, 0xe3, 0, 4})
	f.Fuzz(func(t *testing.T, typ uint8, v []byte) {
		s := NewState(netip.MustParseAddr("192.0.2.1"), DefaultLimits(), nil)
		h := header{version: 10, domain: 1}
		s.hdr = &h
		// Template 310: a basicList, YAF's dnsQName (variable) and dnsQRType.
		s.templates[templateKey(10, 1, 310)] = nf.TemplateRecord{TemplateId: 310, FieldCount: 3, Fields: []nf.Field{
			{Type: 291, Length: 0xffff},
			{PenProvided: true, Pen: 6871, Type: 179, Length: 0xffff},
			{PenProvided: true, Pen: 6871, Type: 175, Length: 2},
		}}
		t3 := ie.Type(typ%3) + ie.BasicList
		out, ok := s.structured(t3, v, 0)
		if !ok {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("invalid JSON %q from %x", out, v)
		}
		if len(out) > (maxNesting+1)*(maxListBytes+1024) { // each level stops once past its bound
			t.Fatalf("%d bytes of JSON from %d bytes", len(out), len(v))
		}
	})
}
