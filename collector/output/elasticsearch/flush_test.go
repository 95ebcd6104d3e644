package elasticsearch

import (
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/testutil"
)

// TestFlushIntervalAfterBurst: after a burst larger than a bulk request, a
// trickle of documents is indexed within the flush interval. The request
// that follows a full one starts with a document already queued; its timer
// must start then too, not only when the first document had to be waited
// for (it sat unsent until the request filled, for minutes at 10 flows/s,
// and kill -9 lost exactly those).
func TestFlushIntervalAfterBurst(t *testing.T) {
	url := testutil.Elasticsearch(t)
	day := time.Date(2001, 7, 14, 0, 0, 0, 0, time.UTC)
	c, index := freshDayIndex(t, url, day)
	const burst, trickle = 3000, 10
	recs, _ := genRecords(burst+trickle, day, 7)
	const interval = 300 * time.Millisecond
	o, _ := newTestOutput(t, []string{url}, t.TempDir(), func(c *Configuration) {
		c.FlushBytes = 64 << 10 // a few hundred documents a request: the burst fills many
		c.FlushInterval = interval
	})
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	defer o.Stop()
	writeAll(t, o, recs[:burst], burst)
	// The trickle starts while the burst is still being sent, as it would
	// in a collector: documents keep arriving one by one.
	for i := burst; i < burst+trickle; i++ {
		writeAll(t, o, recs[i:i+1], 1)
		time.Sleep(interval / 3)
	}
	// Every document is acknowledged well within a few intervals of the
	// last one (a deadline, not a measurement: without the fix it never
	// comes until the process stops).
	deadline := time.Now().Add(10 * interval)
	for metric(o, "indexed") < burst+trickle && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := metric(o, "indexed"); got != burst+trickle {
		t.Fatalf("%v of %d documents indexed %s after the last one (flush interval %s)", got, burst+trickle, 10*interval, interval)
	}
	request(t, c, "POST", "/"+index+"/_refresh", "", nil)
	if n := count(t, c, index, `{"query":{"match_all":{}}}`); n != burst+trickle {
		t.Errorf("index holds %d documents, want %d", n, burst+trickle)
	}
}

// TestFeederWakesForAFullRequest: with a flush interval of ten minutes, a
// feeder filling a request sleeps between Write calls; it must still send
// requests as soon as the queue holds a quarter of one (Write rings it),
// not when the interval ends. And Stop must wake it at once to send what
// is left, without waiting for the interval nor the drain timeout.
func TestFeederWakesForAFullRequest(t *testing.T) {
	target := testutil.Elasticsearch(t)
	day := time.Date(2001, 3, 11, 0, 0, 0, 0, time.UTC)
	c, index := freshDayIndex(t, target, day)
	recs, tr := genRecords(3000, day, 13)
	o, _ := newTestOutput(t, []string{target}, t.TempDir(), func(c *Configuration) {
		c.FlushBytes = 128 << 10
		c.FlushInterval = 10 * time.Minute
	})
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	if o.Layout().DataStream {
		o.Stop()
		t.Skip("cluster uses a data stream; this test checks daily indices")
	}
	// Slower than the feeder, so that it finds the queue empty and sleeps
	// between calls.
	for i := 0; i < 2990; i += 10 {
		if err := o.Write(recs[i : i+10]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	deadline := time.Now().Add(20 * time.Second)
	for metric(o, "indexed") < 2000 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := metric(o, "indexed"); got < 2000 {
		t.Fatalf("%v of 2,990 documents indexed after 20 s with a 10-minute flush interval: the feeder slept on a full queue", got)
	}
	writeAll(t, o, recs[2990:], 10) // less than a quarter of a request: no ring
	start := time.Now()
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Stop took %v: the sleeping feeder was not woken", took)
	}
	checkTruth(t, c, index, tr)
	if docs, _ := o.spool.Stats(); docs != 0 || metric(o, "spooled") != 0 {
		t.Errorf("%d documents in the spool, %v spooled; want none", docs, metric(o, "spooled"))
	}
}
