package decoders_test

import (
	"testing"
	"time"

	"github.com/spanflow/spanflow/decoders"
)

// TestTCPFlagsOnlyWhenSent: a TCP flow has netflow.tcp_control_bits when
// its template has tcpControlBits (even 0), and none when it has not: 0
// would say that the exporter saw no flag. Both decoding paths (a
// program, and field by field for a template with a variable-length
// field) are checked.
func TestTCPFlagsOnlyWhenSent(t *testing.T) {
	export := time.Unix(samplingExport, 0)
	for _, c := range []struct {
		name  string
		tpl   []byte // IPFIX template 256
		data  []byte
		flags any // in the document; nil: absent
	}{
		{"no tcpControlBits", be16(256, 4, 8, 4, 12, 4, 1, 8, 4, 1),
			cat([]byte{198, 51, 100, 1}, []byte{203, 0, 113, 1}, u64(1500), []byte{6}), nil},
		{"no tcpControlBits, variable length field", be16(256, 5, 8, 4, 12, 4, 1, 8, 4, 1, 82, 0xffff),
			cat([]byte{198, 51, 100, 1}, []byte{203, 0, 113, 1}, u64(1500), []byte{6}, []byte{2, 'e', '0'}), nil},
		{"tcpControlBits 0", be16(256, 5, 8, 4, 12, 4, 1, 8, 4, 1, 6, 2),
			cat([]byte{198, 51, 100, 1}, []byte{203, 0, 113, 1}, u64(1500), []byte{6}, be16(0)), float64(0)},
		{"tcpControlBits SYN ACK", be16(256, 5, 8, 4, 12, 4, 1, 8, 4, 1, 6, 1),
			cat([]byte{198, 51, 100, 1}, []byte{203, 0, 113, 1}, u64(1500), []byte{6}, []byte{0x12}), float64(0x12)},
	} {
		t.Run(c.name, func(t *testing.T) {
			dec, _ := decoders.New(decoders.DefaultConfiguration())
			msg := ipfixMessage(set(2, c.tpl), set(256, c.data))
			recs, _, err := dec.Decode(dg("192.0.2.1:1", msg, export), nil)
			if err != nil || len(recs) != 1 {
				t.Fatalf("%d records, err %v", len(recs), err)
			}
			if got := get(document(t, &recs[0]), "netflow.tcp_control_bits"); got != c.flags {
				t.Errorf("netflow.tcp_control_bits %v, want %v", got, c.flags)
			}
		})
	}
}
