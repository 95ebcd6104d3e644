package transport

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spanflow/spanflow/internal/reporter"
)

// TCP carries IPFIX to one collector over TCP, or TLS over TCP (RFC 7011
// §10.4). Send never blocks: messages wait in a bounded queue while the
// collector is away, and those that do not fit are dropped and counted. A
// writer goroutine connects with backoff, sends the templates first on each
// new connection, then the queue. A message counts as sent once the
// collector's kernel acknowledged it on a connection the collector accepted
// (for TLS: its handshake done on both sides). When a connection breaks, the
// messages not acknowledged are sent again on the next one.
type TCP struct {
	name    string // as configured, for logs and metrics
	addr    string // HOST:PORT
	tls     *tls.Config
	tickets *ticketSignal // TLS 1.3: says when the collector accepted us
	log     *reporter.Limited
	queue   chan queued
	done    chan struct{}
	stopped chan struct{}
	close   sync.Once
	drain   time.Duration
	// drainUntil is when Close gives up on what is not delivered; set
	// before done is closed.
	drainUntil time.Time

	counter recordCounter // owned by Send's goroutine
	mu      sync.Mutex    // guards templates and stats
	templ   []byte        // template and options template sets, copied from the stream
	stats   TCPStats
}

// TCPStats counts what happened to the messages given to a TCP collector.
// Every flow record given to Send ends in Records or DroppedRecords (or is
// still queued or in flight).
type TCPStats struct {
	Messages, Records               uint64 // sent and acknowledged by the collector's kernel
	DroppedMessages, DroppedRecords uint64 // not delivered: queue full, or still queued or unacknowledged at Close
	Resent                          uint64 // messages sent again after a connection broke
	Connects, Errors                uint64 // connections the collector accepted; connects, handshakes or connections that failed
	// Resets are connections the collector reset rather than closed in
	// order: a collector process that ends with data unread in its socket
	// does so, and that data, acknowledged by its kernel, is lost without
	// the exporter knowing how much.
	Resets    uint64
	Queued    int // messages waiting now
	Connected bool
}

type queued struct {
	msg     []byte
	records uint64 // flow records in msg
}

// Backoff bounds of reconnection; drainRetry bounds it while Close waits.
var (
	backoffMin = 100 * time.Millisecond
	backoffMax = 30 * time.Second
	drainRetry = 250 * time.Millisecond
)

// DrainTimeout is how long Close keeps trying to deliver what is queued:
// connecting again and again if the collector is away.
const DrainTimeout = 5 * time.Second

// tls13Accept is how long a TLS 1.3 connection must stay open before the
// collector is taken to have accepted it when it sends no session ticket:
// in TLS 1.3 the client's handshake ends before the server has checked the
// client's certificate, and a refusal comes back within a round trip.
const tls13Accept = time.Second

// NewTCP starts the writer of one collector. scheme is "tcp" or "tls".
func NewTCP(r *reporter.Reporter, name, scheme, addr string, cfg Configuration) (*TCP, error) {
	t := &TCP{
		name: name, addr: addr, log: reporter.NewLimited(r.Log, 10*time.Second),
		queue: make(chan queued, max(cfg.QueueSize, 0)), done: make(chan struct{}), stopped: make(chan struct{}),
		drain: DrainTimeout, counter: newRecordCounter(),
	}
	if cfg.QueueSize < 1 {
		return nil, fmt.Errorf("collector %s: queue size %d must be at least 1", name, cfg.QueueSize)
	}
	if scheme == "tls" {
		host, _, _ := net.SplitHostPort(addr)
		t.tickets = &ticketSignal{}
		t.tls = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12, ClientSessionCache: t.tickets}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("collector %s: read CA file: %w", name, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("collector %s: CA file %s holds no PEM certificate", name, cfg.CAFile)
			}
			t.tls.RootCAs = pool
		}
		if cfg.CertFile != "" || cfg.KeyFile != "" {
			cert, err := cfg.clientCertificate()
			if err != nil {
				return nil, fmt.Errorf("collector %s: %w", name, err)
			}
			// Presented whatever CAs the collector names: it says why it
			// refuses one, where Go would silently send none.
			t.tls.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
		}
	}
	go t.run()
	return t, nil
}

// ticketSignal is the TLS client's session cache, used only to learn that
// the collector sent a session ticket: a TLS 1.3 server sends it once it
// has checked the client's certificate. Sessions are not resumed.
type ticketSignal struct {
	mu sync.Mutex
	ch chan struct{}
}

func (s *ticketSignal) Get(string) (*tls.ClientSessionState, bool) { return nil, false }

func (s *ticketSignal) Put(_ string, cs *tls.ClientSessionState) {
	if cs == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.ch:
	default:
		close(s.ch)
	}
}

// next is closed when the next connection gets a ticket.
func (s *ticketSignal) next() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ch = make(chan struct{})
	return s.ch
}

// Send queues a copy of msg; it never blocks.
func (t *TCP) Send(msg []byte) error {
	q := queued{msg: append([]byte(nil), msg...)}
	var sets []byte
	q.records, sets = t.counter.inspect(q.msg)
	if len(sets) > 0 {
		t.mu.Lock()
		t.templ = sets
		t.mu.Unlock()
	}
	select {
	case t.queue <- q:
	default:
		t.mu.Lock()
		t.stats.DroppedMessages++
		t.stats.DroppedRecords += q.records
		t.mu.Unlock()
		t.log.Warn("queue", "collector away and its queue full: IPFIX message dropped", "collector", t.name)
	}
	return nil
}

// recordCounter counts the flow records of IPFIX messages from the
// templates it saw in the same stream.
type recordCounter struct {
	tmplLen  map[uint16]int  // record length per template id
	tmplFlow map[uint16]bool // data (not options) template
}

func newRecordCounter() recordCounter {
	return recordCounter{tmplLen: map[uint16]int{}, tmplFlow: map[uint16]bool{}}
}

// inspect returns the number of flow records of msg and its template sets
// (a copy; nil when it has none).
func (t *recordCounter) inspect(msg []byte) (uint64, []byte) {
	var records uint64
	var sets []byte
	for b := msg[min(16, len(msg)):]; len(b) >= 4; {
		id, n := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if n < 4 || n > len(b) {
			break
		}
		set := b[4:n]
		switch {
		case id == 2 || id == 3:
			sets = append(sets, b[:n]...)
			for len(set) >= 4 {
				tid, fields := binary.BigEndian.Uint16(set), int(binary.BigEndian.Uint16(set[2:]))
				hdr := 4
				if id == 3 {
					hdr = 6
				}
				if fields == 0 || len(set) < hdr {
					break
				}
				length, p := 0, hdr
				for i := 0; i < fields && p+4 <= len(set); i++ {
					fid, flen := binary.BigEndian.Uint16(set[p:]), int(binary.BigEndian.Uint16(set[p+2:]))
					length += flen
					p += 4
					if fid&0x8000 != 0 {
						p += 4
					}
				}
				t.tmplLen[tid], t.tmplFlow[tid] = length, id == 2
				set = set[min(p, len(set)):]
			}
		case id >= 256:
			if l := t.tmplLen[id]; l > 0 && t.tmplFlow[id] {
				records += uint64(len(set) / l)
			}
		}
		b = b[n:]
	}
	return records, sets
}

// templateMessage is a message holding only the templates, with the header
// of next (its domain and sequence number: it carries no data record).
func (t *TCP) templateMessage(next []byte) []byte {
	t.mu.Lock()
	sets := t.templ
	t.mu.Unlock()
	if len(sets) == 0 || len(next) < 16 {
		return nil
	}
	m := make([]byte, 16, 16+len(sets))
	copy(m, next[:16])
	binary.BigEndian.PutUint32(m[4:], uint32(time.Now().Unix()))
	m = append(m, sets...)
	binary.BigEndian.PutUint16(m[2:], uint16(len(m)))
	return m
}

// Stats returns the counters.
func (t *TCP) Stats() TCPStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	s.Queued = len(t.queue)
	return s
}

// transport is "tls" or "tcp".
func (t *TCP) transport() string {
	if t.tls != nil {
		return "tls"
	}
	return "tcp"
}

// Name is the collector as configured.
func (t *TCP) Name() string { return t.name }

// Close sends what is queued, connecting again if the collector is away,
// for at most DrainTimeout; what is still queued or unacknowledged then is
// counted as dropped.
func (t *TCP) Close() error {
	t.close.Do(func() {
		t.drainUntil = time.Now().Add(t.drain)
		close(t.done)
	})
	<-t.stopped
	return nil
}

// countingConn counts the bytes written to the TCP connection under TLS, so
// that each message's place in the byte stream is known.
type countingConn struct {
	net.Conn
	n atomic.Uint64 // a TLS reader may write too (alerts, key updates)
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.Add(uint64(n))
	return n, err
}

// inflight is a message written on the current connection, with the stream
// offset just past its last byte.
type inflight struct {
	queued
	end uint64
}

// link is one connection to the collector.
type link struct {
	conn net.Conn // messages are written here: the TCP connection, or TLS over it
	raw  *net.TCPConn
	cc   *countingConn
	// accepted: the collector took the connection (TCP: connected; TLS
	// 1.2: handshake done, the server's Finished comes after it checked
	// our certificate; TLS 1.3: see isAccepted). Nothing written before
	// counts as sent.
	accepted bool
	counted  bool            // in the stats as a connection
	ticket   <-chan struct{} // TLS 1.3: closed when a session ticket came
	up       time.Time       // when the handshake ended
	gone     chan struct{}   // closed when a read returned: the collector closed the connection
	readErr  error           // why, once gone is closed
}

// isAccepted says whether the collector accepted the connection. In TLS
// 1.3 the client's handshake ends before the server has checked the
// client's certificate: the connection is accepted when the server's
// session ticket comes (sent after that check), or when it stayed open
// tls13Accept without one.
func (l *link) isAccepted() bool {
	if l.accepted {
		return true
	}
	select {
	case <-l.ticket:
		l.accepted = true
		return true
	default:
	}
	select {
	case <-l.gone:
		return false
	default:
	}
	l.accepted = time.Since(l.up) >= tls13Accept
	return l.accepted
}

// errDrained ends a connection at the end of the drain.
var errDrained = errors.New("drain time over")

func (t *TCP) run() {
	defer close(t.stopped)
	var pending []queued // sent again first: not acknowledged on a broken connection
	backoff := backoffMin
	var until time.Time // once Close was called: the end of the drain
	for {
		if !until.IsZero() && (len(pending)+len(t.queue) == 0 || !time.Now().Before(until)) {
			t.dropRest(pending)
			return
		}
		l, err := t.dial(until)
		if err != nil {
			t.mu.Lock()
			t.stats.Errors++
			t.mu.Unlock()
			t.log.Warn("dial", "cannot connect to IPFIX collector", "collector", t.name, "err", err)
			until, backoff = t.pause(until, backoff)
			continue
		}
		var done bool
		if pending, done = t.serve(l, pending, &until); done {
			t.dropRest(nil)
			return
		}
		if l.accepted {
			backoff = backoffMin // a refusing collector is tried less and less often
		}
		until, backoff = t.pause(until, backoff)
	}
}

// pause waits before connecting again: the backoff, or, once Close was
// called, at most drainRetry (and not past the drain). It returns the end
// of the drain (zero until Close) and the next backoff.
func (t *TCP) pause(until time.Time, backoff time.Duration) (time.Time, time.Duration) {
	if until.IsZero() {
		select {
		case <-t.done:
			return t.drainUntil, backoffMin // try again at once
		case <-time.After(backoff):
			return until, min(backoff*2, backoffMax)
		}
	}
	if d := min(backoff, drainRetry, time.Until(until)); d > 0 {
		time.Sleep(d)
	}
	return until, min(backoff*2, drainRetry)
}

// serve writes the pending messages, then the queue, on l until the
// connection breaks or, once Close was called, everything is written and
// acknowledged (done). It returns the messages to send again.
func (t *TCP) serve(l *link, pending []queued, until *time.Time) ([]queued, bool) {
	if l.isAccepted() {
		t.countConnection(l)
	}
	// A collector sends nothing: a read returning means it closed. Reading
	// also takes in a TLS 1.3 server's session ticket.
	go func() {
		var b [1]byte
		_, l.readErr = l.conn.Read(b[:])
		close(l.gone)
	}()
	// Close bounds a write stuck on a collector that stopped reading.
	closed := make(chan struct{})
	defer close(closed)
	go func() {
		select {
		case <-t.done:
			l.conn.SetWriteDeadline(t.drainUntil)
		case <-closed:
		}
	}()
	var flight []inflight
	sentTemplates := false
	write := func(q queued) error {
		if !sentTemplates {
			if m := t.templateMessage(q.msg); m != nil {
				if _, err := l.conn.Write(m); err != nil {
					flight = append(flight, inflight{q, l.cc.n.Load() + 1}) // not written
					return err
				}
			}
			sentTemplates = true
		}
		_, err := l.conn.Write(q.msg)
		end := l.cc.n.Load()
		if err != nil {
			end++ // not wholly written: never counted as acknowledged
		}
		flight = append(flight, inflight{q, end})
		return err
	}
	// Acknowledged messages are counted (and forgotten) as they go.
	ackTick := time.NewTicker(100 * time.Millisecond)
	defer ackTick.Stop()
	var werr error
	for len(pending) > 0 && werr == nil {
		werr = write(pending[0])
		pending = pending[1:]
	}
	for werr == nil {
		if !until.IsZero() {
			select {
			case q := <-t.queue:
				werr = write(q)
				continue
			default:
			}
			// Everything is written: wait for the acknowledgements.
			if flight = t.acked(l, flight); len(flight) == 0 {
				l.conn.Close()
				<-l.gone
				return nil, true
			}
			if !time.Now().Before(*until) {
				werr = errDrained
				break
			}
			select {
			case <-l.gone:
				werr = goneError(l.readErr)
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		select {
		case q := <-t.queue:
			werr = write(q)
		case <-l.gone:
			werr = goneError(l.readErr)
		case <-t.done:
			*until = t.drainUntil
		case <-ackTick.C:
			flight = t.acked(l, flight)
		}
		if len(flight) > 256 {
			flight = t.acked(l, flight)
		}
	}
	select {
	case <-l.gone:
		if errors.Is(l.readErr, io.EOF) || errors.Is(l.readErr, io.ErrUnexpectedEOF) {
			flight = t.settle(l, flight)
		}
	default:
	}
	// The connection broke: what the collector's kernel did not
	// acknowledge is sent again on the next one.
	unacked := t.unacked(l, flight)
	pending = append(unacked, pending...)
	// A reset of a connection the collector had refused loses nothing:
	// every message written on it is sent again.
	reset := l.accepted && l.reset(werr)
	l.raw.Close() // not TLS's Close: its close_notify may wait 5 s on a stuck connection
	<-l.gone      // its reader is done: a late ticket cannot speak for the next connection
	t.mu.Lock()
	if werr != errDrained {
		t.stats.Errors++
	}
	if reset {
		t.stats.Resets++
	}
	t.stats.Connected = false
	t.stats.Resent += uint64(len(unacked))
	t.mu.Unlock()
	switch {
	case werr == errDrained:
	case !l.accepted:
		t.log.Warn("refused", "IPFIX collector refused the connection", "collector", t.name, "err", werr, "resending", len(unacked))
	case reset:
		t.log.Warn("reset", "IPFIX collector reset the connection: records its kernel acknowledged but it had not read, if any, are lost, uncounted",
			"collector", t.name, "err", werr, "resending", len(unacked))
	default:
		t.log.Warn("write", "IPFIX collector connection lost", "collector", t.name, "err", werr, "resending", len(unacked))
	}
	// Bounded like the queue: a collector that takes connections and
	// refuses them would otherwise make it grow without end.
	if over := len(pending) - cap(t.queue); over > 0 {
		t.drop(pending[len(pending)-over:])
		pending = pending[:len(pending)-over]
	}
	return pending, false
}

// settleTime bounds the wait for acknowledgements after the collector
// closed its side of the connection.
const settleTime = time.Second

// settle waits, after the collector closed its side of the connection in
// order, for it to acknowledge what was written: a collector that stops by
// closing its side then reading to the end takes it all, and what it took
// must not be sent again. One that closed both sides resets the
// connection as soon as more data comes: that ends the wait.
func (t *TCP) settle(l *link, flight []inflight) []inflight {
	for deadline := time.Now().Add(settleTime); len(flight) > 0 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if flight = t.acked(l, flight); len(flight) == 0 {
			break
		}
		if closed, ok := resetState(l.raw); closed || !ok {
			break
		}
	}
	return flight
}

// reset says whether the collector reset the connection (rather than
// closed it after reading everything).
func (l *link) reset(werr error) bool {
	select {
	case <-l.gone:
		return errors.Is(l.readErr, syscall.ECONNRESET)
	default:
	}
	if closed, ok := resetState(l.raw); ok {
		return closed
	}
	return errors.Is(werr, syscall.ECONNRESET)
}

// goneError says why the collector's side of the connection ended.
func goneError(err error) error {
	if err == nil {
		return errors.New("collector sent data: not an IPFIX collector")
	}
	return fmt.Errorf("collector closed the connection: %w", err)
}

func (t *TCP) countConnection(l *link) {
	if l.counted {
		return
	}
	l.counted = true
	t.mu.Lock()
	t.stats.Connects++
	t.stats.Connected = true
	t.mu.Unlock()
}

// dial connects (and, for TLS, runs the handshake), within the drain once
// Close was called.
func (t *TCP) dial(until time.Time) (*link, error) {
	limit := func(d time.Duration) time.Duration {
		if until.IsZero() {
			return d
		}
		return max(min(d, time.Until(until)), time.Millisecond)
	}
	c, err := net.DialTimeout("tcp", t.addr, limit(5*time.Second))
	if err != nil {
		return nil, err
	}
	raw := c.(*net.TCPConn)
	cc := &countingConn{Conn: raw}
	l := &link{raw: raw, cc: cc, gone: make(chan struct{}), up: time.Now()}
	if t.tls == nil {
		l.conn, l.accepted = cc, true
		return l, nil
	}
	l.ticket = t.tickets.next()
	tc := tls.Client(cc, t.tls)
	tc.SetDeadline(time.Now().Add(limit(10 * time.Second)))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	tc.SetDeadline(time.Time{})
	// Stream offsets (cc.n) include the handshake, as the kernel's
	// acknowledged byte count does.
	l.conn, l.up = tc, time.Now()
	l.accepted = tc.ConnectionState().Version < tls.VersionTLS13
	return l, nil
}

// acked counts and forgets the messages the peer acknowledged, once it
// accepted the connection.
func (t *TCP) acked(l *link, flight []inflight) []inflight {
	if !l.isAccepted() {
		return flight
	}
	t.countConnection(l)
	a, ok := ackedBytes(l.raw)
	if !ok {
		return flight
	}
	i := 0
	var recs uint64
	for i < len(flight) && flight[i].end <= a {
		recs += flight[i].records
		i++
	}
	t.mu.Lock()
	t.stats.Messages += uint64(i)
	t.stats.Records += recs
	t.mu.Unlock()
	return append(flight[:0], flight[i:]...)
}

// unacked returns the messages written whose bytes were not all
// acknowledged on an accepted connection (to send again), counting the
// others as sent.
func (t *TCP) unacked(l *link, flight []inflight) []queued {
	a, ok := ackedBytes(l.raw)
	if !ok || !l.isAccepted() {
		a = 0 // cannot tell, or refused: send everything again
	}
	var out []queued
	var msgs, recs uint64
	for _, f := range flight {
		if f.end <= a {
			msgs++
			recs += f.records
		} else {
			out = append(out, f.queued)
		}
	}
	t.mu.Lock()
	t.stats.Messages += msgs
	t.stats.Records += recs
	t.mu.Unlock()
	return out
}

// drop counts msgs as dropped.
func (t *TCP) drop(msgs []queued) {
	var recs uint64
	for _, q := range msgs {
		recs += q.records
	}
	t.mu.Lock()
	t.stats.DroppedMessages += uint64(len(msgs))
	t.stats.DroppedRecords += recs
	t.mu.Unlock()
}

// dropRest counts the given messages and everything still queued as dropped.
func (t *TCP) dropRest(extra []queued) {
	for done := false; !done; {
		select {
		case q := <-t.queue:
			extra = append(extra, q)
		default:
			done = true
		}
	}
	t.drop(extra)
	t.mu.Lock()
	t.stats.Connected = false
	t.mu.Unlock()
	if len(extra) > 0 {
		t.log.Warn("drop", "IPFIX messages not delivered at stop: counted as dropped", "collector", t.name, "messages", len(extra))
	}
}
