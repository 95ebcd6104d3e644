// Package pipeline is the collector's data path after the listeners: it
// checks the exporter against the allowed networks, hands the datagram to
// the taps (forwarding), decodes it into flow records, applies the
// enrichers in order and writes the records to every output.
//
//	listen ─▶ pipeline: allow ─▶ taps ─▶ decode ─▶ enrich ─▶ outputs (flow.Sink)
package pipeline

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/decoders/reason"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/lifecycle"
	"github.com/spanflow/spanflow/internal/reporter"
)

// Tap sees every allowed datagram before it is decoded, unchanged (the
// forwarder is one). It must not keep the payload after Tap returns.
type Tap interface {
	Tap(dg decoders.Datagram)
}

// BatchTap is a Tap that also takes the allowed datagrams of a batch at
// once (the forwarder sends them with one system call).
type BatchTap interface {
	Tap
	TapBatch(dgs []decoders.Datagram)
}

// Output is a named sink, for the output error metric.
type Output struct {
	Name string
	Sink flow.Sink
}

// Dependencies are what the pipeline hands records to.
type Dependencies struct {
	Enrichers []flow.Enricher // applied in order, between decoding and the outputs
	Outputs   []Output
	Taps      []Tap
}

// Pipeline decodes, enriches and writes. It is safe for concurrent use
// through Workers, one per goroutine.
type Pipeline struct {
	r       *reporter.Reporter
	cfg     Configuration
	deps    Dependencies
	decoder *decoders.Decoder
	m       *metrics
	log     *reporter.Limited
	tracker lifecycle.Tracker
	stats   *exporterStats // nil when disabled
	// batchTaps: there are taps and every one takes batches.
	batchTaps bool
}

// New returns a pipeline.
func New(r *reporter.Reporter, cfg Configuration, deps Dependencies) (*Pipeline, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("pipeline configuration: %w", err)
	}
	dec, err := decoders.New(cfg.Decoder)
	if err != nil {
		return nil, err
	}
	p := &Pipeline{r: r, cfg: cfg, deps: deps, decoder: dec, m: newMetrics(r, cfg.MaxExporterSeries),
		log: reporter.NewLimited(r.Log, 10*time.Second)}
	if cfg.ExporterStatsInterval > 0 {
		p.stats = newExporterStats(time.Now())
	}
	p.batchTaps = len(deps.Taps) > 0
	for _, t := range deps.Taps {
		if _, ok := t.(BatchTap); !ok {
			p.batchTaps = false
		}
	}
	f := r.Factory("collector")
	f.GaugeFunc("exporters", "Exporters the decoder keeps state for.", func() float64 { return float64(dec.Exporters()) })
	f.CounterFunc("exporters_expired_total", "Exporters forgotten (state and metrics) after sending nothing for the exporter idle timeout.",
		func() float64 { return float64(dec.ExpiredExporters()) })
	f.CounterFunc("exporters_evicted_total", "Exporters that had delivered no record, forgotten to make room for a new one when the exporter table was full.",
		func() float64 { return float64(dec.EvictedExporters()) })
	f.GaugeFunc("state_bytes", "Estimated bytes of the state all exporters make the decoder keep (templates, options values, held data).",
		func() float64 { return float64(dec.Bytes()) })
	return p, nil
}

// Worker handles datagrams on one goroutine, reusing its record buffer.
type Worker struct {
	p       *Pipeline
	records []flow.Record
	allowed []decoders.Datagram // a batch's allowed datagrams, for the taps
}

// NewWorker returns a worker; use one per goroutine.
func (p *Pipeline) NewWorker() *Worker {
	return &Worker{p: p, records: make([]flow.Record, 0, 64)}
}

func (p *Pipeline) allowed(a netip.Addr) bool {
	if len(p.cfg.Allow) == 0 {
		return true
	}
	for _, n := range p.cfg.Allow {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// A datagram of tiny records (a template of one one-byte field) carries up
// to 65,503 of them, each a flow.Record of several hundred bytes: one such
// datagram decodes to about 30 MB. A batch hands its records to the
// outputs each time flushRecords have been decoded, and a worker keeps a
// buffer of at most keepRecords between batches: before, a batch of 32
// such datagrams allocated 4.7 GB, and every idle IPFIX-over-TCP
// connection that had sent one kept 33 MB.
const (
	flushRecords = 4096
	keepRecords  = 8192
)

// Handle runs one datagram through the pipeline. The payload is not kept.
func (w *Worker) Handle(dg decoders.Datagram) {
	w.records = w.decode(dg, w.records[:0])
	w.write(w.records)
	w.shrink()
}

// shrink lets go of a records buffer a burst of large datagrams grew.
func (w *Worker) shrink() {
	if cap(w.records) > keepRecords {
		w.records = nil
	}
}

// decodeInto decodes dg into recs, first handing recs to the outputs when
// they hold flushRecords or more.
func (w *Worker) decodeInto(dg decoders.Datagram, recs []flow.Record, allowed bool) []flow.Record {
	if len(recs) >= flushRecords {
		w.write(recs)
		if recs = recs[:0]; cap(recs) > keepRecords {
			recs = nil
		}
	}
	if allowed {
		return w.decodeAllowed(dg, recs)
	}
	return w.decode(dg, recs)
}

// HandleBatch runs datagrams received together through the pipeline: each
// is decoded as by Handle, and the records of all of them go to the
// enrichers and outputs at once, so that the outputs' per-call work (a lock,
// a buffer) is paid per batch, not per datagram. The payloads are not kept.
func (w *Worker) HandleBatch(dgs []decoders.Datagram) {
	recs := w.records[:0]
	if w.p.batchTaps {
		// The taps see the batch's allowed datagrams at once, before they
		// are decoded.
		allowed := w.allowed[:0]
		for _, dg := range dgs {
			if w.allow(dg) {
				allowed = append(allowed, dg)
			}
		}
		for _, t := range w.p.deps.Taps {
			t.(BatchTap).TapBatch(allowed)
		}
		for _, dg := range allowed {
			recs = w.decodeInto(dg, recs, true)
		}
		clear(allowed)
		w.allowed = allowed[:0]
	} else {
		for _, dg := range dgs {
			recs = w.decodeInto(dg, recs, false)
		}
	}
	w.records = recs
	w.write(recs)
	w.shrink()
}

// decode checks, taps, decodes and counts one datagram, appending its
// records to recs.
func (w *Worker) decode(dg decoders.Datagram, recs []flow.Record) []flow.Record {
	if !w.allow(dg) {
		return recs
	}
	for _, t := range w.p.deps.Taps {
		t.Tap(dg)
	}
	return w.decodeAllowed(dg, recs)
}

// allow reports whether dg comes from the allowed networks; a datagram that
// does not is counted and logged.
func (w *Worker) allow(dg decoders.Datagram) bool {
	p := w.p
	src := dg.Source.Addr().Unmap()
	if !p.allowed(src) {
		p.m.drops.WithLabelValues(reason.NotAllowed).Inc()
		// Logged per reason: sources can be spoofed, one line each would flood.
		p.log.Warn(reason.NotAllowed, "datagram from an exporter outside the allowed networks dropped", "exporter", src)
		return false
	}
	return true
}

// decodeAllowed decodes and counts an allowed datagram, appending its
// records to recs.
func (w *Worker) decodeAllowed(dg decoders.Datagram, recs []flow.Record) []flow.Record {
	p := w.p
	src := dg.Source.Addr().Unmap()
	recs, res, err := p.decoder.Decode(dg, recs)
	if err != nil && reason.Of(err) == reason.ExporterLimit {
		p.m.drops.WithLabelValues(reason.ExporterLimit).Inc()
		p.log.Warn("exporter_limit", "datagram dropped: too many exporters", "exporter", src, "err", err)
		return recs
	}
	// A datagram that decoded (limits may have refused parts of it) makes
	// its source an exporter with series of its own; garbage does not.
	malformed := err != nil && res.Refused.Count(reason.Of(err)) == 0
	em := p.m.exporter(src, res.Kind != flow.KindUnknown && !malformed)
	if res.Kind != flow.KindUnknown {
		n := &em.counts[res.Kind]
		n.datagrams.Add(1)
		if res.Records > 0 {
			n.records.Add(uint64(res.Records))
		}
		if res.Lost > 0 {
			em.lost[res.Kind].Add(float64(res.Lost))
		}
	}
	if res.OptionsRecords > 0 {
		em.options.Add(float64(res.OptionsRecords))
	}
	if res.Held > 0 {
		em.held.Add(float64(res.Held))
	}
	if res.Expired > 0 {
		em.expired.Add(float64(res.Expired))
		p.m.decodeErrorsOf(em, reason.NoTemplate).Add(float64(res.Expired))
	}
	if res.Refused.Total() > 0 {
		for why, n := range res.Refused.All() {
			p.m.decodeErrorsOf(em, why).Add(float64(n))
		}
	}
	if res.BadHeaders > 0 {
		em.badHeaders.Add(float64(res.BadHeaders))
	}
	if res.Discards > 0 {
		em.discards.Add(float64(res.Discards))
	}
	if res.UnknownSamples > 0 {
		em.unknownSamples.Add(float64(res.UnknownSamples))
	}
	if res.IgnoredSets > 0 {
		em.ignoredSets.Add(float64(res.IgnoredSets))
	}
	if res.Kind == flow.KindNetFlowV9 || res.Kind == flow.KindIPFIX {
		em.setTemplates(res.Templates)
	}
	if p.stats != nil && res.Kind != flow.KindUnknown {
		p.stats.add(src, res, err != nil)
	}
	if err != nil {
		why, msg := reason.Of(err), "part of a datagram refused by a limit"
		if malformed { // else the error is a refusal counted above
			p.m.decodeErrorsOf(em, why).Inc()
			msg = "malformed datagram"
		}
		// Logged per reason: sources can be spoofed, one line each would flood.
		p.log.Warn(why, msg, "exporter", src, "reason", why, "err", err)
	}
	return recs
}

func (w *Worker) write(recs []flow.Record) {
	if len(recs) == 0 {
		return
	}
	p := w.p
	for _, en := range p.deps.Enrichers {
		for i := range recs {
			en.Enrich(&recs[i])
		}
	}
	for _, o := range p.deps.Outputs {
		if err := o.Sink.Write(recs); err != nil {
			p.m.outputErrors.WithLabelValues(o.Name).Inc()
			p.log.Warn("output/"+o.Name, "output failed", "output", o.Name, "err", err)
		}
	}
}

// countExpired counts the held sets that expiry dropped, then deletes the
// series of the exporters the decoder forgot.
func (p *Pipeline) countExpired(m map[netip.Addr]int, what string) int {
	total := 0
	for a, n := range m {
		em := p.m.exporter(a, false)
		em.expired.Add(float64(n))
		p.m.decodeErrorsOf(em, reason.NoTemplate).Add(float64(n))
		p.log.Warn(what, "data sets whose template never came dropped", "exporter", a, "sets", n)
		total += n
	}
	p.m.prune(p.decoder.Has)
	return total
}

// Flush ends a capture replay: data sets still waiting for a template are
// dropped and counted as decode errors (reason no_template).
func (p *Pipeline) Flush() int {
	return p.countExpired(p.decoder.Flush(), "flush")
}

// Name is used in lifecycle errors.
func (p *Pipeline) Name() string { return "pipeline" }

// Start runs the expiry of data sets held for templates and the exporter
// statistics; decoding runs on the callers' goroutines.
func (p *Pipeline) Start() error {
	if p.stats != nil {
		p.tracker.Every(p.cfg.ExporterStatsInterval, p.emitStats)
	}
	if p.cfg.ExpireInterval > 0 {
		p.tracker.Every(p.cfg.ExpireInterval, func(now time.Time) {
			p.countExpired(p.decoder.Expire(now), "expire")
		})
	}
	return nil
}

// Stop ends the expiry and statistics goroutines, and writes the
// statistics of the last, partial, interval.
func (p *Pipeline) Stop() error {
	err := p.tracker.Stop()
	p.EmitStats()
	return err
}

// Drops is the counter of datagrams dropped before decoding for a reason.
func (p *Pipeline) Drops(why string) prometheus.Counter { return p.m.drops.WithLabelValues(why) }
