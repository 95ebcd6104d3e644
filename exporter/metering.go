package exporter

import (
	"time"

	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/exporter/ipfix"
	"github.com/spanflow/spanflow/exporter/meter"
)

// The exporter reads and decodes frames into chunks of decoded packets
// (a decode.Packet holds no reference into the frame, so the reader may
// reuse or unmap the frame's memory at once), which the meter side meters,
// and with them does all the work on the table and the encoder, in the
// order the reader asked for it.
//
// Reading a capture file, the meter side is a goroutine of its own (the
// encoder sends on a third, see ipfix.Encoder.SendInBackground): on a file
// of short connections reading and decoding take about as long as
// metering, and the two halves overlapping on two cores cut the run's
// wall clock by a quarter to a third, for up to a tenth more CPU time
// (docs/performance.md). Live, the meter side is the reader itself, every
// BatchMax packets, as the frames come: the hand-overs of a two-goroutine
// pipeline woke the metering goroutine a few hundred times a second and
// cost about half as much CPU again (bench/exporter-live-ab.sh), on the
// hypervisor whose cores the exporter shares with the VMs.

// chunkMax is how many packets a chunk of a capture file holds. A
// hand-over can wake the goroutine waiting for it (the runtime looks for
// work, then sleeps on a futex until the other side wakes it:
// microseconds each time), about once a chunk: 2,048 packets (about
// 240 KiB, within a core's L2 cache) measured cheaper than 1,024 and than
// 4,096.
const chunkMax = 2048

// chunks is how many chunks an exporter has: one filled, one metered, the
// rest queued between them.
const chunks = 4

// chunk is decoded packets (the metering's limit of them: 32 live, where
// chunkMax would be 250 KB per capture worker for 32 used) and what to do
// with them and after them, in order: meter the packets (with stats as the
// encoder's statistics), run a live tick, push the encoder's finished
// messages, publish the table's counters.
type chunk struct {
	pkts  []decode.Packet // limit of them (the metering's)
	ts    []int64
	nows  []int64
	n     int
	stats ipfix.Statistics
	// tick, when not 0, is a live tick's flow time: flows whose
	// timeouts passed end, and the message being built is sent.
	tick    int64
	push    bool
	publish bool
}

// metering is the hand-over between the reader and the meter side.
type metering struct {
	cur   *chunk // being filled by the reader
	limit int    // packets at which cur is handed over
	// A goroutine of its own only: the chunks to it, in order, and back.
	work, free chan *chunk
	done       chan struct{}
}

// startMetering sets up the meter side: a goroutine of its own when
// pipelined; stopMetering hands over what is left and waits for it to
// end, after which the table and the encoder are the caller's again.
func (x *Exporter) startMetering(pipelined bool) {
	m := &metering{limit: meter.BatchMax}
	if pipelined {
		m.limit = chunkMax
	}
	m.cur = newChunk(m.limit)
	x.metering = m
	if !pipelined {
		return
	}
	m.work, m.free, m.done = make(chan *chunk, chunks), make(chan *chunk, chunks), make(chan struct{})
	for range chunks - 1 {
		m.free <- newChunk(m.limit)
	}
	go func() {
		defer close(m.done)
		for c := range m.work {
			x.meterChunk(c)
			m.free <- c
		}
	}()
}

func (x *Exporter) stopMetering() {
	m := x.metering
	if m == nil {
		return
	}
	x.handOver()
	if m.work != nil {
		close(m.work)
		<-m.done
	}
	x.metering = nil
}

// meterChunk does what c asks, on the meter side, and empties it.
func (x *Exporter) meterChunk(c *chunk) {
	if c.n > 0 {
		// A message the encoder begins meanwhile reports in its
		// statistics record the frames read up to the hand-over.
		x.encoder.SetStatistics(c.stats)
		x.feeder.Meter(c.pkts[:c.n], c.ts[:c.n], c.nows[:c.n])
	}
	if c.tick != 0 {
		x.encoder.SetStatistics(c.stats)
		x.table.Expire(c.tick)
		if err := x.encoder.Flush(time.Unix(0, c.tick)); err != nil {
			x.log.Warn("send", "cannot send IPFIX message", "err", err)
		}
	}
	if c.push {
		x.encoder.Push()
	}
	if c.publish {
		x.table.Publish()
	}
	c.n, c.tick, c.push, c.publish = 0, 0, false, false
}

func newChunk(n int) *chunk {
	return &chunk{pkts: make([]decode.Packet, n), ts: make([]int64, n), nows: make([]int64, n)}
}

// slot is where the reader decodes the next frame; commit takes it in.
func (x *Exporter) slot() *decode.Packet { return &x.metering.cur.pkts[x.metering.cur.n] }

// commit takes in the packet decoded into slot, captured at ts when the
// flow time was now, and hands the chunk over when it is full.
func (x *Exporter) commit(ts, now int64) {
	c := x.metering.cur
	c.ts[c.n], c.nows[c.n] = ts, now
	if c.n++; c.n == x.metering.limit {
		x.handOver()
	}
}

// handOver passes the current chunk, with what is asked of it, to the
// meter side (when it holds packets or asks for something): metered at
// once, or sent to the metering goroutine for a free chunk.
func (x *Exporter) handOver() {
	m := x.metering
	c := m.cur
	if c.n == 0 && c.tick == 0 && !c.push && !c.publish {
		return
	}
	c.stats = x.statistics()
	if m.work == nil {
		x.meterChunk(c)
		return
	}
	m.work <- c
	m.cur = <-m.free
}
