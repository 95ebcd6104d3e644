package exporter

import (
	"sync"
	"time"

	"github.com/spanflow/spanflow/exporter/ipfix"
)

// DefaultPcapRate is how many IPFIX messages a second a capture file
// (--pcap) is exported at by default. A file is metered far faster than
// it was captured, and its flows all end within seconds: sent at once,
// 95,000 flows in 6,400 messages overflowed the socket buffer of a
// Debian nfcapd left at its defaults, which stored 53 % of them. At 500
// messages a second (about 0.7 MB/s, 7,000 flows/s) nfcapd keeps every
// one, also on a loaded machine where 1,000 lost 1 % (docs/exporter.md,
// "Replaying a capture").
const DefaultPcapRate = 500

// pacedTransport gives at most rate messages a second to out, in bursts
// of at most burst: the sender goroutine sleeps between them, and the
// encoder waits when the sender's batches are all queued. Once unpaced
// (SIGINT or SIGTERM), it gives every message to out at once.
type pacedTransport struct {
	out      ipfix.Transport
	batch    ipfix.BatchTransport // out, when it takes batches
	interval time.Duration        // between two messages
	burst    int
	next     time.Time // when the next burst may leave

	unpaced    chan struct{} // closed by unpace
	unpaceOnce sync.Once
}

func newPacedTransport(out ipfix.Transport, rate int) *pacedTransport {
	p := &pacedTransport{out: out, interval: time.Second / time.Duration(rate), burst: max(1, min(32, rate/100)),
		unpaced: make(chan struct{})}
	p.batch, _ = out.(ipfix.BatchTransport)
	return p
}

// unpace ends the pacing, also of a wait under way: a replay that was
// told to stop sends what its meter holds at once, instead of taking
// minutes at the paced rate.
func (p *pacedTransport) unpace() { p.unpaceOnce.Do(func() { close(p.unpaced) }) }

// wait waits for n messages' turn.
func (p *pacedTransport) wait(n int) {
	select {
	case <-p.unpaced:
		return
	default:
	}
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	} else {
		t := time.NewTimer(p.next.Sub(now))
		select {
		case <-t.C:
		case <-p.unpaced:
			t.Stop()
			return
		}
	}
	p.next = p.next.Add(time.Duration(n) * p.interval)
}

func (p *pacedTransport) Send(msg []byte) error {
	p.wait(1)
	return p.out.Send(msg)
}

// SendBatch sends msgs in bursts: sendmmsg still sends several at once.
func (p *pacedTransport) SendBatch(msgs [][]byte) (failed int, err error) {
	for len(msgs) > 0 {
		n := min(len(msgs), p.burst)
		p.wait(n)
		var f int
		var e error
		if p.batch != nil {
			f, e = p.batch.SendBatch(msgs[:n])
		} else {
			for _, m := range msgs[:n] {
				if se := p.out.Send(m); se != nil {
					f++
					e = firstErr(e, se)
				}
			}
		}
		failed += f
		err = firstErr(err, e)
		msgs = msgs[n:]
	}
	return failed, err
}

// firstErr is first, else next.
func firstErr(first, next error) error {
	if first != nil {
		return first
	}
	return next
}
