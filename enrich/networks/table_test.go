package networks

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestToU128IPv4: an IPv4 address's fast path gives the value of its
// IPv4-mapped IPv6 form (As16), which the table's prefixes are built
// from, at the ends of the range and for random addresses.
func TestToU128IPv4(t *testing.T) {
	slow := func(a netip.Addr) u128 {
		b := a.As16()
		return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
	}
	addrs := []netip.Addr{netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("255.255.255.255"), netip.MustParseAddr("10.1.2.3")}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 10000 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], rng.Uint32())
		addrs = append(addrs, netip.AddrFrom4(b))
	}
	for _, a := range addrs {
		if got, want := toU128(a), slow(a); got != want {
			t.Fatalf("%v: %#x, want %#x", a, got, want)
		}
		if got, want := toU128(a), toU128(netip.AddrFrom16(a.As16())); got != want {
			t.Fatalf("%v: %#x, its IPv4-mapped form %#x", a, got, want)
		}
	}
}
