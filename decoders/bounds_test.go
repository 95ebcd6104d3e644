package decoders_test

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/spanflow/spanflow/bench/ipfixgen"
	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/decoders/reason"
	"github.com/spanflow/spanflow/internal/flow"
)

// The tests here send what a host that can reach the collector's ports
// can send, and check that the decoder's memory stays within its limits
// and that every refusal is counted.

// ipfixIn wraps sets into an IPFIX message of one observation domain.
func ipfixIn(domain uint32, sets ...[]byte) []byte {
	b := make([]byte, 16)
	for _, s := range sets {
		b = append(b, s...)
	}
	binary.BigEndian.PutUint16(b, 10)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint32(b[12:], domain)
	return b
}

// heapInuse is the heap in use after a collection.
func heapInuse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

const mib = 1 << 20

// TestNoBufferPerExporter: an exporter's state does not keep a copy of
// the biggest datagram it sent; 1,000 exporters of one 50 kB datagram each
// cost a few kB each.
func TestNoBufferPerExporter(t *testing.T) {
	dec, _ := decoders.New(decoders.DefaultConfiguration())
	g := ipfixgen.New(1, 700)
	msg := append(g.Template(), g.AppendData(nil)[16:]...) // template and data sets, one message
	binary.BigEndian.PutUint16(msg[2:], uint16(len(msg)))
	now := time.Now()
	var out []flow.Record
	before := heapInuse()
	for i := range 1000 {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 1)
		var err error
		if out, _, err = dec.Decode(decoders.Datagram{Source: src, Payload: msg, Received: now}, out[:0]); err != nil || len(out) != 700 {
			t.Fatalf("%d records: %v", len(out), err)
		}
	}
	out = nil
	per := (heapInuse() - before) / 1000
	t.Logf("1,000 exporters of one %d-byte datagram: %d bytes each", len(msg), per)
	if per > 8<<10 {
		t.Errorf("%d bytes kept per exporter", per)
	}
	runtime.KeepAlive(dec)
}

// TestTemplateFieldCountChecked: a template whose field count is more than
// its set holds is refused before goflow2 allocates for that count.
func TestTemplateFieldCountChecked(t *testing.T) {
	dec, _ := decoders.New(decoders.DefaultConfiguration())
	for _, msg := range [][]byte{
		ipfixIn(1, set(2, []byte{1, 0, 0xff, 0xff, 0, 8, 0, 4})),              // template of 65,535 fields, 1 given
		ipfixIn(1, set(3, []byte{1, 0, 0xff, 0xff, 0xff, 0xff, 0, 10, 0, 4})), // options template
	} {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		var err error
		for range 100 {
			_, _, err = dec.Decode(dg("192.0.2.1:1", msg, time.Now()), nil)
		}
		runtime.ReadMemStats(&m1)
		per := (m1.TotalAlloc - m0.TotalAlloc) / 100
		t.Logf("%d-byte datagram: %d bytes allocated per decode: %v", len(msg), per, err)
		if reason.Of(err) != reason.Template || per > 4096 {
			t.Errorf("%d bytes allocated per decode, error %v: want bad_template, a few hundred bytes", per, err)
		}
	}
}
