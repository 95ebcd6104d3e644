package meter

import (
	"cmp"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

// sums adds up, per flow key, what the table exported; trail is every
// record in the order passed on, with the flow time it was passed on at.
type sums struct {
	packets, bytes map[[4]uint32]uint64
	spans          map[[4]uint32][]span
	records        int
	trail          []passed
}

type passed struct {
	now int64
	key [4]uint32
	span
	packets uint64
}

type span struct {
	start, end int64
	reason     uint8
}

func (s *sums) Write(now time.Time, rs []flow.Record) error {
	for i := range rs {
		r := &rs[i]
		a := r.SrcAddr.As4()
		k := [4]uint32{binary.BigEndian.Uint32(a[:]), uint32(r.SrcPort), uint32(r.DstPort), uint32(r.Proto)}
		s.packets[k] += r.Packets
		s.bytes[k] += r.Bytes
		sp := span{r.Start.UnixNano(), r.End.UnixNano(), r.EndReason}
		s.spans[k] = append(s.spans[k], sp)
		s.records++
		s.trail = append(s.trail, passed{now.UnixNano(), k, sp, r.Packets})
	}
	return nil
}

// TestTableAgainstModel meters random traffic over many flows (the index
// grows from 1,024 slots through both of its reservations, idle flows
// leave it with backward-shift deletion, a full table evicts) and checks
// that, per flow key, the records add up to exactly what was sent: no
// packet lost, none counted twice. Half of the runs go through a Feeder,
// which the exporter uses, and check that it meters every packet once, in
// order: a twin table fed one packet at a time passes on the same records
// at the same flow times.
func TestTableAgainstModel(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxFlows int
		batched  bool
	}{
		{"roomy", 1 << 20, false},
		{"roomy-batched", 1 << 20, true},
		{"full", 5000, false},
		{"full-batched", 5000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			newSums := func() *sums {
				return &sums{packets: map[[4]uint32]uint64{}, bytes: map[[4]uint32]uint64{}, spans: map[[4]uint32][]span{}}
			}
			cfg := Configuration{ActiveTimeout: 20 * time.Second, IdleTimeout: 2 * time.Second, MaxFlows: tc.maxFlows}
			sink := newSums()
			table, err := New(reporter.NewForTest(nil), cfg, sink)
			if err != nil {
				t.Fatal(err)
			}
			var twin *Table
			twinSink := newSums()
			if tc.batched {
				if twin, err = New(reporter.NewForTest(nil), cfg, twinSink); err != nil {
					t.Fatal(err)
				}
			}
			rng := rand.New(rand.NewPCG(7, 9))
			wantP, wantB := map[[4]uint32]uint64{}, map[[4]uint32]uint64{}
			feeder := NewFeeder(table)
			var one decode.Packet
			now := int64(1e18)
			const packets = 400000
			for i := 0; i < packets; i++ {
				// 60,000 keys, the lower ones much more often; time
				// advances 0.1 ms a packet (40 s in all), so flows go idle,
				// come back and reach the active timeout.
				src := uint32(rng.ExpFloat64()*8000) % 60000
				p := &one
				if tc.batched {
					p = feeder.Slot()
				}
				*p = decode.Packet{Proto: 17, SrcPort: uint16(src), DstPort: 53, IPLength: uint32(40 + rng.IntN(1400))}
				binary.BigEndian.PutUint32(p.SrcAddr[:], 0x0a000000|src)
				p.DstAddr[0] = 192
				now += 100000
				k := [4]uint32{0x0a000000 | src, src, 53, 17}
				wantP[k]++
				wantB[k] += uint64(p.IPLength)
				if !tc.batched {
					table.Add(p, now)
					continue
				}
				twin.Add(p, now)
				feeder.Commit(now, now)
				// Full batches, and at times one that is not, as a live
				// capture meters when idle.
				if feeder.Full() || i%100000 == 99999 {
					feeder.Flush()
				}
			}
			feeder.Flush()
			if tc.batched {
				twin.Flush(now)
				if feeder.Pending() != 0 {
					t.Errorf("%d packets still held by the feeder", feeder.Pending())
				}
			}
			table.Flush(now)
			if tc.batched && !slices.Equal(sink.trail, twinSink.trail) {
				i := 0
				for i < min(len(sink.trail), len(twinSink.trail)) && sink.trail[i] == twinSink.trail[i] {
					i++
				}
				t.Errorf("through the feeder, %d records passed on; one by one, %d; the first difference is record %d", len(sink.trail), len(twinSink.trail), i)
			}
			if len(sink.packets) != len(wantP) {
				t.Errorf("%d flow keys exported, %d sent", len(sink.packets), len(wantP))
			}
			for k, w := range wantP {
				if sink.packets[k] != w || sink.bytes[k] != wantB[k] {
					t.Fatalf("flow %v: exported %d packets %d bytes, sent %d packets %d bytes", k, sink.packets[k], sink.bytes[k], w, wantB[k])
				}
			}
			// A flow whose index slot was lost would be cut in two:
			// records of one key must not overlap, and one that ended
			// idle must be followed by a gap of the idle timeout.
			for k, sp := range sink.spans {
				slices.SortFunc(sp, func(a, b span) int { return cmp.Compare(a.start, b.start) })
				for i := 1; i < len(sp); i++ {
					a, b := sp[i-1], sp[i]
					if b.start <= a.end || (a.reason == EndIdle && b.start-a.end < int64(2*time.Second)) {
						t.Fatalf("flow %v: record %+v then %+v", k, a, b)
					}
				}
			}
			if table.Len() != 0 {
				t.Errorf("%d flows left after Flush", table.Len())
			}
			s := table.Stats()
			if tc.maxFlows < 1<<20 && s.FlowsEvicted == 0 {
				t.Errorf("a table of %d flows never evicted", tc.maxFlows)
			}
			if uint64(sink.records) != s.Exported() || s.Packets != packets {
				t.Errorf("stats: %d exported, %d packets; sink got %d records, %d packets sent", s.Exported(), s.Packets, sink.records, packets)
			}
			t.Logf("%d keys, %d records, %d created, %d evicted, index %d slots", len(wantP), sink.records, s.FlowsCreated, s.FlowsEvicted, len(table.index))
		})
	}
}

// TestLargestTable: the largest table the configuration allows only
// reserves its memory (entries and index are taken as they are used), so
// New works and the table meters; or, where the system refuses to reserve
// that much, New says so.
func TestLargestTable(t *testing.T) {
	table, err := New(reporter.NewForTest(nil), Configuration{ActiveTimeout: time.Minute, IdleTimeout: time.Minute, MaxFlows: 1 << 30}, nullSink{})
	if err != nil {
		t.Logf("refused: %v", err)
		if want := "lower the maximum number of flows"; !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
		return
	}
	p := decode.Packet{Proto: 17, SrcPort: 1, DstPort: 2, IPLength: 60}
	table.Add(&p, 1)
	if table.Len() != 1 {
		t.Fatalf("%d flows", table.Len())
	}
}

// TestCloseReleases: Close gives the table's reserved address space back
// at once (a 32-bit exporter running many tables in turn needs it), and
// the counters still read afterwards.
func TestCloseReleases(t *testing.T) {
	const flows = 1 << 22 // 512 MiB of entries
	before := statm(t, 0)
	table, err := New(reporter.NewForTest(nil), Configuration{ActiveTimeout: time.Minute, IdleTimeout: time.Minute, MaxFlows: flows}, nullSink{})
	if err != nil {
		t.Skipf("cannot reserve: %v", err)
	}
	p := decode.Packet{Proto: 17, SrcPort: 1, DstPort: 2, IPLength: 60}
	table.Add(&p, 1)
	table.Flush(1)
	open := statm(t, 0)
	table.Close()
	closed := statm(t, 0)
	if open-before < 400<<20 || open-closed < 400<<20 {
		t.Errorf("address space %d MiB, %d MiB with the table open, %d MiB closed; want 512 MiB and more taken and given back",
			before>>20, open>>20, closed>>20)
	}
	if s := table.Stats(); s.Exported() != 1 {
		t.Errorf("after Close: %d flows exported, want 1", s.Exported())
	}
}
