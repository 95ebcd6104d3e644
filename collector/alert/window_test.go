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

// TestWindowCounterSliding checks the sliding counts against distinct
// ports counted exactly from every (time, port) seen: at each flow a
// source's count is at least its distinct ports of the last window (none
// is missed at a sub-window's or window's boundary) and, for sources that
// never go over the limit, at most those since the window before the
// current sub-window began; flows are counted the same way.
func TestWindowCounterSliding(t *testing.T) {
	const limit, window = 20, time.Minute
	for _, distinct := range []bool{true, false} {
		w := windowCounter{window: window, limit: limit, max: 1000, distinct: distinct}
		rng := rand.New(rand.NewPCG(3, 4))
		type seen struct {
			at   time.Time
			port uint16
		}
		hist := map[netip.Addr][]seen{}
		var srcs []netip.Addr
		for i := range 60 {
			a := netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})
			if i%3 == 0 {
				a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})
			}
			srcs = append(srcs, a)
		}
		// Sources 0-29 reach up to 40 ports, 30-59 at most limit in all.
		countSince := func(a netip.Addr, from time.Time) int {
			ports := map[uint16]bool{}
			n := 0
			for _, s := range hist[a] {
				if !s.at.Before(from) {
					ports[s.port] = true
					n++
				}
			}
			if distinct {
				return len(ports)
			}
			return n
		}
		now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
		w.roll(now)
		for range 20000 {
			now = now.Add(time.Duration(rng.IntN(40)) * time.Millisecond)
			w.roll(now)
			i := rng.IntN(len(srcs))
			a := srcs[i]
			var port uint16
			if i < 30 {
				port = uint16(rng.IntN(40))
			} else {
				port = uint16(rng.IntN(limit))
			}
			hist[a] = append(hist[a], seen{now, port})
			w.add(a, port)
			got := w.count(a)
			if lo := countSince(a, now.Add(-window)); got < min(lo, limit+1) {
				t.Fatalf("distinct %v, %v at %s: count %d, want at least %d", distinct, a, now.Format(time.StampMilli), got, min(lo, limit+1))
			}
			if hi := countSince(a, w.start.Add(-window)); i >= 30 && distinct && got > hi {
				t.Fatalf("%v at %s: count %d, want at most %d", a, now.Format(time.StampMilli), got, hi)
			}
			if hi := countSince(a, w.start.Add(-window)); !distinct && got > hi {
				t.Fatalf("flows, %v at %s: count %d, want at most %d", a, now.Format(time.StampMilli), got, hi)
			}
		}
		if w.tracked() > len(srcs) {
			t.Errorf("%d sources tracked", w.tracked())
		}
	}
}
