package meter

import (
	"encoding/binary"
	"unsafe"

	"github.com/spanflow/spanflow/exporter/decode"
)

// The index: a flow's key, its hash, and the open-addressing slots that
// find its entry, for one packet (lookup) or a Feeder's batch in passes
// (lookupBatch).

type key struct {
	_            [0]uint64 // 8-byte aligned, for equal
	src, dst     [16]byte
	sport, dport uint16 // ICMP: dport is type<<8|code
	segment      uint32
	vlan, ivlan  uint16
	session      uint16
	proto        uint8
	v6           bool
}

// hash is the key's hash under the table's seed, a random number drawn
// for each table that starts the mixing, so that traffic on the mirrored
// link cannot pick flows whose hashes fill one run of the index. The
// unkeyed hash let 100,000 crafted flows take 12 s to insert (2.6 s the
// worst one), and every later packet of them 38 µs instead of half a
// microsecond (TestHashFloodNeedsTheSeed). Flows leave in the order of the
// table's lists, so the seed changes no output. (hash/maphash, keyed the
// same way, cost 5–10 % more per packet in BenchmarkRandomFlows.)
func (k *key) hash(seed uint64) uint64 {
	const m = 0x9e3779b97f4a7c15
	h := seed
	mix := func(x uint64) {
		h ^= x
		h *= m
		h ^= h >> 29
	}
	mix(binary.LittleEndian.Uint64(k.src[0:]))
	mix(binary.LittleEndian.Uint64(k.src[8:]))
	mix(binary.LittleEndian.Uint64(k.dst[0:]))
	mix(binary.LittleEndian.Uint64(k.dst[8:]))
	v6 := uint64(0)
	if k.v6 {
		v6 = 1
	}
	mix(uint64(k.sport)<<48 | uint64(k.dport)<<32 | uint64(k.segment))
	mix(uint64(k.vlan)<<48 | uint64(k.ivlan)<<32 | uint64(k.session)<<16 | uint64(k.proto)<<8 | v6)
	h ^= h >> 32
	h *= m
	h ^= h >> 31
	return h
}

// equal is k == o without the call to memequal the compiler makes for a
// 48-byte struct: six word compares, inlined into lookup.
func (k *key) equal(o *key) bool {
	a := (*[6]uint64)(unsafe.Pointer(k))
	b := (*[6]uint64)(unsafe.Pointer(o))
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] && a[5] == b[5]
}

// The key has no padding: equal compares every byte of it.
var _ [48 - unsafe.Sizeof(key{})]struct{}
var _ [unsafe.Sizeof(key{}) - 48]struct{}

// lookup returns the entry index for k, or none.
func (t *Table) lookup(k *key, h uint32) uint32 {
	for s := uint64(h) & t.mask; ; s = (s + 1) & t.mask {
		v := t.index[s]
		if v == 0 {
			return none
		}
		if uint32(v>>32) == h {
			i := uint32(v) - 1
			if t.at(i).key.equal(k) {
				return i
			}
		}
	}
}

// lookupFound is lookup when lookupBatch found entry found for k's hash
// (none if it found no entry): when that entry is in use and holds k, it is
// k's, without probing the index again. Packets metered since the batch was
// looked up may have ended, moved or added flows: an entry that no longer
// holds k (freed entries are zeroed, and the ones from hwm up are free)
// or a slot of another key with the same hash falls back to lookup.
func (t *Table) lookupFound(k *key, h uint32, found uint32) uint32 {
	if found < t.hwm {
		if e := t.at(found); e.state&stUsed != 0 && e.key.equal(k) {
			return found
		}
	}
	return t.lookup(k, h)
}

func (t *Table) indexInsert(h uint32, i uint32) {
	s := uint64(h) & t.mask
	for t.index[s] != 0 {
		s = (s + 1) & t.mask
	}
	t.index[s] = uint64(h)<<32 | uint64(i+1)
}

// indexDelete removes entry i with backward-shift deletion (linear probing
// needs no tombstones then).
func (t *Table) indexDelete(h uint32, i uint32) {
	s := uint64(h) & t.mask
	want := uint64(h)<<32 | uint64(i+1)
	for t.index[s] != want {
		s = (s + 1) & t.mask
	}
	for {
		t.index[s] = 0
		j := s
		for {
			j = (j + 1) & t.mask
			v := t.index[j]
			if v == 0 {
				return
			}
			home := (v >> 32) & t.mask
			// Move v back to s when its home is not within (s, j].
			if (j > s && (home <= s || home > j)) || (j < s && home <= s && home > j) {
				t.index[s] = v
				s = j
				break
			}
		}
	}
}

// grow doubles the index, rebuilding it in the other reservation (all
// zeros: never used, or given back or zeroed by the last grow).
func (t *Table) grow() {
	old, oldMem := t.index, t.mem.index[t.mem.cur]
	if len(old)*2*8 > len(t.mem.index[t.mem.cur^1]) {
		return // cannot happen: New sized it for MaxFlows
	}
	t.mem.cur ^= 1
	t.index = t.mem.slots(t.mem.cur, len(old)*2)
	t.mask = uint64(len(t.index) - 1)
	for _, v := range old {
		if v != 0 {
			t.indexInsert(uint32(v>>32), uint32(v)-1)
		}
	}
	if len(old)*8 < hugePage {
		// An index smaller than a huge page is zeroed here rather than
		// given back: the next grow into this reservation would fault
		// and have the kernel zero a whole 2 MiB page again (the first
		// few grows zeroed 2 MiB each, 4 % of a short capture's time).
		clear(old)
		return
	}
	// Whole huge pages: giving back part of one splits it, and the range
	// would then be mapped with 4 KiB pages when it is used again.
	discard(oldMem[:min(len(oldMem), (len(old)*8+hugePage-1)&^(hugePage-1))])
}

func isICMP(k *key) bool { return (k.proto == 1 && !k.v6) || (k.proto == 58 && k.v6) }

// keyOf fills k field by field: a composite literal is built on the stack
// with narrow stores and copied with 16-byte loads, which cannot be
// forwarded from those stores and stall (a sixth of lookupBatch's samples).
// Every byte of k is written: it has no padding.
func keyOf(p *decode.Packet, k *key) {
	k.src, k.dst = p.SrcAddr, p.DstAddr
	k.sport, k.dport = p.SrcPort, p.DstPort
	k.segment = p.SegmentID
	k.vlan, k.ivlan, k.session = p.VLAN, p.InnerVLAN, p.ERSPANSession
	k.proto, k.v6 = p.Proto, p.IPv6
	if isICMP(k) {
		k.sport, k.dport = 0, uint16(p.ICMPType)<<8|uint16(p.ICMPCode)
	}
}

// BatchMax is the most packets in a batch of a Feeder.
const BatchMax = 32

// batch is the keys and hashes of up to BatchMax packets.
type batch struct {
	keys   [BatchMax]key
	hashes [BatchMax]uint32
	found  [BatchMax]uint32 // the entry of the first slot with the hash, or none
}

// lookupBatch computes the keys and hashes of ps (at most BatchMax) into b
// and reads the index slot and the entry each will use, without changing
// anything: in three passes, so that the loads of each pass are
// independent of one another and all in flight at once.
func (t *Table) lookupBatch(b *batch, ps []decode.Packet) {
	for i := range ps {
		keyOf(&ps[i], &b.keys[i])
		b.hashes[i] = uint32(b.keys[i].hash(t.seed))
	}
	var slots [BatchMax]uint64
	for i := range ps {
		slots[i] = t.index[uint64(b.hashes[i])&t.mask]
	}
	var sum uint64
	for i := range ps {
		// The home slot may hold another flow (linear probing; the
		// fuller the index, the more often): the probe goes on, mostly
		// in the same cache line.
		v, h := slots[i], b.hashes[i]
		for s := uint64(h) & t.mask; v != 0 && uint32(v>>32) != h; {
			s = (s + 1) & t.mask
			v = t.index[s]
		}
		b.found[i] = none
		if v != 0 {
			e := &t.arena[uint32(v)-1]
			sum += uint64(e.last) + uint64(e.first) // both cache lines of the entry
			b.found[i] = uint32(v) - 1
		}
	}
	t.touched += sum
}
