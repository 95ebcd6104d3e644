package meter

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/internal/reporter"
)

// longestRun is the longest run of occupied index slots: the most probes a
// lookup can take.
func (t *Table) longestRun() int {
	best, run := 0, 0
	for i := range 2 * len(t.index) { // around the end too
		if t.index[i%len(t.index)] != 0 {
			run++
			best = max(best, run)
		} else {
			run = 0
		}
	}
	return min(best, len(t.index))
}

// TestHashFloodNeedsTheSeed: flows picked to share their index slot in
// one table (by someone who knows its seed, as anyone knew the unkeyed
// hash) pile into one run of slots there, and spread out in another table,
// whose seed they were not picked for.
func TestHashFloodNeedsTheSeed(t *testing.T) {
	cfg := Configuration{ActiveTimeout: time.Hour, IdleTimeout: time.Hour, MaxFlows: 1 << 16}
	newTable := func() *Table {
		tb, err := New(reporter.NewForTest(nil), cfg, nullSink{})
		if err != nil {
			t.Fatal(err)
		}
		return tb
	}
	a, b := newTable(), newTable()
	defer a.mem.release()
	defer b.mem.release()
	const flows = 1000
	var picked []decode.Packet
	var p decode.Packet
	p.Proto, p.IPLength, p.DstPort = 17, 100, 53
	for f := uint32(0); len(picked) < flows; f++ {
		binary.BigEndian.PutUint32(p.SrcAddr[:], 0x0a000000|f>>16)
		p.SrcPort = uint16(f)
		var k key
		keyOf(&p, &k)
		if k.hash(a.seed)&0xfff == 0 { // one home slot in a's index up to 4,096 slots
			picked = append(picked, p)
		}
	}
	for i := range picked {
		a.Add(&picked[i], int64(i))
		b.Add(&picked[i], int64(i))
	}
	if a.Len() != flows || b.Len() != flows {
		t.Fatalf("%d and %d flows in the tables, want %d", a.Len(), b.Len(), flows)
	}
	ra, rb := a.longestRun(), b.longestRun()
	t.Logf("longest run of slots: %d in the table the flows were picked for, %d in another (%d slots)", ra, rb, len(b.index))
	if ra < flows {
		t.Fatalf("the picked flows do not collide in their own table (run %d): the test picks them wrong", ra)
	}
	if rb > 64 {
		t.Errorf("the flows picked for one table's seed also pile up in another's: a run of %d slots", rb)
	}
}
