package ring

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestPinsBounded: past maxPins a new name is refused with ErrTooManyPins,
// while a pin of a name held is still replaced, and removing one makes
// room.
func TestPinsBounded(t *testing.T) {
	defer func(n int) { maxPins = n }(maxPins)
	maxPins = 50
	dir := t.TempDir()
	for i := range maxPins {
		if err := AddPin(dir, Pin{From: 1, To: 2, Name: "p" + strconv.Itoa(i)}); err != nil {
			t.Fatalf("pin %d: %v", i, err)
		}
	}
	if err := AddPin(dir, Pin{From: 1, To: 2, Name: "one-more"}); !errors.Is(err, ErrTooManyPins) {
		t.Fatalf("pin %d: %v, want ErrTooManyPins", maxPins+1, err)
	}
	if err := AddPin(dir, Pin{From: 5, To: 9, Name: "p7"}); err != nil {
		t.Fatalf("replacing a pin at the bound: %v", err)
	}
	if err := RemovePin(dir, "p3"); err != nil {
		t.Fatal(err)
	}
	if err := AddPin(dir, Pin{From: 1, To: 2, Name: "one-more"}); err != nil {
		t.Fatalf("after a removal: %v", err)
	}
	pins, err := Pins(dir)
	if err != nil || len(pins) != maxPins {
		t.Fatalf("%d pins (%v), want %d", len(pins), err, maxPins)
	}
}

// TestWriterDoesNotWaitForAStuckPinsLock: the writer takes the pins lock
// to remove segments, but a holder that never lets go (a spanflow pcap pin
// stopped while holding it) must not stop the ring: past pinsLockWait it
// removes segments without the lock, and says so; and it waits so once,
// not again at every segment it removes while the holder holds on: before,
// it waited pinsLockWait out 19 times for the 17 segments it removed here
// (2 s each by default, the capture's frames dropped meanwhile).
func TestWriterDoesNotWaitForAStuckPinsLock(t *testing.T) {
	defer func(d time.Duration) { pinsLockWait = d }(pinsLockWait)
	pinsLockWait = 50 * time.Millisecond
	cfg := Configuration{Dir: t.TempDir(), Size: MinSize, Codec: CodecNone, BlockSize: 256 << 10}
	var logs testutil.SyncBuffer
	g, err := Open(reporter.NewForTest(&logs), cfg)
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := lockPins(cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	a := g.NewAppender()
	a.Wait = true
	data := make([]byte, 1000)
	write := func(from, n int) {
		for i := from; i < from+n; i++ {
			data[0] = byte(i)
			a.Append(int64(i+1)*1000, 1000, 1, 0, 42, data)
		}
		a.Flush()
	}
	write(0, 3*MinSize/1000)
	st := g.Stats()
	// Let go, the lock is taken again (and waited for) at the next removal.
	unlock()
	write(3*MinSize/1000, MinSize/1000)
	g.Close()
	if g.pinsLockMissed {
		t.Error("the pins lock let go, the writer still removes segments without it")
	}
	if st.SegmentsRemoved == 0 || !strings.Contains(logs.String(), "pins lock is held too long") {
		t.Errorf("with the pins lock held: %d segments removed, logs %q; want segments removed without it, and a warning",
			st.SegmentsRemoved, logs.String())
	}
	if st.SegmentsRemoved < 4 || g.pinsLockWaits != 1 {
		t.Errorf("%d segments removed with the pins lock held throughout; the writer waited the lock out %d times, want once",
			st.SegmentsRemoved, g.pinsLockWaits)
	}
}
