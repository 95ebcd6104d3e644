//go:build linux && cgo

package main

import "github.com/spanflow/spanflow/exporter/capture"

func openLive(cfg capture.LiveConfiguration) (capture.Source, error) { return capture.OpenLive(cfg, 0) }
