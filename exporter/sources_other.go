//go:build !linux

package exporter

import (
	"errors"

	"github.com/spanflow/spanflow/exporter/capture"
)

func openLive(cfgs []capture.LiveConfiguration, workers int) ([]capture.Source, error) {
	return nil, errors.New("live capture needs Linux")
}
