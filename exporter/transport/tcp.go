package transport

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/spanflow/spanflow/internal/reporter"
)

// TCP carries IPFIX to one collector over TCP, or TLS over TCP (RFC 7011
// §10.4). Send never blocks: messages wait in a bounded queue while the
// collector is away, and those that do not fit are dropped and counted. A
// writer goroutine connects with backoff, sends the templates first on each
// new connection, then the queue. When a connection breaks, the messages the
// collector's kernel had not acknowledged are sent again on the next one.
type TCP struct {
	name    string // as configured, for logs and metrics
	addr    string // HOST:PORT
	tls     *tls.Config
	log     *reporter.Limited
	queue   chan queued
	done    chan struct{}
	stopped chan struct{}
	drain   time.Duration

	counter recordCounter // owned by Send's goroutine
	mu      sync.Mutex    // guards templates and stats
	templ   []byte        // template and options template sets, copied from the stream
	stats   TCPStats
}

// TCPStats counts what happened to the messages given to a TCP collector.
type TCPStats struct {
	Messages, Records               uint64 // sent and acknowledged by the collector's kernel
	DroppedMessages, DroppedRecords uint64 // dropped: queue full, or still queued at Close
	Resent                          uint64 // messages sent again after a connection broke
	Connects, Errors                uint64 // connections made; connects or writes that failed
	Queued                          int    // messages waiting now
	Connected                       bool
}

type queued struct {
	msg     []byte
	records uint64 // flow records in msg
}

// Backoff bounds of reconnection.
var (
	backoffMin = 100 * time.Millisecond
	backoffMax = 30 * time.Second
)

// NewTCP starts the writer of one collector. scheme is "tcp" or "tls".
func NewTCP(r *reporter.Reporter, name, scheme, addr string, cfg Configuration) (*TCP, error) {
	t := &TCP{
		name: name, addr: addr, log: reporter.NewLimited(r.Log, 10*time.Second),
		queue: make(chan queued, cfg.QueueSize), done: make(chan struct{}), stopped: make(chan struct{}),
		drain: 5 * time.Second, counter: newRecordCounter(),
	}
	if cfg.QueueSize < 1 {
		return nil, fmt.Errorf("collector %s: queue size %d must be at least 1", name, cfg.QueueSize)
	}
	if scheme == "tls" {
		host, _, _ := net.SplitHostPort(addr)
		t.tls = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
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
	}
	go t.run()
	return t, nil
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

// Name is the collector as configured.
func (t *TCP) Name() string { return t.name }

// Close sends what is queued (for at most 5 s), then stops; messages still
// queued then are counted as dropped.
func (t *TCP) Close() error {
	close(t.done)
	<-t.stopped
	return nil
}

// countingConn counts the bytes written to the TCP connection under TLS, so
// that each message's place in the byte stream is known.
type countingConn struct {
	net.Conn
	n uint64
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n += uint64(n)
	return n, err
}

// inflight is a message written on the current connection, with the stream
// offset just past its last byte.
type inflight struct {
	queued
	end uint64
}

func (t *TCP) run() {
	defer close(t.stopped)
	var pending []queued // sent again first: not acknowledged on a broken connection
	backoff := backoffMin
	stopping := false
	for {
		conn, raw, cc, err := t.dial()
		if err != nil {
			t.mu.Lock()
			t.stats.Errors++
			t.mu.Unlock()
			t.log.Warn("dial", "cannot connect to IPFIX collector", "collector", t.name, "err", err)
			if stopping {
				t.dropRest(pending)
				return
			}
			select {
			case <-t.done:
				stopping = true // one more try, at once
			case <-time.After(backoff):
				backoff = min(backoff*2, backoffMax)
			}
			continue
		}
		backoff = backoffMin
		t.mu.Lock()
		t.stats.Connects++
		t.stats.Connected = true
		t.mu.Unlock()
		if stopping {
			conn.SetWriteDeadline(time.Now().Add(t.drain))
		}
		// A collector sends nothing: a read returning means it closed.
		peerGone := make(chan struct{})
		go func() {
			var b [1]byte
			conn.Read(b[:])
			close(peerGone)
		}()
		var flight []inflight
		sentTemplates := false
		write := func(q queued) error {
			if !sentTemplates {
				if m := t.templateMessage(q.msg); m != nil {
					if _, err := conn.Write(m); err != nil {
						flight = append(flight, inflight{q, cc.n + 1}) // not written
						return err
					}
				}
				sentTemplates = true
			}
			_, err := conn.Write(q.msg)
			flight = append(flight, inflight{q, cc.n})
			return err
		}
		// Acknowledged messages are counted (and forgotten) as they go.
		ackTick := time.NewTicker(100 * time.Millisecond)
		var werr error
		for len(pending) > 0 && werr == nil {
			werr = write(pending[0])
			pending = pending[1:]
		}
		for werr == nil {
			if stopping {
				select {
				case q := <-t.queue:
					werr = write(q)
					continue
				default:
				}
				// Everything is written: wait for the acknowledgements.
				ackTick.Stop()
				t.finish(raw, flight)
				conn.Close()
				t.dropRest(nil)
				return
			}
			select {
			case q := <-t.queue:
				werr = write(q)
			case <-peerGone:
				werr = errors.New("collector closed the connection")
			case <-t.done:
				stopping = true
				conn.SetWriteDeadline(time.Now().Add(t.drain))
			case <-ackTick.C:
				flight = t.acked(raw, flight)
			}
			if len(flight) > 256 {
				flight = t.acked(raw, flight)
			}
		}
		ackTick.Stop()
		// The connection broke: what the collector's kernel did not
		// acknowledge is sent again on the next one.
		unacked := t.unacked(raw, flight)
		pending = append(unacked, pending...)
		conn.Close()
		t.mu.Lock()
		t.stats.Errors++
		t.stats.Connected = false
		t.stats.Resent += uint64(len(unacked))
		t.mu.Unlock()
		t.log.Warn("write", "IPFIX collector connection lost", "collector", t.name, "err", werr, "resending", len(unacked))
		if stopping {
			t.dropRest(pending)
			return
		}
		select {
		case <-t.done:
			stopping = true
		case <-time.After(backoff):
		}
	}
}

func (t *TCP) dial() (net.Conn, *net.TCPConn, *countingConn, error) {
	c, err := net.DialTimeout("tcp", t.addr, 5*time.Second)
	if err != nil {
		return nil, nil, nil, err
	}
	raw := c.(*net.TCPConn)
	cc := &countingConn{Conn: raw}
	if t.tls == nil {
		return cc, raw, cc, nil
	}
	tc := tls.Client(cc, t.tls)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, nil, nil, fmt.Errorf("tls handshake: %w", err)
	}
	tc.SetDeadline(time.Time{})
	// Stream offsets (cc.n) include the handshake, as the kernel's
	// acknowledged byte count does.
	return tc, raw, cc, nil
}

// acked counts and forgets the messages the peer acknowledged.
func (t *TCP) acked(raw *net.TCPConn, flight []inflight) []inflight {
	a, ok := ackedBytes(raw)
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
// acknowledged (to send again), counting the others as sent.
func (t *TCP) unacked(raw *net.TCPConn, flight []inflight) []queued {
	a, ok := ackedBytes(raw)
	if !ok {
		a = 0 // cannot tell: send everything again
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

// finish waits (within the drain time) for the collector to acknowledge
// what was written; what it does not is counted as dropped.
func (t *TCP) finish(raw *net.TCPConn, flight []inflight) {
	deadline := time.Now().Add(t.drain)
	for len(flight) > 0 && time.Now().Before(deadline) {
		if a, ok := ackedBytes(raw); !ok || a >= flight[len(flight)-1].end {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.dropRest(t.unacked(raw, flight))
}

// dropRest counts the given messages and everything still queued as dropped.
func (t *TCP) dropRest(extra []queued) {
	var msgs, recs uint64
	for _, q := range extra {
		msgs++
		recs += q.records
	}
	for done := false; !done; {
		select {
		case q := <-t.queue:
			msgs++
			recs += q.records
		default:
			done = true
		}
	}
	t.mu.Lock()
	t.stats.DroppedMessages += msgs
	t.stats.DroppedRecords += recs
	t.stats.Connected = false
	t.mu.Unlock()
}
