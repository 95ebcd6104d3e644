// Package naming turns published IPFIX element names into the snake_case
// field names used under netflow.*. It stands apart so that the registry
// (package ie) and its generator (gen.go, which cannot import the package
// it writes) share one copy of the rules.
package naming

import (
	"strings"
	"unicode"
)

// SnakeCase turns a published element name into the snake_case one used
// under netflow.* (sourceIPv4Address → source_ipv4_address, as Elastic's
// NetFlow integration does; SRC_FRAGMENTS → src_fragments).
func SnakeCase(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return r
		}
		return '_'
	}, s)
	if strings.ToUpper(s) == s {
		return strings.Trim(strings.ToLower(s), "_")
	}
	s = strings.ReplaceAll(s, "IPv", "Ipv")
	s = strings.ReplaceAll(s, "VRFname", "vrfName")
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		if unicode.IsUpper(r) {
			prevLower := i > 0 && (unicode.IsLower(rs[i-1]) || unicode.IsDigit(rs[i-1]))
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			prevUpper := i > 0 && unicode.IsUpper(rs[i-1])
			if i > 0 && rs[i-1] != '_' && (prevLower || (prevUpper && nextLower)) {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
			continue
		}
		b.WriteRune(r)
	}
	out := b.String()
	for strings.Contains(out, "__") {
		out = strings.ReplaceAll(out, "__", "_")
	}
	return strings.Trim(out, "_")
}

// FieldName is the netflow.* name of a vendor's element: prefix_snake,
// unless the published name already starts with the vendor's name.
func FieldName(prefix, name string) string {
	s := SnakeCase(name)
	if prefix == "" || strings.HasPrefix(s, prefix+"_") {
		return s
	}
	return prefix + "_" + s
}
