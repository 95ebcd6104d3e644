package testutil

import (
	"syscall"
	"time"
)

// CPUTime is the user+system CPU time this process used so far, garbage
// collection included. Benchmarks divide work by it: the machines they run
// on are shared, and CPU time says what one core does whatever else runs.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
