//go:build linux && cgo

package capture_test

import (
	"bytes"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spanflow/spanflow/exporter/capture"
	"github.com/spanflow/spanflow/exporter/synth"
)

// openTun creates a tun interface (frames are bare IP packets) in the
// namespace; what is written to the returned file arrives on it.
func openTun(t *testing.T, n *netns, name string) *os.File {
	t.Helper()
	var f *os.File
	n.do(t, func() {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Skipf("no tun devices here: %v", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			t.Fatal(err)
		}
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			t.Skipf("cannot create a tun interface: %v", err)
		}
		f = os.NewFile(uintptr(fd), "tun")
	})
	t.Cleanup(func() { f.Close() })
	run(t, "ip", "-n", n.name, "link", "set", name, "up")
	return f
}

// TestLiveRawIP: on an interface without an Ethernet header (tun, and so
// WireGuard and IP tunnels), frames are handed on as raw IP, and a filter
// is compiled for raw IP, not Ethernet (where "udp" would match nothing).
func TestLiveRawIP(t *testing.T) {
	n := newNetns(t)
	tun := openTun(t, n, "tn0")
	udp4 := synth.IPv4(netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.2"), 17, 0, 1, 0, false, synth.UDP(5353, 53, []byte("query")))
	tcp4 := synth.IPv4(netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.2"), 6, 0, 2, 0, false, synth.TCP(40000, 443, 1, 0, 0x02, 64240, 0))
	udp6 := synth.IPv6(netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2"), 17, 0, synth.UDP(5353, 53, []byte("query6")))
	sent := [][]byte{udp4, tcp4, udp6}

	filter := ""
	if _, err := capture.CompileFilter("udp"); err == nil {
		filter = "udp"
	} else {
		t.Logf("no filter compiler (%v): the filter part is skipped", err)
	}
	var all, udpOnly *capture.Live
	var err error
	n.do(t, func() {
		all, err = capture.OpenLive(capture.LiveConfiguration{Interface: "tn0", RingSize: 8 << 20}, 0)
		if err == nil && filter != "" {
			udpOnly, err = capture.OpenLive(capture.LiveConfiguration{Interface: "tn0", RingSize: 8 << 20, Filter: filter}, 0)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	if udpOnly != nil {
		defer udpOnly.Close()
	}
	for _, p := range sent {
		if _, err := tun.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	read := func(l *capture.Live, want int) [][]byte {
		var got [][]byte
		var f capture.Frame
		for end := time.Now().Add(10 * time.Second); len(got) < want && time.Now().Before(end); {
			switch err := l.Next(&f); err {
			case nil:
				if f.LinkType != 101 {
					t.Errorf("frame of link type %d, want 101 (raw IP)", f.LinkType)
				}
				got = append(got, bytes.Clone(f.Data))
			case capture.ErrIdle:
			default:
				t.Fatal(err)
			}
		}
		return got
	}
	got := read(all, len(sent))
	if len(got) != len(sent) {
		t.Fatalf("read %d frames, wrote %d", len(got), len(sent))
	}
	for i := range sent {
		if !bytes.Equal(got[i], sent[i]) {
			t.Errorf("frame %d:\n got % x\nwant % x", i, got[i], sent[i])
		}
	}
	if udpOnly == nil {
		return
	}
	got = read(udpOnly, 2)
	if len(got) != 2 || !bytes.Equal(got[0], udp4) || !bytes.Equal(got[1], udp6) {
		t.Errorf("with filter %q: %d frames (% x...), want the two UDP packets", filter, len(got), got)
	}
	// The filter let nothing else through.
	var f capture.Frame
	if err := udpOnly.Next(&f); err != capture.ErrIdle {
		t.Errorf("with filter %q: a third frame (%v): % x", filter, err, f.Data)
	}
}
