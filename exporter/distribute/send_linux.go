package distribute

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// ifaceSender writes frames as they are on a local interface (a veth to a
// tool's VM or container, a NIC to a packet tool) through an AF_PACKET
// socket.
type ifaceSender struct {
	fd int
}

func openInterface(name string) (sender, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("open interface %s: %w", name, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0) // protocol 0: send only
	if err != nil {
		return nil, fmt.Errorf("open interface %s (AF_PACKET: needs CAP_NET_RAW): %w", name, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind to interface %s: %w", name, err)
	}
	return &ifaceSender{fd: fd}, nil
}

func (s *ifaceSender) send(buf []byte, _ int64) error {
	_, err := unix.Write(s.fd, buf[headroom:])
	return err
}

func (s *ifaceSender) Close() error { return unix.Close(s.fd) }
