package verify

import (
	"net"
	"testing"
	"time"
)

// TestUDPReceiveQueue: the queue of a socket is found by its port, counts
// what waits unread, and is empty once read.
func TestUDPReceiveQueue(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := c.LocalAddr().(*net.UDPAddr).Port
	if q, err := udpReceiveQueue(port); err != nil || q != 0 {
		t.Fatalf("fresh socket: queue %d, error %v", q, err)
	}
	s, err := net.DialUDP("udp4", nil, c.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range 3 {
		s.Write(make([]byte, 100))
	}
	if q, err := udpReceiveQueue(port); err != nil || q < 300 {
		t.Fatalf("3 datagrams of 100 bytes unread: queue %d, error %v", q, err)
	}
	buf := make([]byte, 200)
	c.SetReadDeadline(time.Now().Add(time.Second))
	for range 3 {
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if q, err := udpReceiveQueue(port); err != nil || q != 0 {
		t.Fatalf("all read: queue %d, error %v", q, err)
	}
	if _, err := udpReceiveQueue(1); err == nil {
		t.Errorf("port 1 (no socket): no error")
	}
}
