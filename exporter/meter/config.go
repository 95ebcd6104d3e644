package meter

import (
	"errors"
	"fmt"
	"time"
)

// Configuration of the flow table.
type Configuration struct {
	// ActiveTimeout ends a flow that has lasted this long (the flow goes on
	// in a new record).
	ActiveTimeout time.Duration
	// IdleTimeout ends a flow that saw no packet for this long.
	IdleTimeout time.Duration
	// MaxFlows bounds the table; when full, the least recently seen flow is
	// exported early (flowEndReason lackOfResources) to make room.
	MaxFlows int
	// FastActiveTimeout is the active timeout of the flows that one of
	// Fast selects (0: none), so that their interim counters reach the
	// collector often enough for alerting within seconds.
	FastActiveTimeout time.Duration
	Fast              []Selector
}

// DefaultConfiguration returns the defaults.
func DefaultConfiguration() Configuration {
	return Configuration{ActiveTimeout: 60 * time.Second, IdleTimeout: 15 * time.Second, MaxFlows: 1 << 20}
}

// Validate checks the configuration.
func (c Configuration) Validate() error {
	var errs []error
	if c.ActiveTimeout < time.Second {
		errs = append(errs, fmt.Errorf("active timeout %s: must be at least 1s", c.ActiveTimeout))
	}
	if c.IdleTimeout < time.Second {
		errs = append(errs, fmt.Errorf("idle timeout %s: must be at least 1s", c.IdleTimeout))
	}
	if c.MaxFlows < 1 || c.MaxFlows > 1<<30 {
		errs = append(errs, fmt.Errorf("max flows %d: must be between 1 and %d", c.MaxFlows, 1<<30))
	}
	switch {
	case c.FastActiveTimeout == 0 && len(c.Fast) > 0:
		errs = append(errs, errors.New("active-timeout-fast-for selects flows but active-timeout-fast is not set"))
	case c.FastActiveTimeout != 0 && len(c.Fast) == 0:
		errs = append(errs, fmt.Errorf("active-timeout-fast %s: give the flows it applies to with active-timeout-fast-for", c.FastActiveTimeout))
	case c.FastActiveTimeout != 0 && c.FastActiveTimeout < time.Second:
		errs = append(errs, fmt.Errorf("active-timeout-fast %s: must be at least 1s", c.FastActiveTimeout))
	case c.FastActiveTimeout != 0 && c.FastActiveTimeout >= c.ActiveTimeout:
		errs = append(errs, fmt.Errorf("active-timeout-fast %s: must be shorter than active-timeout %s", c.FastActiveTimeout, c.ActiveTimeout))
	}
	return errors.Join(errs...)
}
