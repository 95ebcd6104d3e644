package decoders_test

import (
	"testing"
	"time"

	"github.com/spanflow/spanflow/decoders"
)

// TestReservedSetsSkipped: a set of a reserved id (IPFIX 0, 1, 4–255;
// NetFlow v9 2–255) is skipped by its length and counted, and the sets
// after it are decoded (RFC 7011 §3.3.2), not lost as a bad set.
func TestReservedSetsSkipped(t *testing.T) {
	export := time.Unix(samplingExport, 0)
	ipfixTpl := nfSet(2, cat(be16(256, 3), be16(8, 4, 12, 4, 1, 8)))
	ipfixData := nfSet(256, cat([]byte{198, 51, 100, 1}, []byte{203, 0, 113, 1}, u64(1500)))
	v9Tpl := nfSet(0, cat(be16(256, 3), be16(8, 4, 12, 4, 1, 4)))
	v9Data := nfSet(256, cat([]byte{198, 51, 100, 1}, []byte{203, 0, 113, 1}, u32(1500)))
	v9 := func(count uint16, sets ...[]byte) []byte {
		return cat(be16(9, count), u32(600000), u32(samplingExport), u32(1), u32(7), cat(sets...))
	}
	for _, c := range []struct {
		name    string
		msg     []byte
		records int
		ignored int
	}{
		{"ipfix 4", ipfixMessage(ipfixTpl, nfSet(4, u64(0)), ipfixData), 1, 1},
		{"ipfix 0, 1 and 255", ipfixMessage(nfSet(0, u32(0)), ipfixTpl, nfSet(1, nil), nfSet(255, u64(7)), ipfixData, ipfixData), 2, 3},
		{"v9 77", v9(3, v9Tpl, nfSet(77, u64(1)), v9Data), 1, 1},
		{"v9 2 and 255", v9(4, nfSet(2, nil), v9Tpl, nfSet(255, u32(9)), v9Data), 1, 2},
		// The header's count is of records; sets past it are read too
		// (softflowd counts its templates only).
		{"v9 255 past the count", v9(2, v9Tpl, v9Data, nfSet(255, u32(9)), v9Data), 2, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			dec, _ := decoders.New(decoders.DefaultConfiguration())
			recs, res, err := dec.Decode(dg("192.0.2.1:1", c.msg, export), nil)
			if err != nil || len(recs) != c.records || res.IgnoredSets != c.ignored {
				t.Fatalf("%d records, %d sets ignored, err %v; want %d, %d", len(recs), res.IgnoredSets, err, c.records, c.ignored)
			}
			for _, r := range recs {
				if r.Bytes != 1500 || r.SrcAddr.String() != "198.51.100.1" {
					t.Errorf("record %v bytes %d", r.SrcAddr, r.Bytes)
				}
			}
		})
	}
}

// TestOptionsTemplateWithdrawal: an IPFIX options template set record of
// a template id and no fields withdraws that options template (RFC 7011
// §8.1), template id 3 every options template of the domain; template id 2
// in a template set every data template. The sets after a withdrawal are
// decoded; options data of a withdrawn template waits for it again (held),
// and the rates learned before stay.
func TestOptionsTemplateWithdrawal(t *testing.T) {
	export := time.Unix(samplingExport, 0)
	tpl := nfSet(2, cat(be16(256, 3), be16(8, 4, 12, 4, 1, 8)))
	data := nfSet(256, cat([]byte{198, 51, 100, 1}, []byte{203, 0, 113, 1}, u64(1500)))
	// Options templates 257 and 258: scope observationDomainId 149; samplingInterval 34.
	optTpl := func(id uint16) []byte { return cat(be16(id, 2, 1), be16(149, 4, 34, 4)) }
	options := nfSet(3, cat(optTpl(257), optTpl(258)))
	rate := nfSet(257, cat(u32(1), u32(100)))
	rate10 := nfSet(257, cat(u32(1), u32(10)))
	for _, c := range []struct {
		name    string
		msg     []byte
		records int
		bytes   uint64 // of each record (1500, sampled 1 in 100 before)
		held    int
	}{
		{"withdraw 257", ipfixMessage(nfSet(3, be16(257, 0)), data, rate10), 1, 150000, 1},
		{"withdraw 258 only", ipfixMessage(nfSet(3, be16(258, 0)), data, rate10), 1, 15000, 0},
		{"withdraw all options templates", ipfixMessage(nfSet(3, be16(3, 0)), data, data, rate10), 2, 150000, 1},
		{"withdraw, then define again", ipfixMessage(nfSet(3, cat(be16(257, 0), optTpl(257))), rate10, data), 1, 15000, 0},
		{"withdraw after a template", ipfixMessage(nfSet(3, cat(optTpl(259), be16(257, 0), be16(258, 0))), data, rate10), 1, 150000, 1},
		{"withdraw all data templates", ipfixMessage(nfSet(2, be16(2, 0)), data), 0, 0, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			dec, _ := decoders.New(decoders.DefaultConfiguration())
			if _, res, err := dec.Decode(dg("192.0.2.1:1", ipfixMessage(tpl, options, rate), export), nil); err != nil || res.OptionsRecords != 1 {
				t.Fatalf("setup: %d options records, err %v", res.OptionsRecords, err)
			}
			recs, res, err := dec.Decode(dg("192.0.2.1:1", c.msg, export), nil)
			if err != nil || len(recs) != c.records || res.Held != c.held {
				t.Fatalf("%d records, %d held, err %v; want %d, %d", len(recs), res.Held, err, c.records, c.held)
			}
			for _, r := range recs {
				if r.Bytes != c.bytes {
					t.Errorf("bytes %d, want %d", r.Bytes, c.bytes)
				}
			}
		})
	}
}
