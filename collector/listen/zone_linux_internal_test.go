package listen

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// loLinkLocal is the source [fe80::1%lo]:4691 as recvmmsg writes it.
func loLinkLocal(tb testing.TB) unix.RawSockaddrInet6 {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		tb.Skip("no lo interface")
	}
	sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: 0x5312, Scope_id: uint32(lo.Index)}
	sa.Addr[0], sa.Addr[1], sa.Addr[15] = 0xfe, 0x80, 1
	return sa
}

// TestSockaddrZone: a link-local source is given its interface's name as
// its zone, from the cache after the first datagram as before it.
func TestSockaddrZone(t *testing.T) {
	sa := loLinkLocal(t)
	for i := range 3 {
		ap := sockaddr(&sa)
		if ap.Addr().String() != "fe80::1%lo" || ap.Port() != 4691 {
			t.Fatalf("datagram %d: source %s, want [fe80::1%%lo]:4691", i, ap)
		}
	}
	sa.Scope_id = 1 << 30 // no such interface: no zone
	if ap := sockaddr(&sa); ap.Addr().Zone() != "" {
		t.Errorf("source %s: a zone for an interface that does not exist", ap)
	}
}

// BenchmarkSockaddrLinkLocal: the source address of a datagram from a
// link-local exporter.
func BenchmarkSockaddrLinkLocal(b *testing.B) {
	sa := loLinkLocal(b)
	b.ReportAllocs()
	for b.Loop() {
		if sockaddr(&sa).Addr().Zone() != "lo" {
			b.Fatal("no zone")
		}
	}
}
