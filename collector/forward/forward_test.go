package forward

import (
	"bytes"
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
