// Package meter is the exporter's third stage: a flow table fed with decoded
// packets. It keys flows on addresses, ports, protocol, VLANs, tunnel segment
// and ERSPAN session, applies active and idle timeouts on flow time (packet
// timestamps, so a capture file always gives the same flows), ends TCP flows
// on FIN from both sides or RST, measures TCP handshake RTT, retransmissions
// and zero windows, and passes each ended flow on as a flow.Record.
//
// The table is built for memory and speed: entries of 128 bytes (two cache
// lines) live in one arena reserved for the configured maximum outside the Go
// heap and backed by huge pages where the kernel has them (no per-flow
// allocation; memory is taken as entries are first used), an
// open-addressing index of 8-byte slots finds them, and intrusive lists keep
// them in last-seen order (to the second) so that idle expiry and eviction
// take the oldest first without scanning.
package meter

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"time"
	"unsafe"

	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

// IPFIX flowEndReason values (RFC 7011/IANA).
const (
	EndIdle            uint8 = 1
	EndActive          uint8 = 2
	EndOfFlow          uint8 = 3 // TCP FIN from both sides, or RST
	EndForced          uint8 = 4 // end of capture or shutdown
	EndLackOfResources uint8 = 5 // table full
)

// batchSize is how many ended flows the table passes to the sink at most
// in one Write.
const batchSize = 64

// closeGrace is how long an ended TCP flow stays in the table to count the
// last ACK after the second FIN (or stray segments after a RST).
const closeGrace = time.Second

// sweepEvery is how often, in flow time, timeouts are checked.
const sweepEvery = time.Second

const none = ^uint32(0)

// Entry state bits.
const (
	stUsed uint8 = 1 << iota
	stClosed
	stSeqInit
	stSYN    // this direction sent a SYN (client)
	stSYNACK // this direction sent a SYN-ACK (server)
	stHSDone // client's handshake ACK seen (or given up on)
	stFIN
	stFast // one of Configuration.Fast selects the flow: FastActiveTimeout applies
)

// entry is one flow: two cache lines, and the arena is aligned to them.
// The first line is what every packet's lookup reads and updates (key, last
// seen, octets), the second the rest; lookupBatch reads both.
type entry struct {
	key        key
	last       int64 // ns
	bytes      uint64
	first      int64 // ns
	packets    uint32
	prev, next uint32
	inIf       uint32
	nextSeq    uint32
	rttClient  uint32 // µs
	rttServer  uint32 // µs
	retrans    uint32
	zeroWin    uint32
	hsTime     uint32 // µs (wrapping) of this direction's SYN or SYN-ACK
	tcpFlags   uint16
	tos        uint8
	state      uint8
	srcMAC     [6]byte
	dstMAC     [6]byte
}

const entrySize = 128

var _ [entrySize - unsafe.Sizeof(entry{})]struct{}
var _ [unsafe.Sizeof(entry{}) - entrySize]struct{}

// list is an intrusive doubly linked list of entries in last-seen order.
type list struct{ head, tail uint32 }

// Stats counts what the table did.
type Stats struct {
	Packets       uint64 // packets metered
	Octets        uint64 // IP octets metered
	FlowsCreated  uint64
	FlowsExported [6]uint64 // by flowEndReason
	FlowsEvicted  uint64    // exported early because the table was full
	SinkErrors    uint64
}

// Exported is the number of flows exported for every reason.
func (s Stats) Exported() uint64 {
	var n uint64
	for _, x := range s.FlowsExported {
		n += x
	}
	return n
}

// Table is the flow table. It is not safe for concurrent use: the pipeline
// feeds it from one goroutine (a live capture would run one table per shard).
type Table struct {
	r     *reporter.Reporter
	cfg   Configuration
	sink  Sink
	log   *reporter.Limited
	mem   *tableMemory
	seed  uint64  // of the index's hashes (key.hash): random, odd
	arena []entry // MaxFlows entries, reserved (touched as hwm grows)
	// rev is, per entry, the entry of the other direction of its flow, or
	// none when not known (yet): TCP looks it up at the handshake and at
	// FIN, and keeping it saves a hash and an index probe, a cache miss,
	// each time after the first. rev[a] == b implies rev[b] == a; expire
	// unties both.
	rev []uint32
	// lookupReverse ignores rev: tests compare with the table that looks
	// every reverse entry up.
	lookupReverse bool
	// unpaired holds, by their key without segment id and VLANs
	// (looseKey), the servers' entries whose SYN-ACK found no reverse
	// entry: traffic routed between overlay segments carries each
	// direction in its destination's VNI, and some GRE mirrors tag each
	// direction with its own key. The client's ACK finds its server there
	// (reverseAt). Only handshakes without a reverse of the same segment
	// get here: the map stays empty on traffic that pairs as it should.
	unpaired map[key]uint32
	index    []uint64 // hash<<32 | entry index+1; 0 is empty
	mask     uint64
	n        int    // flows in the table
	hwm      uint32 // entries ever used (since the last Flush)
	free     uint32 // free list through next
	open     list
	closed   list
	now      int64 // flow time: the latest packet metered; timeouts run on it
	clock    int64 // flow time handed to the sink: now, or the caller's if later (see add)
	sweep    int64 // flow time of the next sweep
	batch    []flow.Record
	stats    Stats
	pub      published
	// initiators backs the Extra (biflowDirection) of the batch's TCP
	// records whose opener the table saw, one per batch slot, so that
	// filling a record allocates nothing.
	initiators []flow.Extra

	activeNs, idleNs int64
	fastNs           int64 // active timeout of stFast flows
	// fastOnly: only stFast flows can reach their active timeout before
	// their idle one, and the active scan looks at fastIdx alone: the
	// entries made stFast (some may since have ended, or been reused, and
	// listed twice; fastSeen, one bit an entry, drops those at each scan).
	// Walking every flow each second of flow time took 20 ms with
	// 1,048,576 flows of which none was selected.
	fastOnly   bool
	fastIdx    []uint32
	fastSeen   []uint64
	touched    uint64 // what lookupBatch read, so that it reads
	scanActive bool
}

// New returns a table passing ended flows to sink in batches.
func New(r *reporter.Reporter, cfg Configuration, sink Sink) (*Table, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Table{
		r: r, cfg: cfg, sink: sink, seed: rand.Uint64() | 1,
		log:      reporter.NewLimited(r.Log, 10*time.Second),
		free:     none,
		open:     list{none, none},
		closed:   list{none, none},
		batch:    make([]flow.Record, 0, batchSize),
		activeNs: int64(cfg.ActiveTimeout),
		idleNs:   int64(cfg.IdleTimeout),
		fastNs:   int64(cfg.ActiveTimeout),
		// When flows can stay idle longer than they may last, a quiet flow
		// reaches its active timeout before its idle one: scan for it.
		scanActive: cfg.IdleTimeout >= cfg.ActiveTimeout,
	}
	if cfg.FastActiveTimeout > 0 && len(cfg.Fast) > 0 {
		t.fastNs = int64(cfg.FastActiveTimeout)
		// A selected flow that pauses must still send its counters at
		// its fast timeout, not at its idle one.
		t.fastOnly = !t.scanActive && cfg.IdleTimeout >= cfg.FastActiveTimeout
		t.scanActive = t.scanActive || cfg.IdleTimeout >= cfg.FastActiveTimeout
	}
	t.initiators = make([]flow.Extra, batchSize)
	t.mem = &tableMemory{}
	// The mappings are returned when the table is garbage: tests make many.
	runtime.AddCleanup(t, (*tableMemory).release, t.mem)
	// The index grows by doubling up to the first power of two that keeps
	// MaxFlows under 70 % load; it is rebuilt in one of two reservations
	// of that size while the other holds the current one.
	slots := uint64(1024) // 64-bit: a 32-bit int would overflow below
	for slots*7/10 < uint64(cfg.MaxFlows)+1 {
		slots *= 2
	}
	maxSlots := int(slots)
	var err error
	if need := uint64(cfg.MaxFlows)*uint64(unsafe.Sizeof(entry{})) + slots*16; need > math.MaxInt/2 {
		// A 32-bit process cannot address it.
		err = fmt.Errorf("%d MiB is more than this process can address", need>>20)
	} else if t.mem.arena, err = reserve(cfg.MaxFlows * int(unsafe.Sizeof(entry{}))); err == nil {
		if t.mem.index[0], err = reserve(maxSlots * 8); err == nil {
			if t.mem.index[1], err = reserve(maxSlots * 8); err == nil {
				t.mem.rev, err = reserve(cfg.MaxFlows * 4)
			}
		}
	}
	if err == nil {
		// An index of up to 262,144 slots and the reverse entries of up
		// to 524,288 flows fit in their first 2 MiB, and are mostly
		// much smaller: faulting a whole huge page in for them cost more
		// than the TLB misses 4 KiB pages add (a huge page's first touch
		// costs 2.5-4 times the CPU of the small pages it covers under
		// our hypervisor). The entries keep huge pages from the start:
		// every packet reads one.
		smallPagesFirst(t.mem.index[0])
		smallPagesFirst(t.mem.index[1])
		smallPagesFirst(t.mem.rev)
	}
	if err != nil {
		t.mem.release()
		return nil, fmt.Errorf("cannot reserve memory for %d flows (lower the maximum number of flows): %w", cfg.MaxFlows, err)
	}
	t.arena = unsafe.Slice((*entry)(unsafe.Pointer(unsafe.SliceData(t.mem.arena))), cfg.MaxFlows)
	t.rev = unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(t.mem.rev))), cfg.MaxFlows)
	t.index = t.mem.slots(0, 1024)
	t.mask = 1023
	t.registerMetrics()
	return t, nil
}

// tableMemory holds the table's mappings, outside the Go heap: the
// entries, the reverse entries, and two reservations for the index
// (current and next).
type tableMemory struct {
	arena []byte
	rev   []byte
	index [2][]byte
	cur   int // which index reservation is in use
}

func (m *tableMemory) release() {
	release(m.arena)
	release(m.rev)
	release(m.index[0])
	release(m.index[1])
	*m = tableMemory{}
}

// slots returns the first n slots of index reservation i.
func (m *tableMemory) slots(i, n int) []uint64 {
	return unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(m.index[i]))), n)
}

// Close gives the table's memory back at once instead of when the table
// is garbage (which a 32-bit process making many tables cannot wait for).
// Flush first: the flows still in the table are forgotten. Only Stats,
// Len and Publish work afterwards.
func (t *Table) Close() {
	t.mem.release()
	t.arena, t.index, t.rev = nil, nil, nil
}

// Stats returns the counters so far.
func (t *Table) Stats() Stats { return t.stats }

// Len is the number of flows in the table.
func (t *Table) Len() int { return t.n }

func (t *Table) at(i uint32) *entry { return &t.arena[i] }

func (t *Table) listOf(e *entry) *list {
	if e.state&stClosed != 0 {
		return &t.closed
	}
	return &t.open
}

func (t *Table) unlink(l *list, i uint32, e *entry) {
	if e.prev != none {
		t.at(e.prev).next = e.next
	} else {
		l.head = e.next
	}
	if e.next != none {
		t.at(e.next).prev = e.prev
	} else {
		l.tail = e.prev
	}
}

func (t *Table) pushBack(l *list, i uint32, e *entry) {
	e.prev, e.next = l.tail, none
	if l.tail != none {
		t.at(l.tail).next = i
	} else {
		l.head = i
	}
	l.tail = i
}

// alloc returns a fresh entry index, evicting the oldest flow when full.
func (t *Table) alloc() uint32 {
	if t.n >= t.cfg.MaxFlows {
		victim := t.closed.head
		reason := EndOfFlow
		if victim == none {
			victim, reason = t.open.head, EndLackOfResources
			t.stats.FlowsEvicted++
		}
		t.expire(victim, reason)
	}
	if t.free != none {
		i := t.free
		t.free = t.at(i).next
		return i
	}
	i := t.hwm
	t.hwm++
	return i
}

// expire passes entry i on (when it counted packets) and frees it.
func (t *Table) expire(i uint32, reason uint8) {
	e := t.at(i)
	t.emit(e, reason)
	t.unlink(t.listOf(e), i, e)
	t.indexDelete(uint32(e.key.hash(t.seed)), i)
	if r := t.rev[i]; r != none {
		t.rev[r] = none
	}
	if len(t.unpaired) > 0 && e.state&stSYNACK != 0 {
		t.forgetUnpaired(i, e)
	}
	*e = entry{next: t.free}
	t.free = i
	t.n--
}

// Add meters one packet captured at ts (ns since the epoch), which is also
// the flow time handed to the sink with the flows it ends.
func (t *Table) Add(p *decode.Packet, ts int64) {
	var k key
	keyOf(p, &k)
	t.add(p, ts, ts, &k, uint32(k.hash(t.seed)), none)
}

// add meters a packet captured at ts when the caller's flow time was now
// (see Feeder.Commit). The caller's flow time also counts frames that were
// not metered, so it may be later than the table's: the sink is handed the
// caller's (clock), while timeouts run on the packets' (now). found is the
// entry lookupBatch found for k's hash, or none (see lookupFound).
func (t *Table) add(p *decode.Packet, ts, now int64, k *key, h uint32, found uint32) {
	if now > t.clock {
		t.clock = now
	}
	if ts > t.now {
		t.now = ts
		if t.now >= t.sweep {
			t.Expire(t.now)
		}
	}
	i := t.lookupFound(k, h, found)
	var e *entry
	if i == none {
		i = t.insert(k, h)
		e = t.at(i)
	} else {
		e = t.at(i)
		switch {
		case e.packets > 0 && ts-e.last >= t.idleNs:
			// Idle for longer than the timeout, not swept yet (sweeps run
			// once per second of flow time): the gap ends the record.
			t.emit(e, EndIdle)
			t.restart(e)
		case e.packets > 0 && ts-e.first >= t.activeOf(e):
			t.emit(e, EndActive)
			t.restart(e)
		case e.state&stClosed != 0 && p.Proto == 6 && p.TCPFlags&0x12 == 0x02:
			// A new SYN on an ended connection: the ports were reused.
			t.expire(i, EndOfFlow)
			i = t.insert(k, h)
			e = t.at(i)
		}
		// Move the flow to the recent end of its list at most once per
		// second of flow time (when its last packet was in an earlier
		// second): relinking touches two other entries (two cache misses),
		// and the idle sweep needs the order only to that precision.
		if e.state&stClosed == 0 && t.now/int64(sweepEvery) != e.last/int64(sweepEvery) {
			t.unlink(&t.open, i, e)
			t.pushBack(&t.open, i, e)
		}
	}
	if e.packets == 0 {
		e.first, e.last = ts, ts
	}
	if ts > e.last {
		e.last = ts
	} else if ts < e.first {
		e.first = ts
	}
	e.packets++
	e.bytes += uint64(p.IPLength)
	e.tos = p.TOS
	e.srcMAC, e.dstMAC = p.SrcMAC, p.DstMAC
	if p.InIf != 0 {
		e.inIf = p.InIf
	}
	t.stats.Packets++
	t.stats.Octets += uint64(p.IPLength)
	if p.Proto == 6 && !p.NonFirstFragment {
		t.tcp(p, i, e, ts)
	}
}

// activeOf is the active timeout of e's flow.
func (t *Table) activeOf(e *entry) int64 {
	if e.state&stFast != 0 {
		return t.fastNs
	}
	return t.activeNs
}

// restart clears the counters of a flow that reached its active timeout; the
// TCP state goes on.
func (t *Table) restart(e *entry) {
	e.packets, e.bytes, e.tcpFlags = 0, 0, 0
	e.retrans, e.zeroWin = 0, 0
}

func (t *Table) insert(k *key, h uint32) uint32 {
	i := t.alloc()
	if uint64(t.n+1)*10 > uint64(len(t.index))*7 {
		t.grow()
	}
	e := t.at(i)
	*e = entry{key: *k, state: stUsed}
	t.rev[i] = none
	// Selectors are matched once per flow, not per packet.
	for j := range t.cfg.Fast {
		if t.cfg.Fast[j].match(k) {
			e.state |= stFast
			if t.fastOnly {
				t.fastIdx = append(t.fastIdx, i)
			}
			break
		}
	}
	t.indexInsert(h, i)
	t.pushBack(&t.open, i, e)
	t.n++
	t.stats.FlowsCreated++
	return i
}

// Expire ends the flows whose timeouts passed at flow time now and passes
// them on. Add calls it as flow time advances; a live capture also calls it
// from a ticker so that flows end while no packet arrives.
func (t *Table) Expire(now int64) {
	if now > t.clock {
		t.clock = now
	}
	if now > t.now {
		t.now = now
	}
	now = t.now
	// The active scan goes first, so that a flow that reached both its
	// timeouts since the last sweep (a capture file with a gap in time)
	// ends with the one that came first: active when first packet +
	// active timeout is no later than last packet + idle timeout.
	if t.fastOnly {
		t.scanFast(now)
	} else if t.scanActive {
		for _, l := range []*list{&t.open, &t.closed} {
			for i := l.head; i != none; {
				e := t.at(i)
				next := e.next
				if a := t.activeOf(e); e.packets > 0 && now-e.first >= a && e.first+a <= e.last+t.idleNs {
					t.emit(e, EndActive)
					t.restart(e)
				}
				i = next
			}
		}
	}
	for t.closed.head != none {
		e := t.at(t.closed.head)
		if now-e.last < int64(closeGrace) {
			break
		}
		t.expire(t.closed.head, EndOfFlow)
	}
	for t.open.head != none {
		e := t.at(t.open.head)
		if now-e.last < t.idleNs {
			break
		}
		t.expire(t.open.head, EndIdle)
	}
	t.sweep = now + int64(sweepEvery)
	t.Sync()
	t.Publish()
}

// scanFast ends the active period of the selected flows due at now (the
// active scan when only they can be due), and drops from fastIdx the
// entries that are no longer selected flows, or listed twice.
func (t *Table) scanFast(now int64) {
	if need := int(t.hwm+63) / 64; len(t.fastSeen) < need {
		t.fastSeen = append(t.fastSeen, make([]uint64, need-len(t.fastSeen))...)
	}
	kept := t.fastIdx[:0]
	for _, i := range t.fastIdx {
		e := t.at(i) // entries from hwm up are free, whatever they hold
		w, bit := i/64, uint64(1)<<(i%64)
		if i >= t.hwm || e.state&stUsed == 0 || e.state&stFast == 0 || t.fastSeen[w]&bit != 0 {
			continue
		}
		t.fastSeen[w] |= bit
		kept = append(kept, i)
		if e.packets > 0 && now-e.first >= t.fastNs && e.first+t.fastNs <= e.last+t.idleNs {
			t.emit(e, EndActive)
			t.restart(e)
		}
	}
	for _, i := range kept {
		t.fastSeen[i/64] &^= 1 << (i % 64)
	}
	clear(t.fastIdx[len(kept):])
	t.fastIdx = kept
}

// Flush ends every flow (flowEndReason forcedEnd, or endOfFlow for TCP
// connections already closed) and passes them on at flow time now: at the
// end of a capture file or on shutdown.
func (t *Table) Flush(now int64) {
	if now > t.clock {
		t.clock = now
	}
	// When the index is not much larger than the flows it holds, it is
	// emptied at once after every flow is passed on: deleting the flows
	// one by one costs a cache miss and a backward shift each (4 % of the
	// exporter's whole run on a capture of short connections).
	if uint64(t.n)*8 < uint64(len(t.index)) {
		for t.closed.head != none {
			t.expire(t.closed.head, EndOfFlow)
		}
		for t.open.head != none {
			t.expire(t.open.head, EndForced)
		}
	} else {
		for i := t.closed.head; i != none; i = t.at(i).next {
			t.emit(t.at(i), EndOfFlow)
		}
		for i := t.open.head; i != none; i = t.at(i).next {
			t.emit(t.at(i), EndForced)
		}
		clear(t.index)
		clear(t.unpaired)
		t.n, t.hwm, t.free = 0, 0, none
		t.open, t.closed = list{none, none}, list{none, none}
	}
	clear(t.fastIdx)
	t.fastIdx = t.fastIdx[:0]
	t.Sync()
	t.Publish()
}
