//go:build !linux

package forward

import "net"

// batchSender sends datagrams on a target's connected socket, in order,
// skipping each one the kernel refuses (refused is called with the
// error); it returns how many were sent.
type batchSender func(msgs [][]byte, refused func(err error)) (sent int)

// newBatchSender sends one datagram per system call where sendmmsg is
// missing.
func newBatchSender(conn *net.UDPConn) (batchSender, error) {
	return func(msgs [][]byte, refused func(err error)) (sent int) {
		for _, m := range msgs {
			if _, err := conn.Write(m); err != nil {
				refused(err)
				continue
			}
			sent++
		}
		return sent
	}, nil
}
