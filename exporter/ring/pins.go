package ring

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// A pin keeps the segments that hold a time range: retention passes them
// by until the pin is removed. Pins live in DIR/pins, one "FROM TO NAME"
// line each (nanoseconds), written whole by rename so that the exporter
// never reads half a file.
const pinsFile = "pins"

// Pin is a kept time range.
type Pin struct {
	From, To int64
	Name     string
}

func (p Pin) overlaps(first, last int64) bool { return last >= p.From && first < p.To }

// Pins reads the ring's pins.
func Pins(dir string) ([]Pin, error) {
	b, err := os.ReadFile(filepath.Join(dir, pinsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pins: %w", err)
	}
	var out []Pin
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, len(b)+1)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		var p Pin
		var e1, e2 error
		if len(f) == 3 {
			p.From, e1 = strconv.ParseInt(f[0], 10, 64)
			p.To, e2 = strconv.ParseInt(f[1], 10, 64)
			p.Name = f[2]
		}
		if len(f) != 3 || e1 != nil || e2 != nil {
			return nil, fmt.Errorf("pins line %d: want FROM TO NAME", n)
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		// A line past the scanner's bound: the pins after it would be
		// lost silently, and dropped at the next change.
		return nil, fmt.Errorf("read pins: %w", err)
	}
	return out, nil
}

func writePins(dir string, pins []Pin) error {
	var b strings.Builder
	for _, p := range pins {
		fmt.Fprintf(&b, "%d %d %s\n", p.From, p.To, p.Name)
	}
	tmp := filepath.Join(dir, pinsFile+".tmp")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, pinsFile))
}

// maxPins bounds the pins of a ring: each pin is a line of the pins file,
// rewritten whole at every change and read whenever a segment must go, and
// a storm of alerts pins once per alert (docs/retrospection.md).
var maxPins = 10000

// pinsMu orders this process's changes to a pins file (the query server
// takes concurrent PUTs): each reads the file, then renames a new one in.
// lockPins orders them between processes too.
var pinsMu sync.Mutex

// lockPins takes the ring's pins lock (DIR/pins.lock): changes made at
// once by the query server and by spanflow pcap pin would otherwise each
// write back the file as read before the other's change, losing a pin,
// or rename in the other's temporary file half written.
func lockPins(dir string) (unlock func(), err error) {
	pinsMu.Lock()
	f, err := openPinsLock(dir)
	if err == nil {
		if err = lockFile(f); err != nil {
			f.Close()
		}
	}
	if err != nil {
		pinsMu.Unlock()
		return nil, fmt.Errorf("lock pins: %w", err)
	}
	return func() {
		f.Close() // releases the lock
		pinsMu.Unlock()
	}, nil
}

// openPinsLock opens DIR/pins.lock, created if missing. The writer makes
// it now (mode 0640, its owner's) before anyone pins: a user who may
// write the ring's directory but not that file takes the lock through a
// read-only descriptor, which flock allows.
func openPinsLock(dir string) (*os.File, error) {
	path := filepath.Join(dir, pinsFile+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o640)
	if errors.Is(err, os.ErrPermission) {
		if r, rerr := os.Open(path); rerr == nil {
			return r, nil
		}
	}
	return f, err
}

// lockPinsWaiting is lockPins for the ring's writer, which takes it to
// read the pins and remove segments, so that a pin being set is checked
// and written either before (and is seen) or after (and sees what went).
// It waits at most wait: a process stopped while it holds the lock (a
// suspended spanflow pcap pin) must not stop the ring. Past that it
// returns ok false, without the lock.
func lockPinsWaiting(dir string, wait time.Duration) (unlock func(), ok bool) {
	deadline := time.Now().Add(wait)
	for !pinsMu.TryLock() {
		if time.Now().After(deadline) {
			return func() {}, false
		}
		time.Sleep(time.Millisecond)
	}
	f, err := openPinsLock(dir)
	if err != nil {
		pinsMu.Unlock()
		return func() {}, false
	}
	for {
		got, err := tryLockFile(f)
		if got {
			return func() {
				f.Close() // releases the lock
				pinsMu.Unlock()
			}, true
		}
		if err != nil || time.Now().After(deadline) {
			f.Close()
			pinsMu.Unlock()
			return func() {}, false
		}
		time.Sleep(time.Millisecond)
	}
}

// MaxPinName is the longest pin name, in bytes.
const MaxPinName = 255

// CheckPinName says whether a pin name is one word of printable
// characters of at most MaxPinName bytes: the pins file splits its lines
// on any white space (a no-break space as well), so a name holding one
// would make the file unreadable, and with it every pin.
func CheckPinName(name string) error {
	if name == "" {
		return errors.New("pin: no name")
	}
	bad := strings.IndexFunc(name, func(r rune) bool { return r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) })
	if len(name) > MaxPinName || bad >= 0 {
		shown := name
		if len(shown) > 64 {
			shown = shown[:64] + "..."
		}
		return fmt.Errorf("pin name %q: want one word of printable characters, at most %d bytes", shown, MaxPinName)
	}
	return nil
}

// AddPin pins a time range under a name (one word, CheckPinName); a pin
// of the same name is replaced. A ring holds at most 10,000 pins: past
// that a new name is refused until some are removed. A range whose
// frames were all removed already is refused with ErrGone; one that
// starts in removed time is kept from the first time not removed: a pin
// says that its range is kept whole, and an empty answer within it that
// there were no packets.
func AddPin(dir string, p Pin) error {
	if err := CheckPinName(p.Name); err != nil {
		return err
	}
	if p.To <= p.From {
		return errors.New("pin: the range must end after it starts")
	}
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("packet ring %s: %w", dir, err)
	}
	// The range is checked, and the pin written, under the pins lock,
	// which the writer takes to remove segments: checked before it, a
	// pin on the oldest segment of a busy ring was written after the
	// writer had removed that segment (25 of 85 in a test), and its
	// window answered "no packets" instead of 410. The segments are read
	// outside the lock (every block header: slow on a large ring), then
	// read again under it if the writer removed anything meanwhile.
	for attempt := 0; ; attempt++ {
		truncated := readTruncated(dir)
		var segs []Segment
		if p.From <= truncated && attempt < pinScanAttempts {
			var err error
			if segs, err = scanDir(dir, func(string) {}); err != nil {
				return err
			}
		}
		unlock, err := lockPins(dir)
		if err != nil {
			return err
		}
		if attempt < pinScanAttempts && (readTruncated(dir) != truncated || removedSince(segs)) {
			unlock()
			continue
		}
		if attempt >= pinScanAttempts { // the writer keeps removing: read the segments with it waiting
			truncated = readTruncated(dir)
			if p.From <= truncated {
				if segs, err = scanDir(dir, func(string) {}); err != nil {
					unlock()
					return err
				}
			}
		}
		err = addPinLocked(dir, p, truncated, segs)
		unlock()
		return err
	}
}

// pinScanAttempts is how many times AddPin reads the segments outside the
// pins lock before it reads them holding it.
const pinScanAttempts = 3

// removedSince says whether a segment of segs is no longer there.
func removedSince(segs []Segment) bool {
	for _, s := range segs {
		if _, err := os.Lstat(s.Path); errors.Is(err, os.ErrNotExist) {
			return true
		}
	}
	return false
}

// addPinLocked trims or refuses p by what the ring removed (truncated, and
// its segments segs, read when p.From <= truncated) and writes it; the
// pins lock is held.
func addPinLocked(dir string, p Pin, truncated int64, segs []Segment) error {
	if p.From <= truncated && !kept(dir, p.From, p.To, truncated, segs) {
		if p.To <= truncated+1 {
			return fmt.Errorf("pin %s: %w (packets up to %s)", p.Name, ErrGone, time.Unix(0, truncated).UTC().Format(time.RFC3339Nano))
		}
		// From the first time after which the range is kept.
		starts := []int64{truncated + 1}
		held, _ := Pins(dir)
		for _, q := range held {
			starts = append(starts, q.From)
		}
		for _, s := range segs {
			starts = append(starts, s.First)
		}
		slices.Sort(starts)
		for _, t := range starts {
			if t > p.From && (t == truncated+1 || kept(dir, t, p.To, truncated, segs)) {
				p.From = t
				break
			}
		}
	}
	pins, err := Pins(dir)
	if err != nil {
		return err
	}
	out := []Pin{p}
	for _, q := range pins {
		if q.Name != p.Name {
			out = append(out, q)
		}
	}
	if len(out) > maxPins {
		return fmt.Errorf("%w: the ring holds %d pins already; unpin some (spanflow pcap unpin)", ErrTooManyPins, len(pins))
	}
	return writePins(dir, out)
}

// ErrTooManyPins is AddPin's error when the ring holds maxPins pins.
var ErrTooManyPins = errors.New("too many pins")

// RemovePin removes the pin of that name; it says when there is none.
func RemovePin(dir, name string) error {
	unlock, err := lockPins(dir)
	if err != nil {
		return err
	}
	defer unlock()
	pins, err := Pins(dir)
	if err != nil {
		return err
	}
	var out []Pin
	for _, q := range pins {
		if q.Name != name {
			out = append(out, q)
		}
	}
	if len(out) == len(pins) {
		return fmt.Errorf("no pin named %q", name)
	}
	return writePins(dir, out)
}

// pinned says whether a segment's time range is pinned.
func pinned(pins []Pin, first, last int64) bool {
	for _, p := range pins {
		if p.overlaps(first, last) {
			return true
		}
	}
	return false
}
