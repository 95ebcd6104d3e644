package ipfix

import (
	"sync/atomic"
)

// Sending in the background: after SendInBackground, the messages the
// encoder finishes go to a goroutine of their own that gives them to the
// transport, in batches, so that sending (over UDP, the kernel's network
// stack, run in the sender's system call) takes place on another core
// while the pipeline meters and encodes the next ones. Messages leave in
// the order they were finished, with the sequence numbers they were given;
// the hand-off is bounded (the encoder waits when batchesInFlight batches
// are queued), so nothing is dropped on the way, and Flush and Close hand
// over what is pending.

// BatchTransport is a Transport that can take several messages at once
// (UDP: one sendmmsg per collector). It returns how many of them it could
// not send, and the first error. It may keep msgs only until SendBatch
// returns.
type BatchTransport interface {
	Transport
	SendBatch(msgs [][]byte) (failed int, err error)
}

const (
	// batchMessages is how many messages the encoder hands over at once:
	// each hand-off may wake the sender, so it is not one per message.
	batchMessages = 32
	// batchesInFlight bounds the messages finished but not yet sent.
	batchesInFlight = 4
)

// msgBatch is a run of messages, copied one after the other into buf.
type msgBatch struct {
	buf  []byte
	ends []int    // end offset of each message in buf
	msgs [][]byte // views of buf, built by the sender
}

type sender struct {
	transport Transport
	batch     BatchTransport // transport, when it takes batches
	full      chan *msgBatch // to the sender, in order
	free      chan *msgBatch // back from it
	cur       *msgBatch      // the encoder's, being filled
	done      chan struct{}
	failed    *atomic.Uint64 // messages the transport failed to send (the encoder's)
	err       error          // the first failure; read after done
}

// SendInBackground starts the goroutine that sends the messages finished
// from now on; Close stops it after everything was sent. Counters then
// counts a failed send when the sender meets it, and Flush and Encode no
// longer return send errors: Close returns the first.
func (e *Encoder) SendInBackground() {
	if e.sender != nil {
		return
	}
	s := &sender{
		transport: e.transport,
		full:      make(chan *msgBatch, batchesInFlight),
		free:      make(chan *msgBatch, batchesInFlight),
		done:      make(chan struct{}),
		failed:    &e.sendFailed,
	}
	s.batch, _ = e.transport.(BatchTransport)
	newBatch := func() *msgBatch {
		return &msgBatch{buf: make([]byte, 0, batchMessages*e.max), ends: make([]int, 0, batchMessages)}
	}
	for range batchesInFlight {
		s.free <- newBatch()
	}
	s.cur = newBatch()
	e.sender = s
	go s.run()
}

// queue adds a finished message to the batch, handing the batch over when
// it is full.
func (s *sender) queue(msg []byte) {
	s.cur.buf = append(s.cur.buf, msg...)
	s.cur.ends = append(s.cur.ends, len(s.cur.buf))
	if len(s.cur.ends) == batchMessages {
		s.handOver()
	}
}

// handOver gives the batch being filled, if it holds any message, to the
// sender; it waits for a free batch when all are queued.
func (s *sender) handOver() {
	if len(s.cur.ends) == 0 {
		return
	}
	s.full <- s.cur
	s.cur = <-s.free
}

// stop hands over what is pending and waits until everything was sent.
func (s *sender) stop() error {
	s.handOver()
	close(s.full)
	<-s.done
	return s.err
}

func (s *sender) run() {
	defer close(s.done)
	for b := range s.full {
		b.msgs = b.msgs[:0]
		start := 0
		for _, end := range b.ends {
			b.msgs = append(b.msgs, b.buf[start:end:end])
			start = end
		}
		s.send(b.msgs)
		b.buf, b.ends = b.buf[:0], b.ends[:0]
		s.free <- b
	}
}

func (s *sender) send(msgs [][]byte) {
	if s.batch != nil {
		if n, err := s.batch.SendBatch(msgs); n > 0 {
			s.fail(uint64(n), err)
		}
		return
	}
	for _, m := range msgs {
		if err := s.transport.Send(m); err != nil {
			s.fail(1, err)
		}
	}
}

func (s *sender) fail(n uint64, err error) {
	if s.err == nil {
		s.err = sendError(err)
	}
	s.failed.Add(n)
}
