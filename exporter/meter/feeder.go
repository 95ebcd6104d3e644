package meter

import "github.com/spanflow/spanflow/exporter/decode"

// Feeder meters packets in batches of BatchMax. When the table is out of
// the caches (a live capture: the kernel filling the ring, the sender and
// other processes share them; or a table larger than the caches), a lookup
// costs a cache miss for the index slot, then one for the entry's lines,
// and one packet after another those misses follow one another. A full
// batch is looked up in passes whose loads do not depend on one another
// (all keys and hashes; all index slots; all entries), so that the misses
// of the whole batch are in flight at once; then it is metered, in the
// order committed, with the timestamps given, exactly as Add would.
// Committing does not meter: when the batch is Full, the caller Flushes it
// (after anything it wants done before metering, such as giving the
// encoder its statistics).
//
// (Prefetch instructions issued one or two batches ahead, to overlap the
// misses with decoding as well, measured slower both live and in
// BenchmarkRandomFlows: see docs/performance.md.)
type Feeder struct {
	t    *Table
	pkts [BatchMax]decode.Packet
	ts   [BatchMax]int64
	nows [BatchMax]int64
	n    int
	b    batch
}

// NewFeeder returns a Feeder of t.
func NewFeeder(t *Table) *Feeder { return &Feeder{t: t} }

// Slot is where to decode the next packet; Commit takes it in. The batch
// must not be Full.
func (f *Feeder) Slot() *decode.Packet { return &f.pkts[f.n] }

// Commit takes in the packet decoded into Slot, captured at ts when the
// caller's flow time was now (ts, or later when frames read since were
// not metered): the table hands now to its sink with the flows this packet
// ends.
func (f *Feeder) Commit(ts, now int64) {
	f.ts[f.n], f.nows[f.n] = ts, now
	f.n++
}

// Full says that the batch is full: Flush it before the next Slot.
func (f *Feeder) Full() bool { return f.n == BatchMax }

// Pending is the number of packets held.
func (f *Feeder) Pending() int { return f.n }

// Flush meters every packet held.
func (f *Feeder) Flush() {
	f.Meter(f.pkts[:f.n], f.ts[:f.n], f.nows[:f.n])
	f.n = 0
}

// Meter meters pkts, in that order, in batches of BatchMax: packet i was
// captured at ts[i] when the caller's flow time was nows[i] (as Commit
// takes them). It is for a caller that decodes into arrays of its own
// (the exporter hands them from its reading goroutine to its metering
// one); the packets held are not touched.
func (f *Feeder) Meter(pkts []decode.Packet, ts, nows []int64) {
	for len(pkts) > 0 {
		n := min(len(pkts), BatchMax)
		f.t.lookupBatch(&f.b, pkts[:n])
		for j := range n {
			f.t.add(&pkts[j], ts[j], nows[j], &f.b.keys[j], f.b.hashes[j], f.b.found[j])
		}
		pkts, ts, nows = pkts[n:], ts[n:], nows[n:]
	}
}
