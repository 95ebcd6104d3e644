package rollup

import (
	"errors"
	"fmt"
	"time"
)

// Configuration of the rollup engine. docs/rollups.md explains each value.
type Configuration struct {
	// Tick is the width of a bucket and how often live mode publishes a
	// snapshot.
	Tick time.Duration
	// Delay is how far behind the clock the published second lies: a
	// record reaches the collector when its exporter's active timeout
	// expires, so the seconds just past are not complete yet. Set it to
	// the exporters' active timeout; bytes that arrive for seconds already
	// published are counted as late, not added.
	Delay time.Duration
	// Ahead is how far past the clock (the last tick) records may reach:
	// clocks that run ahead. Later parts are counted as future and dropped.
	Ahead time.Duration
	// MaxSeries bounds the series of each scope; traffic of a series that
	// would be past the bound goes to the scope's "other" series and is
	// counted.
	MaxSeries int
	// TopTalkers is how many talkers a line or project row lists;
	// TalkerCounters is how many counters its Space-Saving sketch keeps
	// (at least TopTalkers; more counters, better accuracy).
	TopTalkers     int
	TalkerCounters int
	// TalkerBudget is how many records a second feed the talker sketches
	// one by one; above it, records lighter than a threshold are sampled
	// (sampling.go), so that a flood of new sources costs the sketches a
	// bounded time. 0 feeds every record.
	TalkerBudget int
	// TalkerWindow is the time constant of the talkers' decay: a talker
	// that stops fades to 1/e of its count after this long.
	TalkerWindow time.Duration
	// SmoothingWindow is the time constant of the smoothed rates (the
	// exponential moving average FastNetMon uses, with its default of
	// 5 s); BaselineWindow that of the slow baseline.
	SmoothingWindow time.Duration
	BaselineWindow  time.Duration
	// RTTWindow: the RTT quantiles cover the handshakes of the last one to
	// two RTT windows (two sketches, rotated every window).
	RTTWindow time.Duration
	// RTTAccuracy is the relative accuracy of the RTT quantiles
	// (DDSketch's alpha).
	RTTAccuracy float64
	// IdleTimeout: a series without traffic this long is forgotten, which
	// frees its place under MaxSeries.
	IdleTimeout time.Duration
	// MetricSeries is how many keys per scope get Prometheus series (the
	// heaviest by smoothed bytes per second).
	MetricSeries int
	// EventTime: ticks follow the records' own time instead of the wall
	// clock (a capture replayed through the collector); Start runs no
	// clock, Write ticks as the records' time advances, Stop publishes
	// what is left.
	EventTime bool
}

// DefaultConfiguration: one-second buckets published five seconds late
// (the active timeout spanflow exporters use for fresh counters).
func DefaultConfiguration() Configuration {
	return Configuration{
		Tick:            time.Second,
		Delay:           5 * time.Second,
		Ahead:           10 * time.Second,
		MaxSeries:       10000,
		TopTalkers:      10,
		TalkerCounters:  128,
		TalkerBudget:    50000,
		TalkerWindow:    10 * time.Second,
		SmoothingWindow: 5 * time.Second,
		BaselineWindow:  5 * time.Minute,
		RTTWindow:       10 * time.Second,
		RTTAccuracy:     0.01,
		IdleTimeout:     30 * time.Minute,
		MetricSeries:    100,
	}
}

// Validate checks the configuration; errors start with the setting's name.
func (c Configuration) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Tick < 100*time.Millisecond || c.Tick > time.Minute {
		add("rollup-tick: must be between 100ms and 1m, not %s", c.Tick)
	}
	if c.Delay < 0 || c.Delay > 10*time.Minute {
		add("rollup-delay: must be between 0 and 10m, not %s", c.Delay)
	}
	if c.Ahead < 0 || c.Ahead > 10*time.Minute {
		add("rollup-ahead: must be between 0 and 10m, not %s", c.Ahead)
	}
	if c.MaxSeries < 1 {
		add("rollup-max-series: must be at least 1, not %d", c.MaxSeries)
	}
	if c.TopTalkers < 0 {
		add("rollup-top-talkers: must not be negative")
	}
	if c.TalkerCounters < c.TopTalkers || c.TalkerCounters > 4096 {
		add("rollup-talker-counters: must be between rollup-top-talkers (%d) and 4096, not %d", c.TopTalkers, c.TalkerCounters)
	}
	if c.TalkerBudget < 0 {
		add("rollup-talker-budget: must not be negative (0 feeds every record to the talker sketches)")
	}
	for name, d := range map[string]time.Duration{"rollup-talker-window": c.TalkerWindow,
		"rollup-smoothing-window": c.SmoothingWindow, "rollup-baseline-window": c.BaselineWindow,
		"rollup-rtt-window": c.RTTWindow, "rollup-idle-timeout": c.IdleTimeout} {
		if d < c.Tick {
			add("%s: must be at least rollup-tick (%s), not %s", name, c.Tick, d)
		}
	}
	if c.RTTAccuracy <= 0 || c.RTTAccuracy >= 0.5 {
		add("rollup-rtt-accuracy: must be between 0 and 0.5, not %g", c.RTTAccuracy)
	}
	if c.MetricSeries < 0 {
		add("rollup-metric-series: must not be negative")
	}
	return errors.Join(errs...)
}

// ringLen is how many buckets are open at once: the delayed second up to
// the furthest one ahead.
func (c Configuration) ringLen() int {
	return int((c.Delay+c.Ahead)/c.Tick) + 2
}
