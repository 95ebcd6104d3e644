package exporter

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spanflow/spanflow/exporter/capture"
	"github.com/spanflow/spanflow/exporter/distribute"
	"github.com/spanflow/spanflow/exporter/ipfix"
	"github.com/spanflow/spanflow/exporter/ring"
	"github.com/spanflow/spanflow/internal/reporter"
)

// Fanout runs one pipeline per capture worker (--fanout N): each worker's
// source (a PACKET_FANOUT share of the interfaces, or the one capture file)
// goes through an Exporter of its own, on its own goroutine.
type Fanout struct {
	workers []*Exporter
	sources []capture.Source
	ring    *ring.Ring // shared by the workers, each through an appender
}

// NewFanout builds one Exporter per source. Worker n exports with
// observation domain cfg.ObservationDomain+n (its own IPFIX sequence
// numbers); with several workers each has a registry of its own, and r's
// registry shows their sum. out is passed to New: when nil, every worker
// opens the configured collectors. The sources stay the caller's to close.
func NewFanout(r *reporter.Reporter, cfg Configuration, srcs []capture.Source, out ipfix.Transport) (*Fanout, error) {
	f := &Fanout{sources: srcs}
	rcfg, on, err := cfg.Ring()
	if err != nil {
		return nil, err
	}
	var filter string
	if on {
		if f.ring, err = ring.Open(r, rcfg); err != nil {
			return nil, err
		}
		filter = cfg.PacketRingFilter
	}
	var regs sumRegistries
	for w := range srcs {
		wr, wcfg := r, cfg
		wcfg.ObservationDomain += uint32(w)
		if len(srcs) > 1 {
			wr = r.With(prometheus.NewRegistry(), "worker", w)
			regs = append(regs, wr.Registry)
		}
		x, err := New(wr, wcfg, out)
		if err == nil && f.ring != nil {
			x.ring = f.ring.NewAppender()
			// A capture file can wait for the disk; a live capture cannot.
			x.ring.Wait = len(cfg.Interfaces) == 0
			x.ringHeadersOnly = cfg.PacketRingHeadersOnly
			if filter != "" {
				if x.ringFilter, err = ring.NewFilter(filter); err != nil {
					err = fmt.Errorf("packet-ring-filter: %w", err)
				}
			}
		}
		if err != nil {
			for _, x := range f.workers {
				x.close()
			}
			if x != nil {
				x.close()
			}
			if f.ring != nil {
				f.ring.Close()
			}
			return nil, err
		}
		f.workers = append(f.workers, x)
	}
	if len(regs) > 0 {
		r.Registry.MustRegister(regs)
	}
	return f, nil
}

// Frames is the number of frames the workers have read so far.
func (f *Fanout) Frames() uint64 {
	var n uint64
	for _, x := range f.workers {
		n += x.Frames()
	}
	return n
}

// Run runs each worker on its source and adds up their summaries. When one
// fails, the others are stopped too (each exports its flows): a
// half-working exporter would look healthy while missing traffic, and the
// service manager restarts the whole one.
func (f *Fanout) Run(ctx context.Context) (Summary, error) {
	type result struct {
		sum Summary
		err error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make([]result, len(f.workers))
	var wg sync.WaitGroup
	for i, x := range f.workers {
		wg.Go(func() {
			results[i].sum, results[i].err = x.Run(ctx, f.sources[i])
			if results[i].err != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	var total Summary
	var errs []error
	seen := map[string]bool{}
	for _, r := range results {
		total = total.Add(r.sum)
		// Workers reading the same interface fail alike: say it once.
		if r.err != nil && !seen[r.err.Error()] {
			seen[r.err.Error()] = true
			errs = append(errs, r.err)
		}
	}
	if f.ring != nil {
		f.ring.Close() // after every worker flushed its appender
		st := f.ring.Stats()
		total.Ring = &st
	}
	return total, errors.Join(errs...)
}

// Reload replaces every worker's distribution rules. Each worker builds
// them (and opens their destinations) before it uses them: a worker that
// cannot keeps its rules in force, and the error says why.
func (f *Fanout) Reload(rules []distribute.Rule) error {
	if err := distribute.ValidateRules(rules); err != nil {
		return err
	}
	var errs []error
	for w, x := range f.workers {
		if err := x.Reload(rules); err != nil {
			errs = append(errs, fmt.Errorf("worker %d: %w", w, err))
		}
	}
	return errors.Join(errs...)
}
