//go:build linux

package exporter

import (
	"os"

	"github.com/spanflow/spanflow/exporter/capture"
)

// openLive opens each interface once per worker; with several workers the
// sockets of one interface form a PACKET_FANOUT hash group (both directions
// of a connection hash alike, so each worker sees whole connections).
// A worker's interfaces are read in a goroutine each and merged.
func openLive(cfgs []capture.LiveConfiguration, workers int) ([]capture.Source, error) {
	var out []capture.Source
	closeAll := func() {
		for _, s := range out {
			s.Close()
		}
	}
	for w := 0; w < workers; w++ {
		var srcs []capture.LiveSource
		for i, cfg := range cfgs {
			var group uint16
			if workers > 1 {
				group = uint16(os.Getpid()&0xfff)<<4 | uint16(i&0xf) | 1
			}
			l, err := capture.OpenLive(cfg, group)
			if err != nil {
				for _, s := range srcs {
					s.Close()
				}
				closeAll()
				return nil, err
			}
			srcs = append(srcs, l)
		}
		if len(srcs) == 1 {
			out = append(out, srcs[0])
		} else {
			out = append(out, capture.Merge(srcs...))
		}
	}
	return out, nil
}
