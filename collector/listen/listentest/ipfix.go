package listentest

import (
	"net/netip"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/ipfix"
	"github.com/spanflow/spanflow/internal/flow"
)

// messages collects what the encoder sends.
type messages [][]byte

func (m *messages) Send(msg []byte) error {
	*m = append(*m, append([]byte(nil), msg...))
	return nil
}

// IPFIX returns the messages the spanflow exporter's encoder makes of n
// TCP flows from 10.0.0.1 to 10.0.0.2:443 (source ports 1, 2, ...),
// perMessage records in each (the last may have fewer); the first message
// carries the templates too. The messages are for streams (TCP, TLS): the
// MTU is set high enough for perMessage records after the templates.
func IPFIX(t testing.TB, n, perMessage int) [][]byte {
	t.Helper()
	var out messages
	cfg := ipfix.DefaultConfiguration()
	cfg.MTU = max(cfg.MTU, 1024+perMessage*128)
	enc, err := ipfix.New(nil, cfg, &out)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range n {
		r := flow.Record{SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"),
			SrcPort: uint16(1 + i), DstPort: 443, Proto: 6, Packets: 2, Bytes: 120, Start: now, End: now, EndReason: 3}
		if err := enc.Encode(now, &r); err != nil {
			t.Fatal(err)
		}
		if (i+1)%perMessage == 0 {
			if err := enc.Flush(now); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := enc.Flush(now); err != nil {
		t.Fatal(err)
	}
	return out
}
