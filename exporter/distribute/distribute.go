// Package distribute is the exporter's packet broker: beside metering, it
// hands the frames each rule chooses (tcpdump filter, CIDR lists, 1-in-N
// sampling, deduplication of a packet mirrored twice) to the packet tools
// that need them, on a local interface or re-encapsulated in VXLAN, GRE or
// ERSPAN II/III, truncated to a snap length.
//
//	capture ─▶ decode ─▶ meter …
//	                 └─▶ Distributor.Offer ─▶ per rule: filter, dedup, sample ─▶ bounded queue ─▶ sender
//
// Offer runs on the capture goroutine and never blocks: each destination
// has its own queue and goroutine, and a full queue drops the frame and
// counts it.
package distribute

import (
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spanflow/spanflow/exporter/capture"
	"github.com/spanflow/spanflow/exporter/decode"
)

// Stats are one rule's counters. Each frame a rule chooses is deduplicated,
// sampled out, dropped or sent.
type Stats struct {
	Rule         string
	Matched      uint64 // frames that passed the filter and nets
	Deduplicated uint64 // matched frames not sent: seen within the dedup window
	SampledOut   uint64 // matched frames not sent: 1-in-N sampling
	Sent         uint64
	QueueFull    uint64 // dropped: the queue was full (slow, refusing or gone destination)
	SendErrors   uint64 // dropped: the destination refused them
	Bytes        uint64 // bytes sent (frames, without our tunnel headers)
}

// Dropped is every frame dropped after it was chosen.
func (s Stats) Dropped() uint64 { return s.QueueFull + s.SendErrors }

// Add sums two workers' counters of the same rule.
func (s Stats) Add(o Stats) Stats {
	s.Matched += o.Matched
	s.Deduplicated += o.Deduplicated
	s.SampledOut += o.SampledOut
	s.Sent += o.Sent
	s.QueueFull += o.QueueFull
	s.SendErrors += o.SendErrors
	s.Bytes += o.Bytes
	return s
}

// counters are a rule's live counters; a rule that survives a reload keeps
// them.
type counters struct {
	matched, dedup, sampled, sent, queueFull, sendErrors, bytes atomic.Uint64
}

func (c *counters) stats(name string) Stats {
	return Stats{Rule: name, Matched: c.matched.Load(), Deduplicated: c.dedup.Load(), SampledOut: c.sampled.Load(),
		Sent: c.sent.Load(), QueueFull: c.queueFull.Load(), SendErrors: c.sendErrors.Load(), Bytes: c.bytes.Load()}
}

// rule is a Rule ready to run.
type rule struct {
	name    string
	cfg     Rule
	filter  capture.Program
	nets    []netip.Prefix
	dedup   *dedup
	sampleN uint64
	seen    uint64
	c       *counters
	q       *queue
}

// item is one frame on its way to a destination. buf has headroom before
// the frame for the tunnel headers.
type item struct {
	buf  []byte
	ts   int64
	key  uint64 // the dedup key (dedup on)
	skip bool   // the sender's: a duplicate or sampled out
}

const headroom = 24 // the longest tunnel header: GRE with sequence + ERSPAN III

// queue is a rule's frames waiting for its sender: a ring of slots with
// one writer (Offer's goroutine) and one reader (the sender), so that
// handing over a frame costs two atomic operations, not a channel's lock
// and wake-up each. Each slot keeps its buffer from frame to frame.
type queue struct {
	slots    []item
	mask     uint64        // size-1 when size is a power of two, else 0
	size     uint64        // frames waiting at most (queue-size)
	head     atomic.Uint64 // the next slot to send (the sender's)
	tail     atomic.Uint64 // the next slot to fill (Offer's)
	sleeping atomic.Bool   // the sender waits on wake
	wake     chan struct{}
	stop     chan struct{} // closed: no more frames come
	done     chan struct{}
	dest     *sender
	// With dedup on, the sender looks each frame up (the set of every
	// frame of a batch loaded first, together: the table is too large
	// for the caches, and one miss at a time on the capture goroutine
	// cost more than the rest of Offer), then samples 1 in sampleN.
	dedup   *dedup
	sampleN uint64
	seen    uint64
	rate    int
	c       *counters
	log     *slog.Logger
	name    string
}

// ruleset is the rules in force.
type ruleset struct {
	rules []*rule
}

// Distributor offers frames to every rule. Offer must be called from one
// goroutine (the capture worker's); Reload and Stats from any.
type Distributor struct {
	log     *slog.Logger
	current *ruleset                // Offer's goroutine only
	none    bool                    // current has no rules (Offer's goroutine only)
	next    atomic.Pointer[ruleset] // set by Reload, taken by Offer
	mu      sync.Mutex
	pub     *ruleset // what Stats reads
	retired []*ruleset
	seed    maphash.Seed
	closed  bool
}

// New builds the rules, opening each destination. A rule whose filter does
// not compile or whose destination cannot be opened is an error.
func New(log *slog.Logger, rules []Rule) (*Distributor, error) {
	d := &Distributor{log: log, seed: maphash.MakeSeed()}
	rs, err := d.build(rules, nil)
	if err != nil {
		return nil, err
	}
	d.current, d.pub = rs, rs
	d.none = len(rs.rules) == 0
	return d, nil
}

func (d *Distributor) build(rules []Rule, old *ruleset) (*ruleset, error) {
	if err := ValidateRules(rules); err != nil {
		return nil, err
	}
	rs := &ruleset{}
	fail := func(err error) (*ruleset, error) {
		rs.close(0)
		return nil, err
	}
	for i, cfg := range rules {
		if cfg.Name == "" {
			cfg.Name = fmt.Sprintf("rule%d", i+1)
		}
		r := &rule{name: cfg.Name, cfg: cfg, c: &counters{}, sampleN: uint64(max(cfg.Sample, 1))}
		if old != nil {
			for _, o := range old.rules {
				if o.name == r.name {
					r.c = o.c
				}
			}
		}
		if cfg.Filter != "" {
			f, err := compile(cfg.Filter)
			if err != nil {
				return fail(fmt.Errorf("distribute rule %s: %w", cfg.Name, err))
			}
			r.filter = f
		}
		r.nets, _ = cfg.prefixes()
		if cfg.Dedup > 0 {
			r.dedup = newDedup(time.Duration(cfg.Dedup), d.seed)
		}
		dest, _ := ParseDestination(cfg.To)
		s, err := openSender(dest)
		if err != nil {
			return fail(fmt.Errorf("distribute rule %s: %w", cfg.Name, err))
		}
		r.q = newQueue(cfg, s, r.c, d.log, r.dedup, r.sampleN)
		rs.rules = append(rs.rules, r)
	}
	return rs, nil
}

func newQueue(cfg Rule, s *sender, c *counters, log *slog.Logger, dd *dedup, sampleN uint64) *queue {
	n := cfg.QueueSize
	if n == 0 {
		n = DefaultQueueSize
	}
	// n slots: each keeps its buffer, so no more than queue-size frames'
	// worth of memory; a mask finds a slot when n is a power of two (the
	// default), a division otherwise.
	var mask uint64
	if n&(n-1) == 0 {
		mask = uint64(n - 1)
	}
	q := &queue{slots: make([]item, n), mask: mask, size: uint64(n), wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		dest: s, rate: cfg.Rate, c: c, log: log, name: cfg.Name, dedup: dd, sampleN: sampleN}
	go q.run()
	return q
}

// slot is the item of position i.
func (q *queue) slot(i uint64) *item {
	if q.mask != 0 {
		return &q.slots[i&q.mask]
	}
	return &q.slots[i%q.size]
}

// put takes a free slot for a frame, or nil when the queue is full.
func (q *queue) put() *item {
	t := q.tail.Load()
	if t-q.head.Load() >= q.size {
		return nil
	}
	return q.slot(t)
}

// publish hands the slot put returned to the sender.
func (q *queue) publish() {
	q.tail.Add(1)
	if q.sleeping.Load() && q.sleeping.CompareAndSwap(true, false) {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// batchSize is the most frames one system call sends.
const batchSize = 64

// run sends the queued frames in batches, at most rate per second.
func (q *queue) run() {
	defer close(q.done)
	var lastErr time.Time
	tokens, last := 1.0, time.Now()
	pkts := make([][]byte, 0, batchSize)
	lens := make([]int, 0, batchSize)     // each packet's frame bytes, without our headers
	refused := make([]bool, 0, batchSize) // the packets the writer could not send
	for {
		h, t := q.head.Load(), q.tail.Load()
		if h == t {
			// Empty: sleep until Offer publishes or the queue closes,
			// checking again after saying so (Offer may have published
			// in between).
			q.sleeping.Store(true)
			if q.tail.Load() != h {
				q.sleeping.Store(false)
				continue
			}
			select {
			case <-q.wake:
				continue
			case <-q.stop:
				q.sleeping.Store(false)
				if q.tail.Load() != h {
					continue
				}
				return
			}
		}
		n := min(t-h, batchSize)
		keep := n
		if q.dedup != nil {
			keep = q.dedupAndSample(h, n)
		}
		if q.rate > 0 && keep > 0 {
			now := time.Now()
			tokens = min(tokens+now.Sub(last).Seconds()*float64(q.rate), max(float64(q.rate)/100, batchSize))
			last = now
			if need := float64(keep); tokens < need {
				time.Sleep(time.Duration((need - tokens) / float64(q.rate) * float64(time.Second)))
				tokens, last = need, time.Now()
			}
			tokens -= float64(keep)
		}
		pkts, lens = pkts[:0], lens[:0]
		for i := h; i < h+n; i++ {
			it := q.slot(i)
			if it.skip {
				continue
			}
			pkts = append(pkts, q.dest.encap(it.buf, it.ts))
			lens = append(lens, len(it.buf)-headroom)
		}
		if len(pkts) == 0 {
			q.head.Store(h + n)
			continue
		}
		refused = refused[:len(pkts)]
		clear(refused)
		failed, err := q.dest.write(pkts, refused)
		if failed > 0 {
			q.c.sendErrors.Add(uint64(failed))
			if time.Since(lastErr) > 10*time.Second {
				lastErr = time.Now()
				q.log.Warn("cannot send distributed frames (dropped, counted)", "rule", q.name, "frames", failed, "err", err)
			}
		}
		q.c.sent.Add(uint64(len(pkts) - failed))
		var bytes uint64
		for j, l := range lens {
			if !refused[j] {
				bytes += uint64(l)
			}
		}
		q.c.bytes.Add(bytes)
		q.head.Store(h + n)
	}
}

// dedupAndSample marks the duplicates among the n frames from slot h, then
// samples the others, in order; it returns how many are left to send.
func (q *queue) dedupAndSample(h, n uint64) uint64 {
	var sink uint64
	for i := h; i < h+n; i++ {
		sink += q.dedup.probe(q.slot(i).key)
	}
	q.dedup.sink = sink
	keep, dups, sampled := n, uint64(0), uint64(0)
	for i := h; i < h+n; i++ {
		it := q.slot(i)
		it.skip = false
		if q.dedup.seen(it.key, it.ts) {
			it.skip = true
			dups++
			continue
		}
		q.seen++
		if q.sampleN > 1 && q.seen%q.sampleN != 1 {
			it.skip = true
			sampled++
		}
	}
	if dups > 0 {
		q.c.dedup.Add(dups)
	}
	if sampled > 0 {
		q.c.sampled.Add(sampled)
	}
	return keep - dups - sampled
}

// close stops taking frames and waits up to drain for the queued ones to
// leave; what is still queued then is counted as dropped.
func (q *queue) close(drain time.Duration) {
	close(q.stop)
	select {
	case <-q.done:
	case <-time.After(drain):
		// The sender is stuck: closing it ends the send in progress.
		q.dest.close()
		<-q.done
		return
	}
	q.dest.close()
}

func (rs *ruleset) close(drain time.Duration) {
	for _, r := range rs.rules {
		if r.q != nil {
			r.q.close(drain)
		}
	}
}

// Offer gives one frame to every rule. p is the frame decoded (innermost
// packet and where its headers begin) as far as r says: every Ethernet
// frame is offered, but only IP packets (r is decode.ReasonOK) match nets.
// It never blocks. Without rules and no reload waiting it returns at
// once, inlined into the pipeline's loop (it is called for every frame).
func (d *Distributor) Offer(fr *capture.Frame, p *decode.Packet, r decode.Reason) {
	if d.none && d.next.Load() == nil {
		return
	}
	d.offer(fr, p, r)
}

func (d *Distributor) offer(fr *capture.Frame, p *decode.Packet, r decode.Reason) {
	if n := d.next.Load(); n != nil && d.next.CompareAndSwap(n, nil) {
		d.swap(n)
	}
	if len(d.current.rules) == 0 || fr.LinkType != decode.LinkEthernet {
		return
	}
	ip := r == decode.ReasonOK
	for _, r := range d.current.rules {
		r.offer(fr, p, ip)
	}
}

func (r *rule) offer(fr *capture.Frame, p *decode.Packet, ip bool) {
	data := fr.Data
	if len(data) == 0 {
		return // nothing captured: nothing to forward, not chosen
	}
	// The first fragment of a tunnel packet keeps its tunnel: stripped, it
	// would be the start of a frame whose rest is in the next fragments.
	if r.cfg.StripTunnel && p.EthOffset > 0 && int(p.EthOffset) < len(data) && !p.TunnelInFragment {
		data = data[p.EthOffset:]
	}
	if len(r.nets) > 0 && (!ip || !r.inNets(p)) {
		return
	}
	if r.filter != nil && r.filter.Run(data, uint32(fr.Length-(len(fr.Data)-len(data)))) == 0 {
		return
	}
	r.c.matched.Add(1)
	var key uint64
	if r.dedup != nil {
		// The key now, while the frame is at hand and whole; the lookup,
		// and the sampling that follows it, in the sender (queue.run).
		key = r.dedup.key(fr.Data, p, ip)
	} else {
		r.seen++
		if r.sampleN > 1 && r.seen%r.sampleN != 1 {
			r.c.sampled.Add(1)
			return
		}
	}
	if r.cfg.SnapLength > 0 && len(data) > r.cfg.SnapLength {
		data = data[:r.cfg.SnapLength]
	}
	it := r.q.put()
	if it == nil {
		r.c.queueFull.Add(1)
		return
	}
	if cap(it.buf) < headroom {
		it.buf = make([]byte, headroom, headroom+len(data))
	}
	it.buf = append(it.buf[:headroom], data...)
	it.ts = fr.Timestamp
	it.key = key
	r.q.publish()
}

func (r *rule) inNets(p *decode.Packet) bool {
	var src, dst netip.Addr
	if p.IPv6 {
		src, dst = netip.AddrFrom16(p.SrcAddr), netip.AddrFrom16(p.DstAddr)
	} else {
		src, dst = netip.AddrFrom4([4]byte(p.SrcAddr[:4])), netip.AddrFrom4([4]byte(p.DstAddr[:4]))
	}
	for _, n := range r.nets {
		if n.Contains(src) || n.Contains(dst) {
			return true
		}
	}
	return false
}

// Reload builds new rules (opening their destinations) and has Offer use
// them from its next frame; rules keep their counters by name. On error
// the rules in force stay and the error says why.
func (d *Distributor) Reload(rules []Rule) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("distribution stopped")
	}
	rs, err := d.build(rules, d.pub)
	if err != nil {
		return err
	}
	if old := d.next.Swap(rs); old != nil {
		// A reload Offer had not taken yet: it never ran.
		go old.close(0)
	}
	d.pub = rs
	return nil
}

// swap puts the new rules in force, on Offer's goroutine; the old ones
// drain their queues in the background.
func (d *Distributor) swap(rs *ruleset) {
	old := d.current
	d.current, d.none = rs, len(rs.rules) == 0
	d.mu.Lock()
	d.retired = append(d.retired, old)
	d.mu.Unlock()
	go func() {
		old.close(2 * time.Second)
		d.mu.Lock()
		d.retired = slices.DeleteFunc(d.retired, func(r *ruleset) bool { return r == old })
		d.mu.Unlock()
	}()
}

// Stats are the counters of the rules in force.
func (d *Distributor) Stats() []Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Stats
	for _, r := range d.pub.rules {
		out = append(out, r.c.stats(r.name))
	}
	return out
}

// Close stops taking frames, waits up to drain for the queues to empty,
// then closes the destinations. Call it from Offer's goroutine, after the
// last Offer.
func (d *Distributor) Close(drain time.Duration) {
	d.mu.Lock()
	closed := d.closed
	d.closed = true
	d.mu.Unlock()
	if closed {
		return
	}
	if n := d.next.Swap(nil); n != nil {
		d.swap(n)
	}
	d.current.close(drain)
	// Retired rule sets finish draining on their own goroutines.
	for range 100 {
		d.mu.Lock()
		n := len(d.retired)
		d.mu.Unlock()
		if n == 0 {
			break
		}
		time.Sleep(30 * time.Millisecond)
	}
}
