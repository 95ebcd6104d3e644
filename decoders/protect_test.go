package decoders_test

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/spanflow/spanflow/bench/ipfixgen"
	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/decoders/reason"
	"github.com/spanflow/spanflow/internal/flow"
)

func dg(src string, p []byte, at time.Time) decoders.Datagram {
	return decoders.Datagram{Source: netip.MustParseAddrPort(src), Payload: p, Received: at}
}

// withTemplateID rewrites a generated message's template (or data set) id.
func withTemplateID(msg []byte, id uint16) []byte {
	m := append([]byte(nil), msg...)
	if binary.BigEndian.Uint16(m[16:]) == 2 {
		binary.BigEndian.PutUint16(m[20:], id)
	} else {
		binary.BigEndian.PutUint16(m[16:], id)
	}
	return m
}

func TestDataBeforeTemplateIsHeld(t *testing.T) {
	dec, _ := decoders.New(decoders.DefaultConfiguration())
	g := ipfixgen.New(1, 5)
	tpl := g.Template()
	now := time.Now()
	recs, res, err := dec.Decode(dg("192.0.2.1:1", g.AppendData(nil), now), nil)
	if err != nil || len(recs) != 0 || res.Held != 1 {
		t.Fatalf("data before template: %d records, held %d, err %v", len(recs), res.Held, err)
	}
	recs, res, err = dec.Decode(dg("192.0.2.1:1", tpl, now), nil)
	if err != nil || len(recs) != 5 {
		t.Fatalf("template after data: %d records (want the 5 held), err %v", len(recs), err)
	}
	if recs[0].SrcAddr != netip.MustParseAddr("10.0.0.0") || recs[0].TCP.RTTServer != 120*time.Microsecond {
		t.Errorf("held record decoded wrong: %+v", recs[0])
	}
	// Another exporter's template does not apply (state is per exporter).
	_, res, _ = dec.Decode(dg("192.0.2.2:1", g.AppendData(nil), now), nil)
	if res.Held != 1 {
		t.Errorf("data from a second exporter used the first one's template")
	}
	// Held data expires, counted.
	_, res, _ = dec.Decode(dg("192.0.2.2:1", g.AppendData(nil), now.Add(time.Hour)), nil)
	if res.Expired != 1 {
		t.Errorf("expired = %d, want 1", res.Expired)
	}
}

func TestTemplateAndExporterLimits(t *testing.T) {
	cfg := decoders.DefaultConfiguration()
	cfg.MaxTemplatesPerExporter, cfg.MaxExporters = 3, 2
	dec, _ := decoders.New(cfg)
	g := ipfixgen.New(1, 5)
	now := time.Now()
	var limited int
	for id := uint16(256); id < 266; id++ {
		_, res, err := dec.Decode(dg("192.0.2.1:1", withTemplateID(g.Template(), id), now), nil)
		if reason.Of(err) == reason.TemplateLimit {
			limited++
		}
		if res.Templates > 3 {
			t.Fatalf("exporter holds %d templates, limit 3", res.Templates)
		}
	}
	if limited != 7 {
		t.Errorf("%d templates refused, want 7", limited)
	}
	dec.Decode(dg("192.0.2.2:1", g.Template(), now), nil)
	// Both deliver flows: neither gives its place to a newcomer.
	for _, src := range []string{"192.0.2.1:1", "192.0.2.2:1"} {
		if recs, _, err := dec.Decode(dg(src, g.AppendData(nil), now), nil); err != nil || len(recs) != 5 {
			t.Fatalf("%s: %d flows, %v", src, len(recs), err)
		}
	}
	if _, _, err := dec.Decode(dg("192.0.2.3:1", g.Template(), now), nil); reason.Of(err) != reason.ExporterLimit {
		t.Errorf("third exporter: %v, want the exporter limit", err)
	}
}

func TestSequenceLoss(t *testing.T) {
	dec, _ := decoders.New(decoders.DefaultConfiguration())
	g := ipfixgen.New(1, 10)
	now := time.Now()
	dec.Decode(dg("192.0.2.1:1", g.Template(), now), nil)
	dec.Decode(dg("192.0.2.1:1", g.AppendData(nil), now), nil)
	g.AppendData(nil) // lost: 10 records
	g.AppendData(nil) // lost: 10 records
	_, res, err := dec.Decode(dg("192.0.2.1:1", g.AppendData(nil), now), nil)
	if err != nil || res.Lost != 20 {
		t.Errorf("lost = %d (err %v), want 20 records", res.Lost, err)
	}
	var recs []flow.Record
	recs, res, _ = dec.Decode(dg("192.0.2.1:1", g.AppendData(nil), now), recs)
	if res.Lost != 0 || len(recs) != 10 {
		t.Errorf("in-order message: lost %d, %d records", res.Lost, len(recs))
	}
}

func TestHeldDataExpiresWithoutTraffic(t *testing.T) {
	cfg := decoders.DefaultConfiguration()
	cfg.PendingTimeout = time.Second
	dec, _ := decoders.New(cfg)
	g := ipfixgen.New(1, 5)
	now := time.Now()
	dec.Decode(dg("192.0.2.1:1", g.AppendData(nil), now), nil)
	if m := dec.Expire(now); len(m) != 0 {
		t.Errorf("expired too early: %v", m)
	}
	if m := dec.Expire(now.Add(2 * time.Second)); m[netip.MustParseAddr("192.0.2.1")] != 1 {
		t.Errorf("expired %v, want 1 set from 192.0.2.1", m)
	}
}
