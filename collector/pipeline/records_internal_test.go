package pipeline

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

// countingSink notes the size of each Write.
type countingSink struct {
	writes []int
	total  int
}

func (c *countingSink) Write(recs []flow.Record) error {
	c.writes = append(c.writes, len(recs))
	c.total += len(recs)
	return nil
}

// tinyRecords is an IPFIX message of domain 1: the template (id 256: one
// field, protocolIdentifier, one byte) when n is 0, else a data set of n
// one-byte records.
func tinyRecords(n int) []byte {
	b := make([]byte, 16, 16+4+max(n, 8))
	if n == 0 {
		b = binary.BigEndian.AppendUint16(b, 2)
		b = binary.BigEndian.AppendUint16(b, 12)
		b = binary.BigEndian.AppendUint16(b, 256)
		b = binary.BigEndian.AppendUint16(b, 1)
		b = binary.BigEndian.AppendUint16(b, 4)
		b = binary.BigEndian.AppendUint16(b, 1)
	} else {
		b = binary.BigEndian.AppendUint16(b, 256)
		b = binary.BigEndian.AppendUint16(b, uint16(4+n))
		for i := range n {
			b = append(b, byte(6+11*(i%2)))
		}
	}
	binary.BigEndian.PutUint16(b, 10)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint32(b[12:], 1)
	return b
}

// TestTinyRecordsBounded: datagrams of 60,000 one-byte records each (about
// 28 MB of records apiece) reach the outputs whole, a datagram's worth at
// a time at most, and the worker keeps no large buffer afterwards, on the
// batch path (UDP) and the one-by-one path (TCP).
func TestTinyRecordsBounded(t *testing.T) {
	const per, batch = 60000, 8
	sink := &countingSink{}
	p, err := New(reporter.NewForTest(nil), DefaultConfiguration(), Dependencies{Outputs: []Output{{Name: "count", Sink: sink}}})
	if err != nil {
		t.Fatal(err)
	}
	w := p.NewWorker()
	src := netip.MustParseAddrPort("192.0.2.1:4739")
	now := time.Now()
	w.Handle(decoders.Datagram{Source: src, Payload: tinyRecords(0), Received: now})
	data := tinyRecords(per)
	var dgs []decoders.Datagram
	for range batch {
		dgs = append(dgs, decoders.Datagram{Source: src, Payload: data, Received: now})
	}
	w.HandleBatch(dgs)
	if sink.total != per*batch {
		t.Fatalf("%d records reached the output, want %d", sink.total, per*batch)
	}
	for _, n := range sink.writes {
		if n > per+flushRecords {
			t.Errorf("one Write of %d records: the batch was not handed over as it grew", n)
		}
	}
	if c := cap(w.records); c > keepRecords {
		t.Errorf("the worker keeps a buffer of %d records after the batch", c)
	}
	w.Handle(decoders.Datagram{Source: src, Payload: data, Received: now})
	if sink.total != per*(batch+1) {
		t.Fatalf("%d records reached the output, want %d", sink.total, per*(batch+1))
	}
	if c := cap(w.records); c > keepRecords {
		t.Errorf("the worker keeps a buffer of %d records after one datagram", c)
	}
}
