package ipfix

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"
)

// lockedCapture records messages sent from the background sender; every
// third one fails when failEvery is set.
type lockedCapture struct {
	mu        sync.Mutex
	msgs      [][]byte
	failEvery int
	calls     int
}

func (c *lockedCapture) Send(m []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.failEvery > 0 && c.calls%c.failEvery == 0 {
		return errors.New("refused")
	}
	c.msgs = append(c.msgs, append([]byte(nil), m...))
	return nil
}

func (c *lockedCapture) messages() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.msgs...)
}

// batchCapture takes batches (BatchTransport) and remembers their sizes.
type batchCapture struct {
	lockedCapture
	sizes []int
}

func (c *batchCapture) SendBatch(msgs [][]byte) (int, error) {
	c.sizes = append(c.sizes, len(msgs))
	for _, m := range msgs {
		c.Send(m)
	}
	return 0, nil
}

// encodeMany encodes n records with a small MTU (many messages), flushing
// the encoder every flushEvery records, then closes it.
func encodeMany(t *testing.T, tr Transport, background bool, n, flushEvery int) *Encoder {
	t.Helper()
	e, err := New(nil, Configuration{ObservationDomain: 9, MTU: 576, TemplateRefreshInterval: time.Hour, TemplateRefreshMessages: 7}, tr)
	if err != nil {
		t.Fatal(err)
	}
	if background {
		e.SendInBackground()
	}
	recs := sampleRecords()
	for i := range n {
		if i%100 == 0 {
			e.SetStatistics(Statistics{Packets: uint64(i)})
		}
		r := recs[i%2]
		r.Packets = uint64(i + 1)
		if err := e.Encode(exportTime.Add(time.Duration(i)*time.Millisecond), &r); err != nil {
			t.Fatal(err)
		}
		if flushEvery > 0 && i%flushEvery == flushEvery-1 {
			if err := e.Flush(exportTime); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.Close(exportTime.Add(time.Hour))
	return e
}

// TestSendInBackground: the background sender sends the very messages,
// byte for byte and in order, that sending in the pipeline's goroutine
// does, with or without batches, and counts the same.
func TestSendInBackground(t *testing.T) {
	for _, flushEvery := range []int{0, 5, 333} {
		want := &lockedCapture{}
		we := encodeMany(t, want, false, 5000, flushEvery)
		got := &lockedCapture{}
		ge := encodeMany(t, got, true, 5000, flushEvery)
		batched := &batchCapture{}
		be := encodeMany(t, batched, true, 5000, flushEvery)
		if len(want.msgs) < 3*batchMessages {
			t.Fatalf("only %d messages", len(want.msgs))
		}
		for name, c := range map[string]*lockedCapture{"one by one": got, "batches": &batched.lockedCapture} {
			m := c.messages()
			if len(m) != len(want.msgs) {
				t.Fatalf("flush every %d, %s: %d messages, want %d", flushEvery, name, len(m), len(want.msgs))
			}
			for i := range m {
				if !bytes.Equal(m[i], want.msgs[i]) {
					t.Fatalf("flush every %d, %s: message %d differs", flushEvery, name, i)
				}
			}
		}
		for _, c := range []Counters{ge.Counters(), be.Counters()} {
			if c != we.Counters() {
				t.Errorf("counters %+v, want %+v", c, we.Counters())
			}
		}
		for _, n := range batched.sizes {
			if n > batchMessages {
				t.Errorf("batch of %d messages, more than %d", n, batchMessages)
			}
		}
	}
}

// TestSendInBackgroundFlush: Flush hands a message over without Close, so
// that a live capture's messages leave within its tick.
func TestSendInBackgroundFlush(t *testing.T) {
	c := &lockedCapture{}
	e, err := New(nil, DefaultConfiguration(), c)
	if err != nil {
		t.Fatal(err)
	}
	e.SendInBackground()
	defer e.Close(exportTime)
	r := sampleRecords()[0]
	e.Encode(exportTime, &r)
	e.Flush(exportTime)
	for deadline := time.Now().Add(5 * time.Second); len(c.messages()) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the flushed message was not sent")
		}
	}
}

// TestSendInBackgroundErrors: sends the transport refuses are counted,
// and Close reports the first.
func TestSendInBackgroundErrors(t *testing.T) {
	c := &lockedCapture{failEvery: 3}
	e := encodeMany(t, c, true, 3000, 0)
	cn := e.Counters()
	if cn.SendErrors != cn.Messages/3 || cn.SendErrors == 0 {
		t.Errorf("counters %+v: want every third message failed", cn)
	}
	e2, _ := New(nil, DefaultConfiguration(), &lockedCapture{failEvery: 1})
	e2.SendInBackground()
	r := sampleRecords()[0]
	e2.Encode(exportTime, &r)
	if err := e2.Close(exportTime); err == nil {
		t.Error("Close returned no error when no message could be sent")
	}
}

// TestSendInBackgroundPush: Push hands over the messages finished so far
// and leaves the one being built.
func TestSendInBackgroundPush(t *testing.T) {
	c := &lockedCapture{}
	e, err := New(nil, Configuration{ObservationDomain: 1, MTU: 576, TemplateRefreshInterval: time.Hour, TemplateRefreshMessages: 10}, c)
	if err != nil {
		t.Fatal(err)
	}
	e.SendInBackground()
	r := sampleRecords()[0]
	for e.Counters().Messages < 2 {
		e.Encode(exportTime, &r)
	}
	e.Push()
	for deadline := time.Now().Add(5 * time.Second); len(c.messages()) < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d messages sent after Push, want 2", len(c.messages()))
		}
	}
	e.Close(exportTime)
	if n := len(c.messages()); n != 4 { // and the one being built, and Close's
		t.Errorf("%d messages, want 4", n)
	}
}
