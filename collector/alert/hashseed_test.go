package alert

import (
	"math/bits"
	"net/netip"
	"testing"
)

// longestRun is the longest run of occupied slots: the most probes a
// lookup takes.
func longestRun(n int, used func(int) bool) int {
	best, run := 0, 0
	for i := range 2 * n {
		if used(i % n) {
			run++
			best = max(best, run)
		} else {
			run = 0
		}
	}
	return min(best, n)
}

// TestDetectorHashesNeedTheSeed: sources picked so that the detectors'
// former public hashes give them all one slot (IPv4 addresses for the
// address tables and the known-peers set, IPv6 addresses whose words XOR
// to one value, (address, port) keys for the ports set) spread over the
// detectors' tables like any others now.
func TestDetectorHashesNeedTheSeed(t *testing.T) {
	const n = 500
	publicWords := func(a0, a1 uint64) uint64 { // the former hashWords
		h := a0 ^ bits.RotateLeft64(a1, 32)
		h ^= h >> 33
		h *= 0xff51afd7ed558ccd
		h ^= h >> 33
		h *= 0xc4ceb9fe1a85ec53
		return h ^ h>>33
	}
	pick := func(hash func(uint64) uint64) []uint64 {
		var out []uint64
		for k := uint64(0x0a000000); len(out) < n; k++ {
			if hash(k)&1023 == 0 {
				out = append(out, k)
			}
		}
		return out
	}
	v4addr := func(k uint64) netip.Addr {
		return netip.AddrFrom4([4]byte{byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)})
	}

	var tbl addrTable // address tables (windowed counters), IPv4 and IPv6
	for i, k := range pick(func(k uint64) uint64 { return publicWords(k, 0) }) {
		tbl.put(v4addr(k), int32(i))
	}
	for i := range uint64(n) {
		// The same value in a0's top half and a1's bottom half, which
		// the rotation puts on top of each other.
		var b [16]byte
		b[0], b[1] = 0x20, 0x01
		b[7], b[11] = byte(i), byte(i)
		b[6], b[10] = byte(i>>8), byte(i>>8)
		tbl.put(netip.AddrFrom16(b), int32(n+i))
	}
	if r := longestRun(len(tbl.entries), func(i int) bool { return tbl.entries[i].idx != 0 }); r > 64 {
		t.Errorf("address table: a run of %d slots for %d addresses picked to collide", r, 2*n)
	}

	var peers peerSet
	for _, k := range pick(func(k uint64) uint64 { return ((k | v4Used) * 0x9E3779B97F4A7C15) >> 32 }) {
		peers.add(v4addr(k), false)
	}
	if r := longestRun(len(peers.v4), func(i int) bool { return peers.v4[i] != 0 }); r > 64 {
		t.Errorf("known peers: a run of %d slots for %d addresses picked to collide", r, n)
	}

	var ports stampSet
	for _, k := range pick(func(k uint64) uint64 { h := (k + 1) * 0x9E3779B97F4A7C15; return h ^ h>>31 }) {
		ports.insert(k, 0)
	}
	if r := longestRun(len(ports.slots), func(i int) bool { return ports.slots[i] != 0 }); r > 64 {
		t.Errorf("ports: a run of %d slots for %d keys picked to collide", r, n)
	}
}
