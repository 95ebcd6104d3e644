package forward

import (
	"net"

	"github.com/spanflow/spanflow/internal/batchio"
)

// batchSender sends datagrams on a target's connected socket, in order,
// skipping each one the kernel refuses (refused is called with the
// error); it returns how many were sent.
type batchSender func(msgs [][]byte, refused func(err error)) (sent int)

// newBatchSender sends with sendmmsg, runs of equal lengths as one UDP GSO
// send (batchio.Runs).
func newBatchSender(conn *net.UDPConn) (batchSender, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	runs := batchio.NewRuns()
	return func(msgs [][]byte, refused func(err error)) int {
		return runs.SendAll(rc, nil, 0, msgs, func(_ int, err error) { refused(err) })
	}, nil
}
