// Package ie is the registry of IPFIX information elements that the
// collector writes by name: IANA's (iana-ipfix.xml, IANA's own registry
// file) and the enterprise elements of the devices of a data centre
// (enterprise.csv, with where each definition comes from). The table in
// elements_gen.go is generated from these two files by `go generate`.
package ie

import "github.com/spanflow/spanflow/decoders/netflow/ie/internal/naming"

//go:generate go run gen.go

// Type is an element's abstract data type (RFC 7012 §3.1), as far as the
// collector needs it to write a value.
type Type uint8

// Abstract data types.
const (
	OctetArray Type = iota // written as hex
	Unsigned
	Signed
	Float
	Boolean
	MAC
	String
	DateSeconds
	DateMillis
	DateMicros
	DateNanos
	IPv4
	IPv6
	BasicList
	SubTemplateList
	SubTemplateMultiList
)

// Element is one information element.
type Element struct {
	PEN   uint32 // 0: IANA (and NetFlow v9 field types above 32767)
	ID    uint16
	Name  string // as published
	Field string // under netflow.*: snake_case, vendors' with their prefix
	Type  Type
}

// Reverse is RFC 5103's enterprise number: the element is the IANA one of
// the same id, in the reverse direction.
const Reverse = 29305

// CERT is the enterprise number of CERT's YAF elements (initialTCPFlags,
// unionTCPFlags, ...); its reverse ones are id | 0x4000.
const CERT = 6871

var index = func() map[uint64]int {
	m := make(map[uint64]int, len(elements))
	for i, e := range elements {
		m[uint64(e.PEN)<<16|uint64(e.ID)] = i
	}
	return m
}()

// Lookup returns the element of an enterprise number (0 for IANA) and id.
// NetFlow v9 field types are looked up with pen 0: below 32768 they are
// IANA's, above they are the vendors' of enterprise.csv.
func Lookup(pen uint32, id uint16) (Element, bool) {
	i, ok := index[uint64(pen)<<16|uint64(id)]
	if !ok {
		return Element{}, false
	}
	return elements[i], true
}

// All returns every element of the registry, sorted by enterprise number and id.
func All() []Element { return append([]Element(nil), elements...) }

// SnakeCase turns a published element name into the snake_case one used
// under netflow.* (sourceIPv4Address → source_ipv4_address, as Elastic's
// NetFlow integration does; SRC_FRAGMENTS → src_fragments).
func SnakeCase(s string) string { return naming.SnakeCase(s) }

// FieldName is the netflow.* name of a vendor's element: prefix_snake,
// unless the published name already starts with the vendor's name.
func FieldName(prefix, name string) string { return naming.FieldName(prefix, name) }

// TypeOf maps an IANA abstract data type name to a Type; ok is false for
// names it does not know (unsigned256: written as hex).
func TypeOf(name string) (Type, bool) {
	switch name {
	case "unsigned8", "unsigned16", "unsigned32", "unsigned64":
		return Unsigned, true
	case "signed8", "signed16", "signed32", "signed64":
		return Signed, true
	case "float32", "float64":
		return Float, true
	case "boolean":
		return Boolean, true
	case "macAddress":
		return MAC, true
	case "string":
		return String, true
	case "dateTimeSeconds":
		return DateSeconds, true
	case "dateTimeMilliseconds":
		return DateMillis, true
	case "dateTimeMicroseconds":
		return DateMicros, true
	case "dateTimeNanoseconds":
		return DateNanos, true
	case "ipv4Address":
		return IPv4, true
	case "ipv6Address":
		return IPv6, true
	case "basicList":
		return BasicList, true
	case "subTemplateList":
		return SubTemplateList, true
	case "subTemplateMultiList":
		return SubTemplateMultiList, true
	case "octetArray":
		return OctetArray, true
	}
	return OctetArray, false
}
