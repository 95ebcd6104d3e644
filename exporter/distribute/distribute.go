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
	filter  program
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
	buf []byte
	ts  int64
}

const headroom = 24 // the longest tunnel header: GRE with sequence + ERSPAN III

type queue struct {
	free, work chan *item
	done       chan struct{}
	dest       *sender
	rate       int
	c          *counters
	log        *slog.Logger
	name       string
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
		r.q = newQueue(cfg, s, r.c, d.log)
		rs.rules = append(rs.rules, r)
	}
	return rs, nil
}

func newQueue(cfg Rule, s *sender, c *counters, log *slog.Logger) *queue {
	n := cfg.QueueSize
	if n == 0 {
		n = DefaultQueueSize
	}
	q := &queue{free: make(chan *item, n), work: make(chan *item, n), done: make(chan struct{}), dest: s, rate: cfg.Rate, c: c, log: log, name: cfg.Name}
	for range n {
		q.free <- &item{}
	}
	go q.run()
	return q
}

// batchSize is the most frames one system call sends.
const batchSize = 64

// run sends the queued frames in batches, at most rate per second.
func (q *queue) run() {
	defer close(q.done)
	var lastErr time.Time
	tokens, last := 1.0, time.Now()
	batch := make([]*item, 0, batchSize)
	pkts := make([][]byte, 0, batchSize)
	for it := range q.work {
		batch = append(batch[:0], it)
	fill:
		for len(batch) < batchSize {
			select {
			case it, ok := <-q.work:
				if !ok {
					break fill
				}
				batch = append(batch, it)
			default:
				break fill
			}
		}
		if q.rate > 0 {
			now := time.Now()
			tokens = min(tokens+now.Sub(last).Seconds()*float64(q.rate), max(float64(q.rate)/100, batchSize))
			last = now
			if need := float64(len(batch)); tokens < need {
				time.Sleep(time.Duration((need - tokens) / float64(q.rate) * float64(time.Second)))
				tokens, last = need, time.Now()
			}
			tokens -= float64(len(batch))
		}
		pkts = pkts[:0]
		var bytes uint64
		for _, it := range batch {
			pkts = append(pkts, q.dest.encap(it.buf, it.ts))
			bytes += uint64(len(it.buf) - headroom)
		}
		failed, err := q.dest.write(pkts)
		if failed > 0 {
			q.c.sendErrors.Add(uint64(failed))
			if time.Since(lastErr) > 10*time.Second {
				lastErr = time.Now()
				q.log.Warn("cannot send distributed frames (dropped, counted)", "rule", q.name, "frames", failed, "err", err)
			}
		}
		q.c.sent.Add(uint64(len(batch) - failed))
		if failed == 0 {
			q.c.bytes.Add(bytes)
		}
		for _, it := range batch {
			q.free <- it
		}
	}
}

// close stops taking frames and waits up to drain for the queued ones to
// leave; what is still queued then is counted as dropped.
func (q *queue) close(drain time.Duration) {
	close(q.work)
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
	if r.cfg.StripTunnel && p.EthOffset > 0 && int(p.EthOffset) < len(data) {
		data = data[p.EthOffset:]
	}
	if len(r.nets) > 0 && (!ip || !r.inNets(p)) {
		return
	}
	if r.filter != nil && r.filter.run(data, uint32(fr.Length-(len(fr.Data)-len(data)))) == 0 {
		return
	}
	r.c.matched.Add(1)
	if r.dedup != nil && r.dedup.seen(fr.Data, p, ip, fr.Timestamp) {
		r.c.dedup.Add(1)
		return
	}
	r.seen++
	if r.sampleN > 1 && r.seen%r.sampleN != 1 {
		r.c.sampled.Add(1)
		return
	}
	if len(data) == 0 {
		return
	}
	if r.cfg.SnapLength > 0 && len(data) > r.cfg.SnapLength {
		data = data[:r.cfg.SnapLength]
	}
	var it *item
	select {
	case it = <-r.q.free:
	default:
		r.c.queueFull.Add(1)
		return
	}
	if cap(it.buf) < headroom {
		it.buf = make([]byte, headroom, headroom+2048)
	}
	it.buf = append(it.buf[:headroom], data...)
	it.ts = fr.Timestamp
	r.q.work <- it // never blocks: there are as many items as places
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
