//go:build linux && cgo

package main

import "github.com/spanflow/spanflow/exporter/capture"

// openLive opens each interface; several are read in a goroutine each and
// merged into the pipeline.
func openLive(cfgs []capture.LiveConfiguration) (capture.Source, error) {
	var srcs []capture.LiveSource
	for _, cfg := range cfgs {
		l, err := capture.OpenLive(cfg, 0)
		if err != nil {
			for _, s := range srcs {
				s.Close()
			}
			return nil, err
		}
		srcs = append(srcs, l)
	}
	if len(srcs) == 1 {
		return srcs[0], nil
	}
	return capture.Merge(srcs...), nil
}
