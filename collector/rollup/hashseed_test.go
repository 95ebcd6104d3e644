package rollup

import (
	"math/bits"
	"net/netip"
	"testing"

	"github.com/spanflow/spanflow/internal/addrhash"
)

// maxBucket is the most of addrs whose hashes share their low 10 bits.
func maxBucket(addrs []netip.Addr, hash func(netip.Addr) uint64) int {
	var n [1024]int
	best := 0
	for _, a := range addrs {
		i := hash(a) & 1023
		n[i]++
		best = max(best, n[i])
	}
	return best
}

// TestAddrHashNeedsTheSeed: IPv4 sources picked so that the public
// (unseeded) hash gives them all the same low bits, and IPv6 sources whose
// words XOR to one value, spread over the talker tables' slots like any
// others under addrHash.
func TestAddrHashNeedsTheSeed(t *testing.T) {
	public := func(a netip.Addr) uint64 {
		h0, h1 := addrWords(a)
		return addrhash.Fmix(h0 ^ bits.RotateLeft64(h1, 32))
	}
	var v4 []netip.Addr
	for x := uint32(0x0a000000); len(v4) < 500; x++ {
		a := netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
		if public(a)&1023 == 0 {
			v4 = append(v4, a)
		}
	}
	var v6 []netip.Addr
	for i := range 500 {
		var b [16]byte
		// The same bytes in h0's top half and h1's bottom half, which the
		// rotation puts on top of each other: h0 ^ rot(h1, 32) is the same.
		b[0], b[1] = 0x20, 0x01
		b[7], b[11] = byte(i), byte(i)
		b[6], b[10] = byte(i>>8), byte(i>>8)
		v6 = append(v6, netip.AddrFrom16(b))
	}
	for _, c := range []struct {
		name  string
		addrs []netip.Addr
	}{{"ipv4", v4}, {"ipv6", v6}} {
		if got := maxBucket(c.addrs, public); got < 100 {
			t.Fatalf("%s: the picked addresses share a bucket %d times under the public hash: the test picks them wrong", c.name, got)
		}
		if got := maxBucket(c.addrs, addrHash); got > 12 {
			t.Errorf("%s: %d of 500 picked addresses share their low bits under addrHash", c.name, got)
		}
	}
}
