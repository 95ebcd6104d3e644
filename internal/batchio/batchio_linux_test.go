package batchio

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRuns: runs of equal datagrams go as one message each and arrive
// as the datagrams they were, in order; when the kernel refuses the
// segmentation (here SO_NO_CHECK, with which it never segments UDP), the
// same datagrams arrive one by one, none lost, and runs of that length are
// not offered again.
func TestRuns(t *testing.T) {
	var pkts [][]byte
	add := func(n, size int) {
		for range n {
			p := bytes.Repeat([]byte{byte(len(pkts))}, size)
			p[0] = byte(len(pkts) >> 8)
			pkts = append(pkts, p)
		}
	}
	add(10, 100)
	add(1, 50) // ends the first run
	add(5, 200)
	add(1, 300)  // a run of one, and a shorter one to end it
	add(70, 120) // more than one run can hold
	add(2, 1400)
	for _, tc := range []struct {
		name    string
		noCheck bool
	}{{"accepted", false}, {"refused", true}} {
		t.Run(tc.name, func(t *testing.T) {
			rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer rx.Close()
			rx.SetReadBuffer(1 << 20)
			c, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tc.noCheck {
				rc, _ := c.SyscallConn()
				rc.Control(func(fd uintptr) {
					if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, 1); err != nil {
						t.Fatal(err)
					}
				})
			}
			rc, _ := c.SyscallConn()
			w := NewRuns()
			w.build(nil, 0, pkts)
			if fmt.Sprint(w.count) != "[11 5 2 64 5 2]" {
				t.Errorf("datagrams per message %v, want [11 5 2 64 5 2]", w.count)
			}
			for j := 0; j < len(pkts); {
				n, err := w.Send(rc, nil, 0, pkts[j:])
				if err != nil {
					t.Fatalf("datagram %d refused: %v", j+n, err)
				}
				j += n
			}
			buf := make([]byte, 65536)
			for i, want := range pkts {
				rx.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, err := rx.Read(buf)
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				if !bytes.Equal(buf[:n], want) {
					t.Fatalf("datagram %d: %d bytes %x..., want %d bytes %x...", i, n, buf[:min(n, 4)], len(want), want[:4])
				}
			}
			if tc.noCheck && w.maxLen >= 100 {
				t.Errorf("runs of %d bytes still offered after the kernel refused them", w.maxLen)
			}
			if !tc.noCheck && w.maxLen != gsoMaxBytes/2 {
				t.Errorf("GSO narrowed to %d bytes though the kernel took the runs", w.maxLen)
			}
		})
	}
}

// TestSendAllSkipsRefused: a message the kernel refuses (here longer than
// a UDP datagram holds) in the middle of runs is reported with its index,
// and every other message arrives, in order.
func TestSendAllSkipsRefused(t *testing.T) {
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	c, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var msgs [][]byte
	for i := range 9 {
		size := 300
		if i == 4 {
			size = 70000
		}
		m := bytes.Repeat([]byte{byte(i)}, size)
		msgs = append(msgs, m)
	}
	rc, _ := c.SyscallConn()
	var refused []int
	sent := NewRuns().SendAll(rc, nil, 0, msgs, func(i int, err error) { refused = append(refused, i) })
	if sent != 8 || fmt.Sprint(refused) != "[4]" {
		t.Fatalf("sent %d, refused %v; want 8 sent and message 4 refused", sent, refused)
	}
	buf := make([]byte, 65536)
	for i, want := range msgs {
		if i == 4 {
			continue
		}
		rx.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := rx.Read(buf)
		if err != nil || !bytes.Equal(buf[:n], want) {
			t.Fatalf("message %d: %d bytes, %v; want %d bytes of %d", i, n, err, len(want), i)
		}
	}
}
