package forward

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

func receive(t *testing.T, spoof bool) (netip.AddrPort, []byte) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	f, err := New(reporter.NewForTest(nil), Configuration{Targets: []string{pc.LocalAddr().String()}, Spoof: spoof})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	payload := []byte{0, 10, 0, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	f.Tap(decoders.Datagram{Source: netip.MustParseAddrPort("127.0.0.2:5555"), Payload: payload})
	pc.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 2048)
	n, from, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf[:n], payload) {
		t.Errorf("forwarded %x, want %x", buf[:n], payload)
	}
	return from.(*net.UDPAddr).AddrPort(), payload
}

func TestForward(t *testing.T) {
	from, _ := receive(t, false)
	if from.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("unspoofed copy from %v, want the collector's 127.0.0.1", from)
	}
}

func TestForwardSpoofed(t *testing.T) {
	testutil.Root(t)
	if os.Geteuid() != 0 {
		return
	}
	from, _ := receive(t, true)
	if from != netip.MustParseAddrPort("127.0.0.2:5555") {
		t.Errorf("spoofed copy from %v, want the exporter's 127.0.0.2:5555", from)
	}
}

// TestForwardBatch: a batch of datagrams from IPv4 and IPv6 exporters, in
// runs of one length (sent as one UDP GSO send), with shorter and longer
// ones between, reaches an IPv4 and an IPv6 target each in order and byte
// for byte, and every one is counted; with Spoof, the IPv4 exporters'
// datagrams reach the IPv4 target from the exporter's address, in their
// place in the order.
func TestForwardBatch(t *testing.T) {
	for _, spoof := range []bool{false, true} {
		t.Run(fmt.Sprint("spoof=", spoof), func(t *testing.T) {
			if spoof {
				testutil.Root(t)
				if os.Geteuid() != 0 {
					return
				}
			}
			var targets []*net.UDPConn
			var names []string
			for _, a := range []string{"127.0.0.1:0", "[::1]:0"} {
				c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(a)))
				if err != nil {
					t.Skip(err)
				}
				defer c.Close()
				c.SetReadBuffer(4 << 20)
				targets, names = append(targets, c), append(names, c.LocalAddr().String())
			}
			r := reporter.NewForTest(nil)
			f, err := New(r, Configuration{Targets: names, Spoof: spoof})
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Start(); err != nil {
				t.Fatal(err)
			}
			defer f.Stop()
			var dgs []decoders.Datagram
			add := func(n, size int, src string) {
				for range n {
					p := make([]byte, size)
					copy(p, fmt.Sprintf("datagram %d", len(dgs)))
					dgs = append(dgs, decoders.Datagram{Source: netip.MustParseAddrPort(src), Payload: p})
				}
			}
			add(70, 1300, "127.0.0.2:5555")
			add(1, 500, "127.0.0.2:5555")
			add(5, 1300, "[::1]:6666")
			add(3, 80, "127.0.0.3:7777")
			add(10, 1300, "127.0.0.2:5555")
			f.TapBatch(dgs)
			for i, c := range targets {
				buf := make([]byte, 65536)
				for j, dg := range dgs {
					c.SetReadDeadline(time.Now().Add(2 * time.Second))
					n, from, err := c.ReadFromUDPAddrPort(buf)
					if err != nil {
						t.Fatalf("target %s: datagram %d of %d: %v", names[i], j, len(dgs), err)
					}
					if !bytes.Equal(buf[:n], dg.Payload) {
						t.Fatalf("target %s: datagram %d is %d bytes %.16q, want %d bytes %.16q", names[i], j, n, buf[:n], len(dg.Payload), dg.Payload)
					}
					spoofed := spoof && i == 0 && dg.Source.Addr().Is4()
					if spoofed && from != dg.Source {
						t.Errorf("target %s: datagram %d from %v, want the exporter's %v", names[i], j, from, dg.Source)
					}
					if !spoofed && from.Addr().Unmap() == dg.Source.Addr().Unmap() && from.Port() == dg.Source.Port() {
						t.Errorf("target %s: datagram %d from the exporter's address without Spoof", names[i], j)
					}
				}
			}
			for _, name := range names {
				want := fmt.Sprintf("spanflow_forward_datagrams_total{target=%q} %d", name, len(dgs))
				if got := gatherLine(t, r, "spanflow_forward_datagrams_total", name); got != want {
					t.Errorf("%s, want %s", got, want)
				}
			}
		})
	}
}

// gatherLine is the sample of metric name labelled target, as the
// exposition format writes it.
func gatherLine(t *testing.T, r *reporter.Reporter, name, target string) string {
	t.Helper()
	mfs, err := r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == target {
				return fmt.Sprintf("%s{target=%q} %.0f", name, target, m.GetCounter().GetValue())
			}
		}
	}
	return "none"
}
