package transport_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/internal/verify"
	"github.com/spanflow/spanflow/exporter/ipfix"
	"github.com/spanflow/spanflow/exporter/transport"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

// tcpCollector accepts IPFIX over TCP on a fixed address and keeps each
// connection's bytes; kill closes everything as a crashing collector would,
// start listens again on the same address.
type tcpCollector struct {
	t    *testing.T
	addr string
	tls  *tls.Config
	mu   sync.Mutex
	ln   net.Listener
	conn []net.Conn
	data []*[]byte // per connection
	wg   sync.WaitGroup
}

func newTCPCollector(t *testing.T, cfg *tls.Config) *tcpCollector {
	c := &tcpCollector{t: t, tls: cfg, addr: "127.0.0.1:0"}
	c.start()
	c.addr = c.ln.Addr().String()
	t.Cleanup(c.kill)
	return c
}

func (c *tcpCollector) start() {
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.tls != nil {
		ln = tls.NewListener(ln, c.tls)
	}
	c.mu.Lock()
	c.ln = ln
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			buf := new([]byte)
			c.mu.Lock()
			c.conn = append(c.conn, conn)
			c.data = append(c.data, buf)
			c.mu.Unlock()
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				b := make([]byte, 65536)
				for {
					n, err := conn.Read(b)
					c.mu.Lock()
					*buf = append(*buf, b[:n]...)
					c.mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
		}
	}()
}

func (c *tcpCollector) kill() {
	c.mu.Lock()
	if c.ln != nil {
		c.ln.Close()
		c.ln = nil
	}
	for _, conn := range c.conn {
		conn.Close()
	}
	c.conn = nil
	c.mu.Unlock()
	c.wg.Wait()
}

func (c *tcpCollector) received() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, d := range c.data {
		n += len(*d)
	}
	return n
}

// settle waits until no byte arrived for 200 ms.
func (c *tcpCollector) settle() {
	last := -1
	for n := c.received(); n != last; n = c.received() {
		last = n
		time.Sleep(200 * time.Millisecond)
	}
}

// flows decodes each connection's stream on its own with goflow2 (a new
// connection is a new transport session: its templates must come again)
// and counts each flow's source port.
func (c *tcpCollector) flows(t *testing.T) map[uint16]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[uint16]int{}
	for i, d := range c.data {
		var msgs [][]byte
		for b := *d; len(b) >= 4; {
			n := int(binary.BigEndian.Uint16(b[2:]))
			if n < 16 || n > len(b) {
				break // a message cut off when the connection broke
			}
			msgs = append(msgs, b[:n])
			b = b[n:]
		}
		fs, _, _, err := verify.Goflow2(msgs)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		for _, f := range fs {
			seen[f.SrcPort]++
		}
	}
	return seen
}

// sender encodes records numbered by source port into IPFIX, templates in
// the first message only, so that another connection can decode only if
// the transport sends the templates again.
type sender struct {
	enc  *ipfix.Encoder
	next uint16
}

func newSender(t *testing.T, tr ipfix.Transport) *sender {
	cfg := ipfix.DefaultConfiguration()
	cfg.TemplateRefreshMessages, cfg.TemplateRefreshInterval = 1<<30, time.Hour
	enc, err := ipfix.New(nil, cfg, tr)
	if err != nil {
		t.Fatal(err)
	}
	return &sender{enc: enc, next: 1}
}

func (s *sender) send(t *testing.T, n int) {
	now := time.Now()
	for i := 0; i < n; i++ {
		r := flow.Record{SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"),
			SrcPort: s.next, DstPort: 80, Proto: 6, Packets: 1, Bytes: 100, Start: now, End: now, EndReason: 1}
		s.next++
		s.enc.Encode(now, &r)
	}
	s.enc.Flush(now)
}

// sendRefused sends n records to the one collector of cfg, which refuses
// the connection (its TLS handshake fails), waits for the error, closes
// the transport and returns the collector's statistics.
func sendRefused(t *testing.T, cfg transport.Configuration, n int) transport.TCPStats {
	t.Helper()
	tr, err := transport.New(reporter.NewForTest(nil), cfg)
	if err != nil {
		t.Fatal(err)
	}
	newSender(t, tr).send(t, n)
	waitFor(t, "a refused connection", func() bool { return tr.TCP()[0].Stats().Errors > 0 })
	tr.Close()
	return tr.TCP()[0].Stats()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestTCPCollectorRestart: the collector is killed mid-stream and comes back
// on the same port; every record reaches it exactly once, none dropped.
func TestTCPCollectorRestart(t *testing.T) {
	col := newTCPCollector(t, nil)
	tr, err := transport.New(reporter.NewForTest(nil), transport.Configuration{Collectors: []string{"tcp://" + col.addr}, QueueSize: 10000})
	if err != nil {
		t.Fatal(err)
	}
	tcp := tr.TCP()[0]
	s := newSender(t, tr)
	s.send(t, 2000)
	waitFor(t, "the first records acknowledged", func() bool { return tcp.Stats().Records == 2000 })
	col.settle()
	col.kill()
	// Sent while the collector is dead: the first writes go into a
	// connection that is gone, the rest wait in the queue.
	for i := 0; i < 10; i++ {
		s.send(t, 100)
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	col.start()
	s.send(t, 1000)
	s.enc.Close(time.Now())
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	col.settle()
	st := tcp.Stats()
	t.Logf("stats %+v", st)
	seen := col.flows(t)
	for port := uint16(1); port < s.next; port++ {
		if seen[port] != 1 {
			t.Errorf("record %d received %d times", port, seen[port])
		}
	}
	if st.DroppedRecords != 0 || st.Records != uint64(s.next-1) || st.Connects < 2 {
		t.Errorf("stats %+v: want every one of %d records acknowledged, 2 connections or more", st, s.next-1)
	}
}

// TestTCPQueueFull: while the collector is away, the queue keeps the first
// messages and drops the rest; what is lost is exactly what the counter says.
func TestTCPQueueFull(t *testing.T) {
	col := newTCPCollector(t, nil)
	col.kill()
	tr, err := transport.New(reporter.NewForTest(nil), transport.Configuration{Collectors: []string{"tcp://" + col.addr}, QueueSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	tcp := tr.TCP()[0]
	s := newSender(t, tr)
	for i := 0; i < 20; i++ {
		s.send(t, 10)
	}
	col.start()
	waitFor(t, "the queue delivered", func() bool { return tcp.Stats().Queued == 0 })
	s.send(t, 10)
	s.enc.Close(time.Now())
	tr.Close()
	col.settle()
	st := tcp.Stats()
	seen := col.flows(t)
	var got, dup uint64
	for _, n := range seen {
		got++
		if n > 1 {
			dup++
		}
	}
	total := uint64(s.next - 1)
	t.Logf("stats %+v, %d of %d records received", st, got, total)
	if dup != 0 || st.DroppedRecords == 0 || got+st.DroppedRecords != total || st.Records != got {
		t.Errorf("received %d (%d duplicated), dropped %d, acknowledged %d: want received+dropped = %d", got, dup, st.DroppedRecords, st.Records, total)
	}
}

// TestCollectorDownDoesNotStall: with a TCP collector that never answers,
// the UDP and the other TCP collector get every message at once.
func TestCollectorDownDoesNotStall(t *testing.T) {
	live := newTCPCollector(t, nil)
	dead := newTCPCollector(t, nil)
	dead.kill()
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tr, err := transport.New(reporter.NewForTest(nil), transport.Configuration{QueueSize: 10000,
		Collectors: []string{"tcp://" + dead.addr, "tcp://" + live.addr, udp.LocalAddr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	s := newSender(t, tr)
	start := time.Now()
	s.send(t, 3000)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("sending took %v", d)
	}
	waitFor(t, "the live collector acknowledged", func() bool { return tr.TCP()[1].Stats().Records == 3000 })
	udp.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := udp.Read(make([]byte, 65536)); err != nil {
		t.Errorf("udp collector: %v", err)
	}
	tr.Close()
}

// TestTLS: a tls:// collector whose certificate chains to --ca-file gets
// the records; one with a CA it does not know gets nothing, and the failed
// handshakes are counted.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	serverCfg, caPEM := selfSigned(t)
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, caPEM, 0o600)
	col := newTCPCollector(t, serverCfg)
	tr, err := transport.New(reporter.NewForTest(nil), transport.Configuration{Collectors: []string{"tls://" + col.addr}, CAFile: caFile, QueueSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	s := newSender(t, tr)
	s.send(t, 500)
	s.enc.Close(time.Now())
	tr.Close()
	col.settle()
	if seen := col.flows(t); len(seen) != 500 {
		t.Errorf("received %d records over TLS, want 500", len(seen))
	}

	other, _ := selfSigned(t)
	col2 := newTCPCollector(t, other)
	st := sendRefused(t, transport.Configuration{Collectors: []string{"tls://" + col2.addr}, CAFile: caFile, QueueSize: 100}, 10)
	if st.Records != 0 || st.DroppedRecords != 10 {
		t.Errorf("untrusted collector: stats %+v, want nothing sent and 10 records dropped", st)
	}
}

func selfSigned(t *testing.T) (*tls.Config, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "collector"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

var _ = io.EOF
