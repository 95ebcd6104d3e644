package transport

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// receive reads n datagrams from c. A socket that asked for UDP GRO gets
// a run sent with UDP_SEGMENT as one message on loopback: it is cut at
// the segment size, and the messages that came so are counted.
func receive(t *testing.T, c *net.UDPConn, n int) (got [][]byte, coalesced int) {
	t.Helper()
	buf, oob := make([]byte, 65536), make([]byte, 64)
	for len(got) < n {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		l, oobn, _, _, err := c.ReadMsgUDP(buf, oob)
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", len(got), n, err)
		}
		seg := 0
		if oobn >= unix.CmsgLen(2) {
			h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
			if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO {
				seg = int(binary.NativeEndian.Uint32(oob[unix.CmsgLen(0):]))
			}
		}
		p := buf[:l]
		if seg == 0 || seg >= l {
			got = append(got, bytes.Clone(p))
			continue
		}
		for len(p) > 0 {
			d := p[:min(seg, len(p))]
			got, p = append(got, bytes.Clone(d)), p[len(d):]
			coalesced++
		}
	}
	return got, coalesced
}

// TestUDPSendRuns: a batch whose messages come in runs of one length (as
// full IPFIX messages of one template do), with shorter ones that end a
// run, longer ones between, and runs longer than the kernel's 64 segments,
// reaches IPv4 and IPv6 collectors datagram by datagram, byte for byte and
// in order, whether the collector's socket asked for UDP GRO or not; to
// one that did, on one host, the runs arrive coalesced, which shows they
// left as runs.
func TestUDPSendRuns(t *testing.T) {
	var msgs [][]byte
	var records []uint64
	add := func(n, size int) {
		for range n {
			m := make([]byte, size)
			copy(m, fmt.Sprintf("message %d of %d bytes", len(msgs), size))
			msgs, records = append(msgs, m), append(records, 1)
		}
	}
	add(70, 1400) // past 64 segments
	add(1, 900)   // ends the run
	add(3, 1400)
	add(1, 3000)
	add(5, 200)
	add(1, 1400)
	add(40, 1200)
	for _, network := range []string{"udp4", "udp6"} {
		t.Run(network, func(t *testing.T) {
			var conns []*net.UDPConn
			var gro []bool
			var collectors []string
			for _, ip := range []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback} {
				if network == "udp4" && ip.To4() == nil {
					continue
				}
				for _, withGRO := range []bool{false, true} {
					c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
					if err != nil {
						t.Skip(err)
					}
					defer c.Close()
					c.SetReadBuffer(4 << 20)
					if withGRO {
						rc, _ := c.SyscallConn()
						rc.Control(func(fd uintptr) {
							err = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1)
						})
						if err != nil {
							t.Skipf("UDP_GRO: %v", err)
						}
					}
					conns, gro = append(conns, c), append(gro, withGRO)
					collectors = append(collectors, c.LocalAddr().String())
				}
			}
			u, err := NewUDP(reporter.NewForTest(nil), Configuration{Collectors: collectors})
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			if failed, err := u.sendBatch(msgs, nil, records); failed != 0 || err != nil {
				t.Fatalf("%d failed: %v", failed, err)
			}
			for i, c := range conns {
				got, coalesced := receive(t, c, len(msgs))
				for j := range msgs {
					if !bytes.Equal(got[j], msgs[j]) {
						t.Fatalf("collector %s: datagram %d is %d bytes %.24q, want %d bytes %.24q",
							collectors[i], j, len(got[j]), got[j], len(msgs[j]), msgs[j])
					}
				}
				if gro[i] && coalesced == 0 {
					t.Errorf("collector %s asked for UDP GRO and got no run: the runs were not sent as runs", collectors[i])
				}
				if !gro[i] && coalesced != 0 {
					t.Errorf("collector %s did not ask for UDP GRO and got %d datagrams coalesced", collectors[i], coalesced)
				}
				if s := u.per[i]; s.Sent != uint64(len(msgs)) || s.Records != uint64(len(msgs)) || s.Errors != 0 {
					t.Errorf("collector %s: stats %+v, want %d sent", collectors[i], s, len(msgs))
				}
			}
		})
	}
}

// TestUDPSendRunsPastTheMTU: to a collector behind a link whose MTU is
// shorter than the messages, the kernel refuses their runs; the messages
// then go one by one (fragmented by the kernel, as without runs), all of
// them, in order, and later batches do not offer such runs again.
func TestUDPSendRunsPastTheMTU(t *testing.T) {
	testutil.Root(t)
	testutil.Command(t, "ip")
	id := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	snd, rcv := "sfgso-s-"+id, "sfgso-r-"+id
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{snd, rcv} {
		sh("ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	sh("ip", "-n", snd, "link", "add", "vS", "mtu", "1000", "type", "veth", "peer", "name", "vR", "netns", rcv)
	sh("ip", "-n", rcv, "link", "set", "vR", "mtu", "1000")
	sh("ip", "-n", snd, "addr", "add", "10.98.0.1/24", "dev", "vS")
	sh("ip", "-n", rcv, "addr", "add", "10.98.0.2/24", "dev", "vR")
	sh("ip", "-n", snd, "link", "set", "vS", "up")
	sh("ip", "-n", rcv, "link", "set", "vR", "up")

	var c *net.UDPConn
	var err error
	if !testutil.InNetns(t, rcv, func() { c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 98, 0, 2)}) }) {
		t.FailNow()
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadBuffer(4 << 20)
	var u *UDP
	if !testutil.InNetns(t, snd, func() {
		u, err = NewUDP(reporter.NewForTest(nil), Configuration{Collectors: []string{c.LocalAddr().String()}})
	}) {
		t.FailNow()
	}
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for batch := range 2 {
		var msgs [][]byte
		var records []uint64
		for k := range 30 {
			size := 1400
			if k >= 20 {
				size = 600 // runs below the MTU still go as runs
			}
			m := make([]byte, size)
			copy(m, fmt.Sprintf("batch %d message %d", batch, k))
			msgs, records = append(msgs, m), append(records, 1)
		}
		if failed, err := u.sendBatch(msgs, nil, records); failed != 0 || err != nil {
			t.Fatalf("batch %d: %d failed: %v", batch, failed, err)
		}
		got, _ := receive(t, c, len(msgs))
		for j := range msgs {
			if !bytes.Equal(got[j], msgs[j]) {
				t.Fatalf("batch %d: datagram %d is %d bytes %.24q, want %d bytes %.24q", batch, j, len(got[j]), got[j], len(msgs[j]), msgs[j])
			}
		}
	}
	if m := u.batch.runs[0].MaxLen(); m >= 1400 || m < 600 {
		t.Errorf("runs offered up to %d bytes after the refusal; want below 1400 and at least 600", m)
	}
}
