package decoders_test

import (
	"testing"
	"time"

	"github.com/spanflow/spanflow/decoders"
)

// TestV9OptionsScopeTypes: NetFlow v9 options templates scope by scope
// type (1 System, 2 Interface, 3 Line card, 4 Cache, 5 Template), not by
// field type. An interface table (scope Interface, IF_NAME 82 or IF_DESC
// 83) names the interfaces of the data records; a sampling interval
// scoped by System or by Interface is the domain's rate (ground truth:
// what was sent).
func TestV9OptionsScopeTypes(t *testing.T) {
	export := time.Unix(samplingExport, 0)
	// Template 256: src, dst, bytes, packets, INPUT_SNMP 10, OUTPUT_SNMP 14.
	tpl := nfSet(0, cat(be16(256, 6), be16(8, 4, 12, 4, 1, 4, 2, 4, 10, 2, 14, 2)))
	data := nfSet(256, cat([]byte{198, 51, 100, 1}, []byte{203, 0, 113, 1}, u32(1500), u32(3), be16(3, 4)))
	hdr := func(seq uint32, count uint16) []byte {
		return cat(be16(9, count), u32(600000), u32(samplingExport), u32(seq), u32(7))
	}
	for _, c := range []struct {
		name string
		opts []byte // options template set and options data set
		in   string
		out  string
		rate uint64
	}{
		{"interface names", cat(
			nfSet(1, cat(be16(257, 4, 4), be16(2, 4), be16(82, 16))),
			nfSet(257, cat(u32(3), name16("Gi0/3"), u32(4), name16("Te1/0/1")))),
			"Gi0/3", "Te1/0/1", 1},
		{"interface descriptions", cat(
			nfSet(1, cat(be16(257, 4, 4), be16(2, 4), be16(83, 16))),
			nfSet(257, cat(u32(3), name16("uplink"), u32(4), name16("core")))),
			"uplink", "core", 1},
		{"sampling, system scope", cat(
			nfSet(1, cat(be16(257, 4, 8), be16(1, 4), be16(34, 4, 35, 1))),
			nfSet(257, cat(u32(0), u32(100), []byte{2}))),
			"", "", 100},
		{"sampling, interface scope", cat(
			nfSet(1, cat(be16(257, 4, 8), be16(2, 4), be16(34, 4, 35, 1))),
			nfSet(257, cat(u32(3), u32(50), []byte{2}))),
			"", "", 50},
		{"sampling, template scope", cat(
			nfSet(1, cat(be16(257, 4, 8), be16(5, 2), be16(34, 4, 35, 1))),
			nfSet(257, cat(be16(256), u32(20), []byte{2}))),
			"", "", 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			dec, _ := decoders.New(decoders.DefaultConfiguration())
			_, res, err := dec.Decode(dg("192.0.2.1:1", cat(hdr(1, 3), tpl, c.opts), export), nil)
			if err != nil || res.OptionsRecords == 0 {
				t.Fatalf("options: %d records, err %v", res.OptionsRecords, err)
			}
			recs, _, err := dec.Decode(dg("192.0.2.1:1", cat(hdr(2, 1), data), export), nil)
			if err != nil || len(recs) != 1 {
				t.Fatalf("%d records, err %v", len(recs), err)
			}
			r := recs[0]
			if r.InIfName != c.in || r.OutIfName != c.out {
				t.Errorf("interface names %q, %q, want %q, %q", r.InIfName, r.OutIfName, c.in, c.out)
			}
			if r.Bytes != 1500*c.rate || r.Packets != 3*c.rate {
				t.Errorf("bytes %d, packets %d, want %d, %d (1 in %d)", r.Bytes, r.Packets, 1500*c.rate, 3*c.rate, c.rate)
			}
		})
	}
}
