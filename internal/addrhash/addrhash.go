// Package addrhash hashes the words of traffic addresses for the
// collector's open-addressing tables (rollup talkers, alert detectors),
// keyed by seeds drawn when the process starts: the addresses are the
// traffic's, spoofed ones included, and with a public hash a sender could
// pick thousands whose hashes share the low bits the tables probe by.
package addrhash

import "math/rand/v2"

// Fmix is MurmurHash3's finaliser: every input bit reaches every output
// bit.
func Fmix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	return h ^ h>>33
}

// seed0 and seed1 key the hashes; drawn at start.
var seed0, seed1 = rand.Uint64(), rand.Uint64()

// Words hashes an address given as two words (an IPv4 address in a0, a1
// zero). Each word is keyed and multiplied on its own (the products are
// computed side by side), so that no two IPv6 addresses share a hash by
// their words' XOR.
func Words(a0, a1 uint64) uint64 {
	return Fmix((a0^seed0)*0x9e3779b97f4a7c15 + (a1^seed1)*0xc2b2ae3d27d4eb4f)
}

// Word hashes one word, keyed.
func Word(k uint64) uint64 { return Fmix(k ^ seed0) }
