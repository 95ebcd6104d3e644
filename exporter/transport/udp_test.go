package transport

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/reporter"
)

// TestUDP: every collector gets every message, and a collector with nothing
// listening costs nothing to the others.
func TestUDP(t *testing.T) {
	var conns []*net.UDPConn
	cfg := Configuration{}
	for i := 0; i < 2; i++ {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
		cfg.Collectors = append(cfg.Collectors, c.LocalAddr().String())
	}
	dead, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	cfg.Collectors = append(cfg.Collectors, dead.LocalAddr().String())
	dead.Close()
	u, err := NewUDP(reporter.NewForTest(nil), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for _, m := range [][]byte{[]byte("one"), []byte("two")} {
		if err := u.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range conns {
		buf := make([]byte, 100)
		for _, want := range []string{"one", "two"} {
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, _, err := c.ReadFromUDP(buf)
			if err != nil || !bytes.Equal(buf[:n], []byte(want)) {
				t.Errorf("collector %d: got %q, %v; want %q", i, buf[:n], err, want)
			}
		}
	}
	if s := u.Stats(); s.Sent != 6 || s.Errors != 0 {
		t.Errorf("stats %+v, want 6 sent", s)
	}
}

func TestConfiguration(t *testing.T) {
	for _, bad := range []string{"", "host", "host:", ":4739", "host:0", "host:65536", "host:port", "http://host:4739", "tcp://host", "tls://:4739", "host:4739?compat=nfdump", "host:4739?tcp-flags=1", "tcp://host:4739?"} {
		if err := (Configuration{Collectors: []string{bad}}).Validate(); err == nil {
			t.Errorf("collector %q accepted", bad)
		}
	}
	if err := (Configuration{Collectors: []string{"[2001:db8::1]:4739", "collector.example:2055", "tcp://10.0.0.1:4739", "tls://collector.example:4740", "udp://[2001:db8::1]:4739", "10.0.0.1:2100?compat=pmacct", "tcp://[2001:db8::1]:4739?compat=pmacct"}}).Validate(); err != nil {
		t.Error(err)
	}
}

// TestUDPSendErrorDrops: a datagram the kernel refuses counts its records
// as dropped for that collector.
func TestUDPSendErrorDrops(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	u, err := NewUDP(reporter.NewForTest(nil), Configuration{Collectors: []string{c.LocalAddr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.send(make([]byte, 100), nil, 3)
	if err := u.send(make([]byte, 70000), nil, 7); err == nil { // more than a UDP datagram holds
		t.Error("no error sending 70000 bytes")
	}
	if s := u.per[0]; s.Sent != 1 || s.Records != 3 || s.Errors != 1 || s.DroppedRecords != 7 {
		t.Errorf("stats %+v, want 3 records sent and 7 dropped", s)
	}
}

// TestUDPSendBatch: a batch reaches every collector in order, IPv4 ones
// through an IPv6 socket too; a message the kernel refuses in the middle
// of a batch is counted for each collector and the rest still leave.
func TestUDPSendBatch(t *testing.T) {
	for _, network := range []string{"udp4", "udp6"} {
		t.Run(network, func(t *testing.T) {
			var conns []*net.UDPConn
			var collectors []string
			for _, ip := range []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback} {
				if network == "udp4" && ip.To4() == nil {
					continue
				}
				c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
				if err != nil {
					t.Skip(err)
				}
				defer c.Close()
				conns = append(conns, c)
				collectors = append(collectors, c.LocalAddr().String())
			}
			u, err := NewUDP(reporter.NewForTest(nil), Configuration{Collectors: collectors})
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			msgs := [][]byte{[]byte("one"), []byte("two"), make([]byte, 70000), []byte("four")}
			failed, err := u.sendBatch(msgs, nil, []uint64{1, 2, 3, 4})
			if failed != 1 || err == nil {
				t.Errorf("%d failed, %v; want the third message failed", failed, err)
			}
			for i, c := range conns {
				buf := make([]byte, 100)
				for _, want := range []string{"one", "two", "four"} {
					c.SetReadDeadline(time.Now().Add(2 * time.Second))
					n, _, err := c.ReadFromUDP(buf)
					if err != nil || !bytes.Equal(buf[:n], []byte(want)) {
						t.Errorf("collector %d: got %q, %v; want %q", i, buf[:n], err, want)
					}
				}
				if s := u.per[i]; s.Sent != 3 || s.Records != 7 || s.Errors != 1 || s.DroppedRecords != 3 {
					t.Errorf("collector %d: stats %+v, want 3 sent with 7 records, 1 failed with 3", i, s)
				}
			}
		})
	}
}
