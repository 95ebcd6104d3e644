package listen_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
	"unsafe"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/spanflow/spanflow/collector/listen"
	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// maxBatch is a recording that also keeps the largest batch it was handed.
type maxBatch struct {
	recording
	largest int
}

func (h *maxBatch) HandleBatch(dgs []decoders.Datagram) {
	h.mu.Lock()
	h.largest = max(h.largest, len(dgs))
	h.mu.Unlock()
	h.recording.HandleBatch(dgs)
}

// sendSegmented sends payload as datagrams of seg bytes (the last one
// shorter) in one message with UDP_SEGMENT: the kernel keeps them one
// buffer up to a socket that asked for UDP GRO, as it does with the
// datagrams an interface's GRO coalesced.
func sendSegmented(t *testing.T, conn *net.UDPConn, payload []byte, seg int) {
	t.Helper()
	oob := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(seg))
	n, oobn, err := conn.WriteMsgUDP(payload, oob, nil)
	if err != nil {
		t.Skipf("UDP_SEGMENT refused by this kernel: %v", err)
	}
	if n != len(payload) || oobn != len(oob) {
		t.Fatalf("sent %d of %d bytes, %d of %d control bytes", n, len(payload), oobn, len(oob))
	}
}

// TestUDPCoalesced: datagrams the kernel hands up coalesced (UDP GRO: here
// from a sender's UDP_SEGMENT on loopback, the same buffer an interface's
// GRO builds; IPv4, IPv6, and IPv4 to a dual-stack socket) reach the
// handler one by one, from the sender's address, byte for byte and in order,
// the last shorter one included, mixed with datagrams that came alone; at
// most 32 at a time however many came in one read; and the coalesced ones
// are counted.
func TestUDPCoalesced(t *testing.T) {
	for _, c := range addrCases {
		t.Run(c.listen+"<-"+c.from, func(t *testing.T) {
			h := &maxBatch{}
			r := reporter.NewForTest(nil)
			conn := c.start(t, h, r)

			rng := rand.New(rand.NewPCG(1, 2))
			var sent [][]byte
			coalesced := 0
			for i := range 60 {
				if i%4 == 3 { // one alone
					p := fmt.Appendf(nil, "alone %d", i)
					if _, err := conn.Write(p); err != nil {
						t.Fatal(err)
					}
					sent = append(sent, p)
					continue
				}
				seg := 20 + rng.IntN(1400)
				count := 2 + rng.IntN(63) // the kernel's limit is 64 segments
				last := 1 + rng.IntN(seg) // the last one may be shorter
				if seg*(count-1)+last > 65000 {
					count = 65000 / seg
				}
				var payload []byte
				for k := range count {
					l := seg
					if k == count-1 {
						l = last
					}
					d := make([]byte, l)
					for j := range d {
						d[j] = byte(i + k + j)
					}
					copy(d, fmt.Sprintf("%d/%d", i, k))
					payload = append(payload, d...)
					sent = append(sent, d)
				}
				sendSegmented(t, conn, payload, seg)
				coalesced += count
			}
			got := h.wait(t, len(sent))
			if len(got) != len(sent) {
				t.Fatalf("received %d datagrams, want %d", len(got), len(sent))
			}
			from := netip.AddrPortFrom(netip.MustParseAddr(c.want), netip.MustParseAddrPort(conn.LocalAddr().String()).Port())
			for i, dg := range got {
				if dg.Source != from {
					t.Fatalf("datagram %d from %v, want %v", i, dg.Source, from)
				}
				if !bytes.Equal(dg.Payload, sent[i]) {
					t.Fatalf("datagram %d: %d bytes %.12q, want %d bytes %.12q", i, len(dg.Payload), dg.Payload, len(sent[i]), sent[i])
				}
			}
			if h.largest > 32 {
				t.Errorf("a batch of %d datagrams handed on; at most 32", h.largest)
			}
			want := fmt.Sprintf(`
# HELP spanflow_listen_udp_coalesced_datagrams_total UDP datagrams that the kernel handed up coalesced with others of their exporter (UDP GRO), and that were cut apart again.
# TYPE spanflow_listen_udp_coalesced_datagrams_total counter
spanflow_listen_udp_coalesced_datagrams_total %d
# HELP spanflow_listen_udp_truncated_total UDP messages longer than the read buffer (a coalescing limit raised past 64 KiB); their last, partial datagram was dropped.
# TYPE spanflow_listen_udp_truncated_total counter
spanflow_listen_udp_truncated_total 0
`, coalesced)
			if err := promtest.GatherAndCompare(r.Registry, strings.NewReader(want),
				"spanflow_listen_udp_coalesced_datagrams_total", "spanflow_listen_udp_truncated_total"); err != nil {
				t.Error(err)
			}
		})
	}
}

func sh(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// TestUDPCoalescedByInterface: an exporter's datagrams arriving on an
// interface whose GRO coalesces them (a veth with GRO on and its receive
// poll in a thread of its own, as a NIC's interrupt batches them) reach
// the handler each whole, once and in order, and some came coalesced.
func TestUDPCoalescedByInterface(t *testing.T) {
	testutil.Root(t)
	testutil.Command(t, "ip")
	testutil.Command(t, "ethtool")
	id := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	snd, rcv := "sfgro-s-"+id, "sfgro-r-"+id
	for _, ns := range []string{snd, rcv} {
		sh(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	sh(t, "ip", "-n", snd, "link", "add", "vS", "type", "veth", "peer", "name", "vR", "netns", rcv)
	sh(t, "ip", "-n", snd, "addr", "add", "10.99.0.1/24", "dev", "vS")
	sh(t, "ip", "-n", rcv, "addr", "add", "10.99.0.2/24", "dev", "vR")
	sh(t, "ip", "-n", snd, "link", "set", "vS", "up")
	sh(t, "ip", "-n", rcv, "link", "set", "vR", "up")
	// A veth hands a locally sent datagram to GRO only when its peer
	// forwards UDP GRO; the threaded poll lets datagrams gather between
	// polls, as a NIC's interrupt moderation does.
	sh(t, "ip", "netns", "exec", rcv, "ethtool", "-K", "vR", "gro", "on", "rx-udp-gro-forwarding", "on")
	sh(t, "ip", "netns", "exec", rcv, "sh", "-c", "echo 1 > /sys/class/net/vR/threaded")

	h := &maxBatch{}
	r := reporter.NewForTest(nil)
	cfg := listen.DefaultConfiguration()
	cfg.UDP, cfg.TCP, cfg.Sockets = []string{"10.99.0.2:0"}, nil, 2
	l, err := listen.New(r, cfg, listen.Dependencies{NewHandler: func() listen.Handler { return h }})
	if err != nil {
		t.Fatal(err)
	}
	var startErr error
	if !testutil.InNetns(t, rcv, func() { startErr = l.Start() }) {
		t.FailNow()
	}
	if startErr != nil {
		t.Fatal(startErr)
	}
	defer l.Stop()
	var conn *net.UDPConn
	if !testutil.InNetns(t, snd, func() { conn, err = net.DialUDP("udp", nil, l.Addrs()[0].(*net.UDPAddr)) }) {
		t.FailNow()
	}
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// Bursts of 48 equal datagrams (the veth's queue holds 256), each
	// burst its own length, until some came coalesced.
	var sent [][]byte
	coalesced := func() float64 {
		return listenMetric(t, r, "udp_coalesced_datagrams_total", "")
	}
	deadline := time.Now().Add(10 * time.Second)
	for burst := 0; burst < 100 || coalesced() == 0 && time.Now().Before(deadline); burst++ {
		size := 40 + burst%200*7
		for k := range 48 {
			p := make([]byte, size)
			copy(p, fmt.Sprintf("burst %d datagram %d", burst, k))
			if _, err := conn.Write(p); err != nil {
				t.Fatal(err)
			}
			sent = append(sent, p)
		}
		time.Sleep(2 * time.Millisecond)
	}
	got := h.wait(t, len(sent))
	if len(got) != len(sent) {
		t.Fatalf("received %d datagrams, want %d (veth drops: the test's bursts overflowed its queue?)", len(got), len(sent))
	}
	for i, dg := range got {
		if !bytes.Equal(dg.Payload, sent[i]) {
			t.Fatalf("datagram %d: %d bytes %.24q, want %d bytes %.24q", i, len(dg.Payload), dg.Payload, len(sent[i]), sent[i])
		}
	}
	n := coalesced()
	if n == 0 {
		t.Fatalf("none of %d datagrams came coalesced: the interface's GRO did not reach the socket", len(sent))
	}
	t.Logf("%d datagrams, %.0f came coalesced", len(sent), n)
}
