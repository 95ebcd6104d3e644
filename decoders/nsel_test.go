package decoders_test

import (
	"testing"
	"time"

	"github.com/spanflow/spanflow/decoders"
)

// TestNSELCountsAndTimes: Cisco ASA NSEL (NetFlow v9) counts a flow by
// direction only (initiatorOctets 231, responderOctets 232, and where
// present initiatorPackets 298, responderPackets 299) and dates a teardown
// by its event time (observationTimeMilliseconds 323, NF_F_EVENT_TIME_MSEC)
// and flowStartMilliseconds 152. A flow with no delta or total count is
// both directions; one with no end time ends at its event time (ground
// truth: what was sent). Delta and total counts, and an end time, still
// win.
func TestNSELCountsAndTimes(t *testing.T) {
	export := time.Unix(samplingExport, 0)
	event := export.Add(-750 * time.Millisecond)
	start := export.Add(-61 * time.Second)
	ms := func(t time.Time) []byte { return u64(uint64(t.UnixMilli())) }
	// Every template: FLOW_ID 148, src, sport, dst, dport, proto, then its own fields.
	head := be16(148, 4, 8, 4, 7, 2, 12, 4, 11, 2, 4, 1)
	headData := cat(u32(12345), []byte{10, 11, 0, 1}, be16(51000), []byte{93, 184, 216, 34}, be16(443), []byte{6})
	for _, c := range []struct {
		name           string
		fields         []byte // after head: (type, length) pairs
		values         []byte
		bytes, packets uint64
		start, end     time.Time
	}{
		{"octets by direction, event time",
			be16(233, 1, 33002, 2, 323, 8, 152, 8, 231, 4, 232, 4),
			cat([]byte{2}, be16(2031), ms(event), ms(start), u32(5000), u32(120000)),
			125000, 0, start, event},
		{"octets and packets by direction",
			be16(323, 8, 152, 8, 231, 8, 232, 8, 298, 8, 299, 8),
			cat(ms(event), ms(start), u64(5000), u64(120000), u64(40), u64(90)),
			125000, 130, start, event},
		{"totals win",
			be16(323, 8, 231, 4, 232, 4, 85, 8, 86, 8),
			cat(ms(event), u32(5000), u32(120000), u64(7000), u64(9)),
			7000, 9, event, event},
		{"deltas win, end time wins",
			be16(323, 8, 152, 8, 153, 8, 231, 4, 232, 4, 1, 4, 2, 4),
			cat(ms(event), ms(start), ms(start.Add(time.Second)), u32(5000), u32(120000), u32(700), u32(3)),
			700, 3, start, start.Add(time.Second)},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := uint16(len(head)+len(c.fields)) / 4
			tpl := nfSet(0, cat(be16(263, n), head, c.fields))
			msg := cat(be16(9, 2), u32(9000000), u32(samplingExport), u32(1), u32(0), tpl, nfSet(263, cat(headData, c.values)))
			dec, _ := decoders.New(decoders.DefaultConfiguration())
			recs, _, err := dec.Decode(dg("192.0.2.14:1", msg, export.Add(time.Minute)), nil)
			if err != nil || len(recs) != 1 {
				t.Fatalf("%d records, err %v", len(recs), err)
			}
			r := recs[0]
			if r.Bytes != c.bytes || r.Packets != c.packets {
				t.Errorf("bytes %d, packets %d, want %d, %d", r.Bytes, r.Packets, c.bytes, c.packets)
			}
			if !r.Start.Equal(c.start) || !r.End.Equal(c.end) {
				t.Errorf("start %v, end %v, want %v, %v", r.Start, r.End, c.start, c.end)
			}
		})
	}
}
