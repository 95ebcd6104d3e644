// Package forward re-sends every flow datagram the collector receives,
// unchanged, to other collectors (an existing NMS keeps receiving what it
// received before). With Spoof, the copy keeps the exporter's source address
// and port (raw socket, IPv4, needs CAP_NET_RAW), so the NMS still sees the
// original exporter; otherwise the copy comes from the collector.
package forward

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/internal/reporter"
)

// Configuration of the forwarder.
type Configuration struct {
	Targets []string // HOST:PORT
	Spoof   bool     // keep the exporter's source address (IPv4 exporters and targets)
}

// Validate checks the configuration.
func (c Configuration) Validate() error {
	for _, t := range c.Targets {
		if _, _, err := net.SplitHostPort(t); err != nil {
			return fmt.Errorf("forward target %q: want HOST:PORT: %w", t, err)
		}
	}
	return nil
}

type target struct {
	name  string
	addr  netip.AddrPort
	conn  *net.UDPConn
	sent  prometheus.Counter
	error prometheus.Counter

	mu    sync.Mutex // a batch at a time: the pipeline's workers share the target
	batch batchSender
	msgs  [][]byte
}

// Forwarder is a pipeline tap and a lifecycle component.
type Forwarder struct {
	r       *reporter.Reporter
	cfg     Configuration
	targets []*target
	rawFD   int
	mu      sync.Mutex
	log     *reporter.Limited
}

// New returns a forwarder; Start opens its sockets.
func New(r *reporter.Reporter, cfg Configuration) (*Forwarder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Forwarder{r: r, cfg: cfg, rawFD: -1, log: reporter.NewLimited(r.Log, 10e9)}, nil
}

// Name is used in lifecycle errors.
func (f *Forwarder) Name() string { return "forwarder" }

// Start resolves the targets and opens the sockets.
func (f *Forwarder) Start() error {
	sent := f.r.Factory("forward").CounterVec("datagrams_total", "Datagrams forwarded, by target.", "target")
	errs := f.r.Factory("forward").CounterVec("errors_total", "Datagrams that could not be forwarded, by target.", "target")
	for _, t := range f.cfg.Targets {
		ua, err := net.ResolveUDPAddr("udp", t)
		if err != nil {
			return fmt.Errorf("forward target %s: %w", t, err)
		}
		conn, err := net.DialUDP("udp", nil, ua)
		if err != nil {
			return fmt.Errorf("forward target %s: %w", t, err)
		}
		tg := &target{name: t, addr: ua.AddrPort(), conn: conn,
			sent: sent.WithLabelValues(t), error: errs.WithLabelValues(t)}
		if tg.batch, err = newBatchSender(conn); err != nil {
			conn.Close()
			return fmt.Errorf("forward target %s: %w", t, err)
		}
		f.targets = append(f.targets, tg)
	}
	if f.cfg.Spoof {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			f.Stop()
			return fmt.Errorf("forward with the exporter's source address needs a raw socket (root or CAP_NET_RAW): %w", err)
		}
		f.rawFD = fd
	}
	return nil
}

// TapBatch forwards datagrams to every target, in order: to each with one
// system call where it can (sendmmsg, runs of equal lengths as one UDP GSO
// send), as Tap would one by one.
func (f *Forwarder) TapBatch(dgs []decoders.Datagram) {
	for _, t := range f.targets {
		t.mu.Lock()
		t.msgs = t.msgs[:0]
		for _, dg := range dgs {
			if f.spoofs(t, dg) {
				t.flush(f)
				f.sendTo(t, dg)
				continue
			}
			t.msgs = append(t.msgs, dg.Payload)
		}
		t.flush(f)
		t.mu.Unlock()
	}
}

// flush sends the datagrams t.msgs holds, counting each.
func (t *target) flush(f *Forwarder) {
	if len(t.msgs) > 0 {
		t.sent.Add(float64(t.batch(t.msgs, func(err error) { f.failed(t, err) })))
	}
	t.msgs = t.msgs[:0]
}

// spoofs reports whether dg goes to t from the exporter's address (the raw
// socket): IPv4 exporters to IPv4 targets, with Spoof.
func (f *Forwarder) spoofs(t *target, dg decoders.Datagram) bool {
	return f.rawFD >= 0 && dg.Source.Addr().Unmap().Is4() && t.addr.Addr().Unmap().Is4()
}

// failed counts and logs a datagram t could not be sent.
func (f *Forwarder) failed(t *target, err error) {
	t.error.Inc()
	f.log.Warn("forward/"+t.name, "forward datagram", "target", t.name, "err", err)
}

// Tap forwards one datagram to every target.
func (f *Forwarder) Tap(dg decoders.Datagram) {
	for _, t := range f.targets {
		f.sendTo(t, dg)
	}
}

// sendTo forwards one datagram to t, counting it.
func (f *Forwarder) sendTo(t *target, dg decoders.Datagram) {
	var err error
	if f.spoofs(t, dg) {
		err = f.sendSpoofed(dg.Source, t.addr, dg.Payload)
	} else {
		_, err = t.conn.Write(dg.Payload)
	}
	if err != nil {
		f.failed(t, err)
		return
	}
	t.sent.Inc()
}

// sendSpoofed sends an IPv4/UDP packet built by hand with the exporter as source.
func (f *Forwarder) sendSpoofed(src, dst netip.AddrPort, payload []byte) error {
	if len(payload) > 65535-28 {
		return errors.New("datagram too large")
	}
	pkt := make([]byte, 28+len(payload))
	total := len(pkt)
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], uint16(total))
	pkt[8] = 64 // TTL
	pkt[9] = 17 // UDP
	s4, d4 := src.Addr().Unmap().As4(), dst.Addr().Unmap().As4()
	copy(pkt[12:16], s4[:])
	copy(pkt[16:20], d4[:])
	binary.BigEndian.PutUint16(pkt[10:], checksum(pkt[:20], 0))
	u := pkt[20:]
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	copy(u[8:], payload)
	// UDP checksum over the pseudo-header.
	var pseudo uint32
	pseudo += uint32(s4[0])<<8 | uint32(s4[1])
	pseudo += uint32(s4[2])<<8 | uint32(s4[3])
	pseudo += uint32(d4[0])<<8 | uint32(d4[1])
	pseudo += uint32(d4[2])<<8 | uint32(d4[3])
	pseudo += 17 + uint32(8+len(payload))
	c := checksum(u, pseudo)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
	f.mu.Lock()
	defer f.mu.Unlock()
	return unix.Sendto(f.rawFD, pkt, 0, &unix.SockaddrInet4{Addr: d4})
}

func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// Stop closes the sockets.
func (f *Forwarder) Stop() error {
	var errs []error
	for _, t := range f.targets {
		errs = append(errs, t.conn.Close())
	}
	f.targets = nil
	if f.rawFD >= 0 {
		errs = append(errs, unix.Close(f.rawFD))
		f.rawFD = -1
	}
	return errors.Join(errs...)
}
