package exporter

import "github.com/spanflow/spanflow/exporter/capture"

// OpenSources opens the frame sources the configuration names: the capture
// file, or a live AF_PACKET capture of every interface per fanout worker.
func OpenSources(cfg Configuration) ([]capture.Source, error) {
	if len(cfg.Interfaces) > 0 {
		lives, err := cfg.Live()
		if err != nil {
			return nil, err
		}
		return openLive(lives, cfg.Fanout)
	}
	f, err := capture.OpenFile(cfg.Pcap)
	if err != nil {
		return nil, err
	}
	return []capture.Source{f}, nil
}
