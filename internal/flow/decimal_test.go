package flow

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"testing"
)

// TestAppendUint compares appendUint with strconv on every length's
// boundaries and on random numbers of every bit length.
func TestAppendUint(t *testing.T) {
	vals := []uint64{0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, math.MaxUint32, math.MaxUint64, math.MaxUint64 - 1}
	for p := uint64(10); p <= 1e19; p *= 10 {
		vals = append(vals, p-1, p, p+1)
		if p > math.MaxUint64/10 {
			break
		}
	}
	rng := rand.New(rand.NewPCG(9, 9))
	for range 100000 {
		vals = append(vals, rng.Uint64()>>rng.IntN(64))
	}
	for _, v := range vals {
		// In a buffer with room and in one without.
		for _, b := range [][]byte{make([]byte, 3, 64), make([]byte, 3)} {
			if got, want := string(appendUint(b, v)), string(strconv.AppendUint(b, v, 10)); got != want {
				t.Fatalf("appendUint(%d) = %q, want %q", v, got, want)
			}
		}
	}
}

// TestAppendAddr compares appendAddr with netip's formatter on every
// octet in every position, random IPv4 and IPv6 addresses, IPv4-mapped
// and zoned IPv6 ones, in buffers with and without room.
func TestAppendAddr(t *testing.T) {
	var addrs []netip.Addr
	for o := range 256 {
		x := byte(o)
		addrs = append(addrs, netip.AddrFrom4([4]byte{x, 0, 0, 0}), netip.AddrFrom4([4]byte{255, x, 9, 100}),
			netip.AddrFrom4([4]byte{1, 22, x, 255}), netip.AddrFrom4([4]byte{100, 10, 1, x}), netip.AddrFrom4([4]byte{x, x, x, x}))
	}
	rng := rand.New(rand.NewPCG(4, 6))
	for range 100000 {
		var v [16]byte
		for i := range v {
			v[i] = byte(rng.Uint32())
		}
		addrs = append(addrs, netip.AddrFrom4([4]byte(v[:4])), netip.AddrFrom16(v), netip.AddrFrom16(v).WithZone("eth0"))
	}
	addrs = append(addrs, netip.MustParseAddr("::ffff:10.1.2.3"), netip.MustParseAddr("::"), netip.Addr{})
	for _, a := range addrs {
		for _, b := range [][]byte{make([]byte, 3, 64), make([]byte, 3)} {
			if got, want := string(appendAddr(b, a)), string(a.AppendTo(b)); got != want {
				t.Fatalf("appendAddr(%v) = %q, want %q", a, got, want)
			}
		}
	}
}

// BenchmarkAppendAddr: random IPv4 addresses, as a stream's are, through
// appendAddr and through netip's formatter, in one run.
func BenchmarkAppendAddr(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	addrs := make([]netip.Addr, 1<<16)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())})
	}
	buf := make([]byte, 0, 64)
	b.Run("spanflow", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			buf = appendAddr(buf[:0], addrs[i&(len(addrs)-1)])
		}
	})
	b.Run("netip", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			buf = addrs[i&(len(addrs)-1)].AppendTo(buf[:0])
		}
	})
}
