package distribute

import (
	"syscall"

	"github.com/spanflow/spanflow/internal/batchio"
)

// newGSOWriter sends batches on a connected UDP socket (VXLAN) with UDP
// segmentation offload (batchio.Runs): a run of consecutive datagrams of
// one length (the run's last may be shorter) goes as one message with
// UDP_SEGMENT, so the kernel builds one socket buffer and walks its UDP
// and IP send path once for the run; the device (or, on loopback, the
// receiving socket) splits it into the same datagrams, in the same order.
// The messages of a batch, runs and single datagrams, still go with one
// sendmmsg. When the kernel refuses a run (no checksum offload on the
// route, a datagram longer than the path MTU, an old kernel), its
// datagrams are sent one by one, and runs of that length or longer are
// not offered again: single datagrams longer than the MTU are fragmented
// by the kernel, as before. A datagram the kernel refuses is skipped and
// counted.
func newGSOWriter(c syscall.Conn) batchWriter {
	rc, err := c.SyscallConn()
	if err != nil {
		return func(pkts [][]byte, refused []bool) (int, error) { return refuseAll(refused), err }
	}
	runs := batchio.NewRuns()
	return func(pkts [][]byte, refused []bool) (failed int, last error) {
		runs.SendAll(rc, nil, 0, pkts, func(i int, err error) {
			refused[i] = true
			failed++
			last = err
		})
		return failed, last
	}
}
