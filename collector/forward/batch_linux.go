package forward

import (
	"net"

	"github.com/spanflow/spanflow/internal/batchio"
)

// batchSender sends datagrams on a target's connected socket: it returns
// how many the kernel took, and the error of the first it did not take
// (when it took none).
type batchSender func(msgs [][]byte) (int, error)

// newBatchSender sends with sendmmsg, runs of equal lengths as one UDP GSO
// send (batchio.Runs).
func newBatchSender(conn *net.UDPConn) (batchSender, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	runs := batchio.NewRuns()
	return func(msgs [][]byte) (int, error) { return runs.Send(rc, nil, 0, msgs) }, nil
}
