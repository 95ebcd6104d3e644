//go:build !linux

package transport

// udpBatch: without sendmmsg, each datagram is sent on its own.
type udpBatch struct{}

func (u *UDP) initBatch(v6 bool) error { return nil }

// write sends msgs[0] to collector i: it returns 1, or 0 and the error.
func (u *UDP) write(i int, msgs [][]byte) (int, error) {
	if _, err := u.conn.WriteToUDP(msgs[0], u.dests[i]); err != nil {
		return 0, err
	}
	return 1, nil
}
