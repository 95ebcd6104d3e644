package capture

import (
	"errors"
	"fmt"
	"time"
)

// pollInterval is how long a live source's Next waits for a frame before it
// returns ErrIdle.
const pollInterval = 100 * time.Millisecond

// ErrIdle is returned by a live source's Next when no frame came for a
// while: the caller gets to run its timers, then calls Next again.
var ErrIdle = errors.New("no frame for a while")

// ErrClosed is returned by a live source's Next once it was closed.
var ErrClosed = errors.New("capture closed")

// LiveConfiguration of one live capture.
type LiveConfiguration struct {
	Interface     string
	RingSize      int    // bytes of the AF_PACKET ring (rounded down to 1 MiB blocks)
	Filter        string // tcpdump filter expression; empty: every frame
	NoPromiscuous bool
	// ObservationPoint is given to the frames of this interface (the
	// records' observationPointId unless an ERSPAN session id is in the
	// frame).
	ObservationPoint uint16
}

// DefaultRingSize is the ring size by default: 64 MiB holds about half a
// second of a saturated 1 Gbit/s link.
const DefaultRingSize = 64 << 20

// Validate checks the settings.
func (c LiveConfiguration) Validate() error {
	if c.Interface == "" {
		return errors.New("no interface")
	}
	if c.RingSize < 1<<20 || int64(c.RingSize) > 4<<30 {
		return fmt.Errorf("ring size %d: must be from 1 MiB to 4 GiB", c.RingSize)
	}
	return nil
}
