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
	f, err := os.OpenFile(filepath.Join(dir, pinsFile+".lock"), os.O_CREATE|os.O_RDWR, 0o640)
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
	if truncated := readTruncated(dir); p.From <= truncated {
		segs, err := scanDir(dir, func(string) {})
		if err != nil {
			return err
		}
		if !kept(dir, p.From, p.To, truncated, segs) {
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
	}
	unlock, err := lockPins(dir)
	if err != nil {
		return err
	}
	defer unlock()
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
