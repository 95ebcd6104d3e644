//go:build !linux

package forward

import "net"

// batchSender sends datagrams on a target's connected socket: it returns
// how many the kernel took, and the error of the first it did not take
// (when it took none).
type batchSender func(msgs [][]byte) (int, error)

// newBatchSender sends one datagram per system call where sendmmsg is
// missing.
func newBatchSender(conn *net.UDPConn) (batchSender, error) {
	return func(msgs [][]byte) (int, error) {
		if _, err := conn.Write(msgs[0]); err != nil {
			return 0, err
		}
		return 1, nil
	}, nil
}
