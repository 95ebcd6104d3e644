package alert

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// TestWindowCounterDistinct compares the port-scan counter (entries with
// their first ports inline, the rest in a shared set) with distinct ports
// counted in plain maps, on sources that reach from 1 to 300 ports, IPv4
// and IPv6.
func TestWindowCounterDistinct(t *testing.T) {
	const limit = 20
	w := windowCounter{window: time.Minute, limit: limit, max: 1000, distinct: true}
	rng := rand.New(rand.NewPCG(1, 2))
	exact := map[netip.Addr]map[uint16]bool{}
	crossings := map[netip.Addr]int{}
	var srcs []netip.Addr
	for i := range 300 {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		if i%3 == 0 {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})
		}
		srcs = append(srcs, a)
	}
	for range 50000 {
		i := rng.IntN(len(srcs))
		a := srcs[i]
		port := uint16(rng.IntN(i%40 + 1)) // source i reaches up to i%40+1 ports
		if exact[a] == nil {
			exact[a] = map[uint16]bool{}
		}
		exact[a][port] = true
		if w.add(a, port) == crossed {
			crossings[a]++
		}
	}
	for _, a := range srcs {
		want := min(len(exact[a]), limit+1)
		if got := w.count(a); got != want {
			t.Errorf("%v: count %d, want %d", a, got, want)
		}
		if wantCross := len(exact[a]) > limit; (crossings[a] == 1) != wantCross || crossings[a] > 1 {
			t.Errorf("%v: crossed %d times with %d distinct ports", a, crossings[a], len(exact[a]))
		}
	}
	w.reset()
	if w.tracked() != 0 || w.count(srcs[0]) != 0 {
		t.Errorf("after reset: %d tracked", w.tracked())
	}
}
