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
	return errors.Join(errs...)
}
