package verify

import (
	"sync"
	"testing"

	"github.com/spanflow/spanflow/collector/listen"
	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/internal/reporter"
)

// Collector is the spanflow collector's listener (collector/listen) with
// its decoders, counting the flow records it decodes: what an exporter
// delivered, as the collector sees it. Stop and Start stop it and start it
// again on the same addresses, as a restarted collector would be, with
// new decoders (templates are not kept over a restart).
type Collector struct {
	t    testing.TB
	cfg  listen.Configuration
	mu   sync.Mutex
	l    *listen.Listener
	recs int
	// Addrs are the TCP then TLS addresses listened on.
	Addrs []string
}

// NewCollector starts a collector with cfg (its addresses may have port
// 0: Start uses the ports first taken).
func NewCollector(t testing.TB, cfg listen.Configuration) *Collector {
	c := &Collector{t: t, cfg: cfg}
	c.Start()
	for _, a := range c.l.Addrs() {
		c.Addrs = append(c.Addrs, a.String())
	}
	n := len(cfg.TCP)
	c.cfg.TCP, c.cfg.TLS = c.Addrs[:n], c.Addrs[n:]
	t.Cleanup(c.Stop)
	return c
}

// Start starts the collector (again).
func (c *Collector) Start() {
	c.t.Helper()
	d, err := decoders.New(decoders.DefaultConfiguration())
	if err != nil {
		c.t.Fatal(err)
	}
	h := &counting{c: c, d: d}
	l, err := listen.New(reporter.NewForTest(nil), c.cfg, listen.Dependencies{NewHandler: func() listen.Handler { return h }})
	if err != nil {
		c.t.Fatal(err)
	}
	if err := l.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.l = l
	c.mu.Unlock()
}

// Stop stops the collector: its listeners and connections are closed.
func (c *Collector) Stop() {
	c.mu.Lock()
	l := c.l
	c.l = nil
	c.mu.Unlock()
	if l != nil {
		l.Stop()
	}
}

// Records is the number of flow records decoded so far.
func (c *Collector) Records() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.recs
}

type counting struct {
	c  *Collector
	mu sync.Mutex
	d  *decoders.Decoder
}

func (h *counting) Handle(dg decoders.Datagram) {
	h.mu.Lock()
	recs, _, _ := h.d.Decode(dg, nil)
	h.mu.Unlock()
	h.c.mu.Lock()
	h.c.recs += len(recs)
	h.c.mu.Unlock()
}

// StreamConfiguration is a collector listening for IPFIX over TCP on
// tcpAddr (none when empty) and nothing else.
func StreamConfiguration(tcpAddr string) listen.Configuration {
	cfg := listen.DefaultConfiguration()
	cfg.UDP, cfg.TCP = nil, nil
	if tcpAddr != "" {
		cfg.TCP = []string{tcpAddr}
	}
	return cfg
}
