package decoders_test

import (
	"testing"
	"time"

	"github.com/spanflow/spanflow/decoders"
)

// TestUptimeAfterHeader: NetFlow v9 and v5 date a flow by its uptimes
// (FIRST/LAST_SWITCHED) against the header's sysUptime. A flow may end a
// few milliseconds after the sysUptime the exporter wrote (it ended while
// the datagram was built), and the uptime wraps every 49.7 days: both must
// be a few milliseconds from the export time, never 49.7 days before it.
func TestUptimeAfterHeader(t *testing.T) {
	export := time.Unix(samplingExport, 0)
	for _, c := range []struct {
		name               string
		sysUp              uint32
		first, last        uint32
		wantStart, wantEnd time.Duration // from the export time
	}{
		{"end after sysUptime", 600000, 599000, 600250, -time.Second, 250 * time.Millisecond},
		{"start and end after sysUptime", 600000, 600100, 600250, 100 * time.Millisecond, 250 * time.Millisecond},
		{"uptime wrapped between start and export", 1000, 1<<32 - 2000, 500, -3 * time.Second, -500 * time.Millisecond},
		{"end after a wrapped sysUptime", 1000, 1<<32 - 2000, 1500, -3 * time.Second, 500 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			// NetFlow v9: template 256 (src, dst, bytes, packets, proto, FIRST 22, LAST 21).
			tpl := nfSet(0, cat(be16(256, 7), be16(8, 4, 12, 4, 1, 4, 2, 4, 4, 1, 22, 4, 21, 4)))
			data := nfSet(256, cat([]byte{198, 51, 100, 1}, []byte{203, 0, 113, 1}, u32(1500), u32(3), []byte{17}, u32(c.first), u32(c.last)))
			v9 := cat(be16(9, 2), u32(c.sysUp), u32(samplingExport), u32(1), u32(7), tpl, data)

			// NetFlow v5: one record with the same times.
			v5 := cat(be16(5, 1), u32(c.sysUp), u32(samplingExport), u32(0), u32(1), []byte{0, 0}, be16(0),
				[]byte{198, 51, 100, 1}, []byte{203, 0, 113, 1}, u32(0), be16(1, 2), u32(3), u32(1500),
				u32(c.first), u32(c.last), be16(1000, 53), []byte{0, 0, 17, 0}, be16(0, 0), []byte{24, 24}, be16(0))
			for name, msg := range map[string][]byte{"v9": v9, "v5": v5} {
				dec, _ := decoders.New(decoders.DefaultConfiguration())
				recs, _, err := dec.Decode(dg("192.0.2.1:1", msg, export.Add(time.Minute)), nil)
				if err != nil || len(recs) != 1 {
					t.Fatalf("%s: %d records, err %v", name, len(recs), err)
				}
				if got := recs[0].Start.Sub(export); got != c.wantStart {
					t.Errorf("%s: start %v from the export time, want %v", name, got, c.wantStart)
				}
				if got := recs[0].End.Sub(export); got != c.wantEnd {
					t.Errorf("%s: end %v from the export time, want %v", name, got, c.wantEnd)
				}
			}
		})
	}
}
