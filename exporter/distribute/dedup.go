package distribute

import (
	"hash/maphash"
	"time"

	"github.com/spanflow/spanflow/exporter/decode"
)

// dedup remembers the packets seen within a window: a packet mirrored twice
// (by the source's host and by the destination's) comes twice, with other
// outer headers and maybe a TTL one lower after a router, but the same inner
// IP packet. The key is a hash of that packet, its TTL (hop limit) and IPv4
// header checksum left out, over its first dedupBytes bytes (transport
// checksums cover the rest) and its length.
//
// The table is 4-way set associative and lossy: when a set is full the
// oldest entry goes, so a duplicate arriving after more than
// dedupSlots/4-ish other packets within the window may be sent twice; it
// never removes a packet that was not seen (up to a 64-bit hash collision).
type dedup struct {
	window  int64
	seed    maphash.Seed
	slots   []dedupEntry
	mask    uint64
	scratch [dedupBytes]byte
	sink    uint64 // keeps probe's loads
}

type dedupEntry struct {
	hash uint64
	ts   int64
}

const (
	dedupBytes = 256
	dedupSlots = 1 << 17 // 2 MiB per rule
	dedupWays  = 4
)

func newDedup(window time.Duration, seed maphash.Seed) *dedup {
	return &dedup{window: int64(window), seed: seed, slots: make([]dedupEntry, dedupSlots), mask: dedupSlots/dedupWays - 1}
}

// key hashes the innermost IP packet of frame.
func (d *dedup) key(frame []byte, p *decode.Packet, isIP bool) uint64 {
	if !isIP {
		// Not an IP packet (ARP...): the whole inner frame is the key.
		if int(p.EthOffset) < len(frame) {
			frame = frame[p.EthOffset:]
		}
		return (maphash.Bytes(d.seed, frame[:min(len(frame), dedupBytes)]) ^ uint64(len(frame))*0x9e3779b97f4a7c15) | 1
	}
	ip := frame
	if int(p.IPOffset) < len(frame) {
		ip = frame[p.IPOffset:]
	}
	n := copy(d.scratch[:], ip)
	b := d.scratch[:n]
	switch {
	case !p.IPv6 && n >= 20:
		b[8] = 0            // TTL
		b[10], b[11] = 0, 0 // header checksum
	case p.IPv6 && n >= 40:
		b[7] = 0 // hop limit
	}
	return (maphash.Bytes(d.seed, b) ^ uint64(p.IPLength)*0x9e3779b97f4a7c15) | 1 // 0 marks an empty entry
}

// probe reads the first entry of k's set: done for a batch of keys before
// seen looks them up, the cache misses are taken together, not one by one.
func (d *dedup) probe(k uint64) uint64 { return d.slots[(k&d.mask)*dedupWays].hash }

// seen says whether the packet of key k came within the window, and
// remembers it.
func (d *dedup) seen(k uint64, ts int64) bool {
	set := d.slots[(k&d.mask)*dedupWays:][:dedupWays]
	victim := 0
	for i := range set {
		e := &set[i]
		if e.hash == k && ts-e.ts <= d.window && e.ts-ts <= d.window {
			return true
		}
		if set[victim].hash != 0 && (e.hash == 0 || e.ts < set[victim].ts) {
			victim = i // an empty entry, else the oldest
		}
	}
	set[victim] = dedupEntry{hash: k, ts: ts}
	return false
}
