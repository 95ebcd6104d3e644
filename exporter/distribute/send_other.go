//go:build !linux

package distribute

import (
	"errors"
	"io"
	"net/netip"
)

func openInterface(name string) (batchWriter, func() error, error) {
	return nil, nil, errors.New("iface: destinations need Linux (AF_PACKET)")
}

func udpWriter(c io.Writer) batchWriter { return connWriter(c) }

// connWriter sends one packet at a time (sendmmsg is Linux's).
func connWriter(c io.Writer) batchWriter {
	return func(pkts [][]byte, refused []bool) (failed int, last error) {
		for i, p := range pkts {
			if _, err := c.Write(p); err != nil {
				refused[i] = true
				failed++
				last = err
			}
		}
		return failed, last
	}
}

// greWriter sends through the raw socket (the ring is Linux's).
func greWriter(dst netip.Addr, raw batchWriter, closeRaw func() error) (batchWriter, func() error) {
	return raw, closeRaw
}
