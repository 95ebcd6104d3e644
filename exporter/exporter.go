// Package exporter assembles the exporter's data path:
//
//	capture ─▶ decode ─▶ meter ─▶ ipfix ─▶ transport (UDP, TCP or TLS to N collectors)
//
// Each stage is its own package (exporter/capture, exporter/decode,
// exporter/meter, exporter/ipfix, exporter/transport); this one builds them
// from one Configuration (config.go) into an Exporter that runs frames from
// a capture source through them, and runs one Exporter per capture worker
// (Fanout, fanout.go) on the sources OpenSources opens.
package exporter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/spanflow/spanflow/exporter/capture"
	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/exporter/distribute"
	"github.com/spanflow/spanflow/exporter/ipfix"
	"github.com/spanflow/spanflow/exporter/meter"
	"github.com/spanflow/spanflow/exporter/ring"
	"github.com/spanflow/spanflow/exporter/transport"
	"github.com/spanflow/spanflow/internal/numfmt"
	"github.com/spanflow/spanflow/internal/reporter"
)

// Exporter is one pipeline. Run feeds it from a source in one goroutine.
type Exporter struct {
	r         *reporter.Reporter
	cfg       Configuration
	decoder   *decode.Decoder
	table     *meter.Table
	encoder   *ipfix.Encoder
	transport ipfix.Transport
	closer    io.Closer
	outputs   *transport.Transports // when New opened them
	log       *reporter.Limited
	stats     Summary
	// pub is the copy of stats that metrics read; Run publishes every
	// publishEvery frames.
	pubMu sync.Mutex
	pub   Summary
	// Frames are decoded into chunks that the metering goroutine
	// (metering.go) meters with the feeder, in batches so that the
	// table's cache misses overlap (see meter.Feeder); each is metered
	// with the flow time Run had when it was read.
	feeder   *meter.Feeder
	metering *metering
	// inlineFile meters a capture file on the reading goroutine too
	// (tests compare the two ways); pipelined says how the last Run
	// metered.
	inlineFile, pipelined bool
	// ring keeps the frames on disk (the packet ring), when configured;
	// ringFilter, when set, chooses which.
	ring       *ring.Appender
	ringFilter *ring.Filter
	// ringHeadersOnly keeps frames up to the innermost transport header,
	// and no bytes of frames without an IP packet.
	ringHeadersOnly bool
	// dist hands chosen frames to packet tools; nil without rules.
	dist *distribute.Distributor
}

// keep appends a frame to the packet ring, with the flow key of the packet
// the decoder found in it (none when it found none).
func (x *Exporter) keep(fr *capture.Frame, r decode.Reason, p *decode.Packet) {
	if x.ringFilter != nil && !x.ringFilter.Match(fr.LinkType, fr.Data, fr.Length) {
		return
	}
	var key uint64
	data := fr.Data
	if r == decode.ReasonOK || r == decode.ReasonTunnelFragment {
		// A later fragment of a tunnel packet goes with its inner flow.
		key = ring.PacketKey(p)
		if x.ringHeadersOnly {
			data = data[:min(len(data), int(p.HeaderLen))]
		}
	} else if x.ringHeadersOnly {
		data = data[:0] // no IP packet: where its payload starts is not known
	}
	x.ring.Append(fr.Timestamp, fr.Length, fr.LinkType, fr.ObservationPoint, key, data)
}

const publishEvery = 4096

// publish publishes the reader's counters, and the table's: at once when
// the table is the caller's, else by the meter side with the next
// hand-over.
func (x *Exporter) publish() {
	x.pubMu.Lock()
	x.pub = x.stats
	x.pubMu.Unlock()
	if x.metering != nil {
		x.metering.cur.publish = true
	} else {
		x.table.Publish()
	}
}

func (x *Exporter) published() Summary {
	x.pubMu.Lock()
	defer x.pubMu.Unlock()
	return x.pub
}

// Frames is the number of frames read so far (as last published).
func (x *Exporter) Frames() uint64 { return x.published().Frames }

// Summary is what a run did.
type Summary struct {
	Frames, Octets uint64 // frames read and their length on the wire
	// Untimed is how many frames of the capture file had no time (pcapng
	// simple packet blocks) and were given one (pcapfile.Reader.Untimed).
	Untimed     uint64
	Undecodable [8]uint64
	Flows       uint64 // flow records exported
	Messages    uint64 // IPFIX messages sent (to each collector)
	SendErrors  uint64
	Evicted     uint64
	// Live capture only: the kernel's counters of the AF_PACKET socket.
	Live          bool
	KernelDropped uint64
	LinkDowns     uint64 // times a capture interface went down
	// Flow records not delivered, summed over the collectors: a TCP/TLS
	// collector's queue was full, or they were still queued or
	// unacknowledged when the drain at stop ended; UDP: the kernel refused
	// to send them.
	DroppedRecords uint64
	// Collectors says, per collector, what became of the flow records
	// (when the exporter opened the transports): each record given to a
	// collector is either sent or dropped.
	Collectors []transport.Delivery
	// Ring is what the packet ring kept, when there is one.
	Ring *ring.Stats
	// Distribution is each distribution rule's counters.
	Distribution []distribute.Stats
}

// Add returns the sum of two runs' summaries (fanout workers).
func (s Summary) Add(o Summary) Summary {
	s.Frames += o.Frames
	s.Octets += o.Octets
	s.Untimed += o.Untimed
	for i := range s.Undecodable {
		s.Undecodable[i] += o.Undecodable[i]
	}
	s.Flows += o.Flows
	s.Messages += o.Messages
	s.SendErrors += o.SendErrors
	s.Evicted += o.Evicted
	s.Live = s.Live || o.Live
	s.KernelDropped += o.KernelDropped
	s.LinkDowns = max(s.LinkDowns, o.LinkDowns) // every worker's socket sees the same events
	s.DroppedRecords += o.DroppedRecords
	// Each fanout worker has connections of its own to every collector.
	s.Collectors = append([]transport.Delivery(nil), s.Collectors...)
	for _, d := range o.Collectors {
		i := slices.IndexFunc(s.Collectors, func(e transport.Delivery) bool { return e.Collector == d.Collector })
		if i < 0 {
			s.Collectors = append(s.Collectors, d)
			continue
		}
		s.Collectors[i].Records += d.Records
		s.Collectors[i].DroppedRecords += d.DroppedRecords
		s.Collectors[i].Resets += d.Resets
	}
	s.Distribution = append([]distribute.Stats(nil), s.Distribution...)
	for _, d := range o.Distribution {
		i := slices.IndexFunc(s.Distribution, func(e distribute.Stats) bool { return e.Rule == d.Rule })
		if i < 0 {
			s.Distribution = append(s.Distribution, d)
			continue
		}
		s.Distribution[i] = s.Distribution[i].Add(d)
	}
	return s
}

// NotDecodable is the number of frames not metered for any reason but "not
// IP" and the later fragments of a tunnel packet metered from its first.
func (s Summary) NotDecodable() uint64 {
	var n uint64
	for r, c := range s.Undecodable {
		if r := decode.Reason(r); r != decode.ReasonNotIP && r != decode.ReasonTunnelFragment {
			n += c
		}
	}
	return n
}

// String is the one-line summary printed at exit, numbers grouped as the
// demo's.
func (s Summary) String() string {
	c := numfmt.Count
	line := fmt.Sprintf("%s, %s, %s exported in %s, %s not decodable, %s not IP, %s evicted early, %s",
		c(s.Frames, "packet", ""), c(s.Octets, "byte", ""), c(s.Flows, "flow", ""), c(s.Messages, "IPFIX message", ""),
		c(s.NotDecodable(), "packet", ""), numfmt.Group(s.Undecodable[decode.ReasonNotIP]), c(s.Evicted, "flow", ""), c(s.SendErrors, "send error", ""))
	if n := s.Undecodable[decode.ReasonTunnelFragment]; n > 0 {
		line += fmt.Sprintf(", %s of tunnel packets counted with their first", c(n, "later fragment", ""))
	}
	if s.Untimed > 0 {
		line += fmt.Sprintf(", %s without a time in the file (pcapng simple packet blocks) dated by the packets around them, else by the file's modification time", c(s.Untimed, "packet", ""))
	}
	if s.Live {
		line += fmt.Sprintf(", %s dropped by the kernel", c(s.KernelDropped, "packet", ""))
	}
	if s.LinkDowns > 0 {
		line += fmt.Sprintf(", capture interface down %s", c(s.LinkDowns, "time", ""))
	}
	if s.DroppedRecords > 0 {
		line += fmt.Sprintf(", %s not delivered to collectors (dropped)", c(s.DroppedRecords, "flow record", ""))
	}
	if g := s.Ring; g != nil {
		line += fmt.Sprintf(", packet ring: %s kept (%s stored, %s on disk), %s dropped", c(g.Frames, "frame", ""),
			c(g.StoredBytes+g.IndexBytes, "byte", ""), c(uint64(g.DiskBytes), "byte", ""), c(g.Dropped, "frame", ""))
	}
	var resets uint64
	for _, d := range s.Collectors {
		resets += d.Resets
	}
	if resets > 0 {
		line += fmt.Sprintf(", %s reset by collectors (records they had not read, if any, are lost, uncounted)", c(resets, "connection", ""))
	}
	for _, d := range s.Distribution {
		line += fmt.Sprintf("; distribute %s: %s sent, %s deduplicated, %s sampled out, %s dropped", d.Rule,
			c(d.Sent, "packet", ""), numfmt.Group(d.Deduplicated), numfmt.Group(d.SampledOut), numfmt.Group(d.Dropped()))
	}
	return line
}

// New builds the pipeline. When out is nil, the transports to the
// configured collectors (UDP, TCP, TLS) are opened.
func New(r *reporter.Reporter, cfg Configuration, out ipfix.Transport) (*Exporter, error) {
	x := &Exporter{r: r, cfg: cfg, decoder: decode.New(), log: reporter.NewLimited(r.Log, 10*time.Second)}
	if out == nil {
		tr, err := transport.New(r.Sub("export"), cfg.transportConfiguration())
		if err != nil {
			return nil, err
		}
		out, x.closer, x.outputs = tr, tr, tr
		if cfg.Pcap != "" && cfg.PcapRate > 0 {
			out = newPacedTransport(tr, cfg.PcapRate)
		}
	}
	x.transport = out
	var err error
	x.encoder, err = ipfix.New(r.Sub("ipfix"), cfg.ipfix(captureInterfaces(cfg)), out)
	if err != nil {
		x.close()
		return nil, err
	}
	x.table, err = meter.New(r.Sub("meter"), cfg.meter(), x.encoder)
	if err != nil {
		x.close()
		return nil, err
	}
	x.feeder = meter.NewFeeder(x.table)
	// Always there, even without rules, so that a reload can add some.
	x.dist, err = distribute.New(r.Sub("distribute").Log, cfg.Distribute)
	if err != nil {
		x.close()
		return nil, err
	}
	r.Registry.MustRegister(x.dist.Collector())
	r.Factory("capture").CounterFunc("kernel_drops_total", "Frames the kernel dropped because the capture ring was full (live capture).", func() float64 { return float64(x.published().KernelDropped) })
	r.Factory("capture").CounterFunc("link_downs_total", "Times a capture interface went down (live capture; frames resume when it is up).", func() float64 { return float64(x.published().LinkDowns) })
	f := r.Factory("decode")
	f.CounterFunc("frames_total", "Frames read from the capture source.", func() float64 { return float64(x.published().Frames) })
	for _, reason := range decode.Reasons {
		reason := reason
		f.CounterFunc("frames_"+reason.String()+"_total", "Frames not metered: "+reason.String()+".", func() float64 { return float64(x.published().Undecodable[reason]) })
	}
	return x, nil
}

// statistics is what the encoder's statistics record reports: the frames
// read so far.
func (x *Exporter) statistics() ipfix.Statistics {
	var ignored uint64
	for _, c := range x.stats.Undecodable {
		ignored += c
	}
	return ipfix.Statistics{Packets: x.stats.Frames, Octets: x.stats.Octets, Ignored: ignored}
}

// KernelCounter is a live source: it has the kernel's counters, and its Next
// returns capture.ErrIdle when no frame came for a while.
type KernelCounter interface {
	Stats() capture.LiveStats
}

// tickEvery is how often, in wall-clock time, a live run expires flows and
// sends the message being built.
const tickEvery = time.Second

// tick runs a live capture's timers: flows whose timeouts passed end even
// when no packet arrives, and what was encoded leaves within a second (the
// meter side does both, after the packets read before). The flow time
// moves on to the wall clock; tick returns it.
func (x *Exporter) tick(live KernelCounter, now int64) int64 {
	now = max(now, time.Now().UnixNano())
	x.metering.cur.tick = now
	x.kernelStats(live)
	x.publish()
	x.handOver()
	if x.ring != nil {
		x.ring.Tick(time.Now())
	}
	return now
}

// kernelStats takes the live source's counters, and says when an interface
// went down: no frames come from it until it is up again.
func (x *Exporter) kernelStats(live KernelCounter) {
	s := live.Stats()
	x.stats.KernelDropped = s.Dropped
	if s.LinkDowns > x.stats.LinkDowns {
		x.log.Warn("link", "a capture interface went down: no frames from it until it is up again", "times", s.LinkDowns)
	}
	x.stats.LinkDowns = s.LinkDowns
}

// Run reads src until its end (or ctx is cancelled), then ends every flow,
// sends what is left and returns the summary. A read error stops the run but
// the flows metered so far are still exported. A live source (a
// KernelCounter) is read until ctx is cancelled; its flows are expired on
// wall-clock time every second.
//
// Flow time, now, is the latest timestamp of the frames read (and, live,
// of the wall clock at each tick): the table, the encoder's export time
// and template refresh all run on it, so that a capture file gives the
// same messages on every run.
func (x *Exporter) Run(ctx context.Context, src capture.Source) (Summary, error) {
	live, _ := src.(KernelCounter)
	x.stats.Live = live != nil
	if p, ok := x.transport.(*pacedTransport); ok {
		// Told to stop (SIGINT, SIGTERM), a paced replay stops reading
		// and sends what the meter holds at once: at 500 messages a
		// second the rest took minutes.
		stop := context.AfterFunc(ctx, func() {
			x.r.Log.Info("stopping: the rest of the capture is not read; the flows metered so far are sent at once, unpaced")
			p.unpace()
		})
		defer stop()
	}
	// Messages are sent on a goroutine of their own, on another core
	// than metering; encoder.Close below waits until all are sent.
	x.encoder.SendInBackground()
	// A capture file is read on two cores when there are two; see
	// metering.go.
	x.pipelined = live == nil && !x.inlineFile && runtime.GOMAXPROCS(0) > 1
	x.startMetering(x.pipelined)
	now, runErr := x.frames(ctx, src, live)
	x.stopMetering()
	if f, ok := src.(interface{ Untimed() int }); ok {
		x.stats.Untimed = uint64(f.Untimed())
	}
	if x.ring != nil {
		x.ring.Flush()
	}
	// Queued frames leave before the summary counts them.
	x.dist.Close(distributeDrain)
	x.stats.Distribution = x.dist.Stats()
	if live != nil {
		now = max(now, time.Now().UnixNano())
		x.kernelStats(live)
	}
	x.encoder.SetStatistics(x.statistics())
	x.table.Flush(now)
	closeErr := x.encoder.Close(time.Unix(0, now))
	x.table.Close()
	ms, es := x.table.Stats(), x.encoder.Counters()
	x.stats.Flows, x.stats.Messages, x.stats.SendErrors, x.stats.Evicted = ms.Exported(), es.Messages, es.SendErrors, ms.FlowsEvicted
	x.publish()
	if runErr == nil && closeErr != nil && es.Messages == es.SendErrors {
		runErr = closeErr // nothing could be sent at all
	}
	x.close()
	if x.outputs != nil {
		x.stats.Collectors = x.outputs.Deliveries()
		for _, d := range x.stats.Collectors {
			x.stats.DroppedRecords += d.DroppedRecords
		}
	}
	return x.stats, runErr
}

// frames runs the frames of src through the pipeline until its end (or
// ctx is cancelled) and returns the flow time. A capture file mapped in
// memory (capture.File) faults where a page was cut off the file while it
// was read: the fault is a read error, not a crash.
func (x *Exporter) frames(ctx context.Context, src capture.Source, live KernelCounter) (now int64, runErr error) {
	if m, ok := src.(interface{ Mapped(addr uintptr) bool }); ok {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if f, ok := v.(interface{ Addr() uintptr }); ok && m.Mapped(f.Addr()) {
				runErr = fmt.Errorf("read capture: the file was cut while being read (fault at %#x): %w", f.Addr(), io.ErrUnexpectedEOF)
				return
			}
			panic(v)
		}()
	}
	var fr capture.Frame
	nextTick := time.Now().Add(tickEvery)
	for n := 0; ; n++ {
		if n%publishEvery == 0 {
			// Both ride with the chunk being filled: it is handed over
			// when full, at the next idle return or tick, or at the end.
			x.metering.cur.push = true
			x.publish()
			if ctx.Err() != nil {
				break
			}
		}
		if live != nil && n%64 == 0 && time.Now().After(nextTick) {
			now = x.tick(live, now)
			nextTick = time.Now().Add(tickEvery)
		}
		err := src.Next(&fr)
		if err != nil {
			x.metering.cur.push = true
			x.handOver()
			if live != nil && errors.Is(err, capture.ErrIdle) {
				if ctx.Err() != nil {
					break
				}
				if time.Now().After(nextTick) {
					now = x.tick(live, now)
					nextTick = time.Now().Add(tickEvery)
				}
				continue
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, capture.ErrClosed) {
				runErr = err
			}
			break
		}
		x.stats.Frames++
		x.stats.Octets += uint64(fr.Length)
		now = max(now, fr.Timestamp)
		pp := x.slot()
		r := x.decoder.Decode(fr.LinkType, fr.Data, fr.Length, pp)
		if x.ring != nil {
			x.keep(&fr, r, pp)
		}
		// Packet tools may want frames the meter does not (ARP, truncated).
		x.dist.Offer(&fr, pp, r)
		if r != decode.ReasonOK {
			x.stats.Undecodable[r]++
			continue
		}
		if pp.ERSPANSession == 0 {
			// The interface is the observation point, unless the frame
			// came in an ERSPAN session.
			pp.ERSPANSession = fr.ObservationPoint
		}
		if pp.InIf == 0 {
			// A live capture's records name the capturing interface,
			// unless the frame brought its own (ERSPAN II's port).
			pp.InIf = fr.IfIndex
		}
		x.commit(fr.Timestamp, now)
	}
	return now, runErr
}

// distributeDrain is how long the end of a run waits for the frames queued
// to distribution destinations to leave.
const distributeDrain = 5 * time.Second

// Reload replaces the distribution rules; on error the rules in force stay.
func (x *Exporter) Reload(rules []distribute.Rule) error { return x.dist.Reload(rules) }

func (x *Exporter) close() {
	if x.dist != nil {
		x.dist.Close(0)
	}
	if x.closer != nil {
		x.closer.Close()
		x.closer = nil
	}
}
