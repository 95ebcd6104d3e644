package transport_test

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/internal/verify"
	"github.com/spanflow/spanflow/exporter/ipfix"
	"github.com/spanflow/spanflow/exporter/transport"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

// flagsBySession decodes each connection's stream on its own (templates
// included) and returns each flow's TCP flags by source port.
func (c *tcpCollector) flagsBySession(t *testing.T) []map[uint16]uint16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[uint16]uint16
	for i, d := range c.data {
		var msgs [][]byte
		for b := *d; len(b) >= 4; {
			n := int(binary.BigEndian.Uint16(b[2:]))
			if n < 16 || n > len(b) {
				break
			}
			msgs = append(msgs, b[:n])
			b = b[n:]
		}
		fs, _, _, err := verify.Goflow2(msgs)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		m := map[uint16]uint16{}
		for _, f := range fs {
			m[f.SrcPort] = f.TCPFlags
		}
		out = append(out, m)
	}
	return out
}

// TestTCPCompatPmacct: a tcp:// collector with ?compat=pmacct gets
// tcpControlBits in 1 octet (NS, which needs the second, left out), also
// in the templates sent again on a new connection; the other collector
// gets the 2 octets.
func TestTCPCompatPmacct(t *testing.T) {
	narrow, plain := newTCPCollector(t, nil), newTCPCollector(t, nil)
	tr, err := transport.New(reporter.NewForTest(nil), transport.Configuration{Collectors: []string{"tcp://" + narrow.addr + "?compat=pmacct", "tcp://" + plain.addr}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := ipfix.DefaultConfiguration()
	cfg.TemplateRefreshMessages, cfg.TemplateRefreshInterval = 1<<30, time.Hour
	enc, err := ipfix.New(nil, cfg, tr)
	if err != nil {
		t.Fatal(err)
	}
	send := func(port uint16) {
		now := time.Now()
		r := flow.Record{SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"),
			SrcPort: port, DstPort: 80, Proto: 6, TCPFlags: 0x100 | uint16(port), Packets: 1, Bytes: 100, Start: now, End: now, EndReason: 1}
		enc.Encode(now, &r)
		enc.Flush(now)
	}
	send(0x12)
	waitFor(t, "the first record at both collectors", func() bool { return tr.TCP()[0].Stats().Records == 1 && tr.TCP()[1].Stats().Records == 1 })
	// A new connection: only the templates the transport sends again
	// let the collector read the next record.
	narrow.kill()
	narrow.start()
	send(0x1b)
	waitFor(t, "the second record at both collectors", func() bool { return tr.TCP()[0].Stats().Records == 2 && tr.TCP()[1].Stats().Records == 2 })
	tr.Close()
	narrow.settle()
	plain.settle()
	got := narrow.flagsBySession(t)
	if len(got) != 2 || got[0][0x12] != 0x12 || got[1][0x1b] != 0x1b {
		t.Errorf("compat=pmacct collector, flags per connection: %v; want [map[18:18] map[27:27]]", got)
	}
	if p := plain.flagsBySession(t); len(p) != 1 || p[0][0x12] != 0x112 || p[0][0x1b] != 0x11b {
		t.Errorf("default collector, flags: %v; want [map[18:274 27:283]]", p)
	}
}
