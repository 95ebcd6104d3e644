package setup

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Lifecycle modes.
const (
	// LifecycleAuto uses a data stream with ILM when the cluster has both,
	// daily indices otherwise.
	LifecycleAuto = "auto"
	// LifecycleDataStream requires ILM and data streams.
	LifecycleDataStream = "data-stream"
	// LifecycleDaily writes daily indices spanflow-flows-YYYY.MM.DD, removed by
	// `spanflow es prune`.
	LifecycleDaily = "daily"
)

// Configuration of what setup installs.
type Configuration struct {
	Shards          int
	Replicas        int
	RefreshInterval string // Elasticsearch time unit: "30s", "-1"
	BestCompression bool
	// Lifecycle is auto, data-stream or daily.
	Lifecycle string
	// RetentionDays is when ILM deletes a backing index (data-stream mode);
	// in daily mode it is the default of `spanflow es prune --older-than`.
	RetentionDays int
	// Rollover thresholds of the data stream's write index.
	RolloverMaxPrimaryShardSize string
	RolloverMaxAge              string
}

// DefaultConfiguration suits one node holding a month of flows: one shard
// (flows are many small documents, a shard holds tens of GB well), no replica
// (a single node cannot place one; raise it on a cluster), a 30 s refresh
// (flows are looked at in dashboards, not searched the instant they arrive).
func DefaultConfiguration() Configuration {
	return Configuration{
		Shards:                      1,
		Replicas:                    0,
		RefreshInterval:             "30s",
		BestCompression:             true,
		Lifecycle:                   LifecycleAuto,
		RetentionDays:               30,
		RolloverMaxPrimaryShardSize: "50gb",
		RolloverMaxAge:              "1d",
	}
}

var esTimeUnit = regexp.MustCompile(`^(-1|0|[0-9]+(nanos|micros|ms|s|m|h|d))$`)
var esSize = regexp.MustCompile(`^[0-9]+(b|kb|mb|gb|tb|pb)$`)

// Validate checks the configuration.
func (c Configuration) Validate() error {
	switch {
	case c.Shards < 1:
		return fmt.Errorf("es-shards: must be at least 1, not %d", c.Shards)
	case c.Replicas < 0:
		return fmt.Errorf("es-replicas: must not be negative")
	case !esTimeUnit.MatchString(c.RefreshInterval):
		return fmt.Errorf("es-refresh-interval: %q is not an Elasticsearch time (30s, 1m, -1)", c.RefreshInterval)
	case c.Lifecycle != LifecycleAuto && c.Lifecycle != LifecycleDataStream && c.Lifecycle != LifecycleDaily:
		return fmt.Errorf("es-lifecycle: %q: use auto, data-stream or daily", c.Lifecycle)
	case c.RetentionDays < 1:
		return fmt.Errorf("es-retention-days: must be at least 1 day")
	case !esSize.MatchString(c.RolloverMaxPrimaryShardSize):
		return fmt.Errorf("es-rollover-size: %q is not an Elasticsearch size (50gb)", c.RolloverMaxPrimaryShardSize)
	case !esTimeUnit.MatchString(c.RolloverMaxAge):
		return fmt.Errorf("es-rollover-age: %q is not an Elasticsearch time (1d)", c.RolloverMaxAge)
	}
	return nil
}

// ParseAge parses an age such as 30d, 12h or 90m (days are 24 h).
func ParseAge(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 {
			return 0, fmt.Errorf("age %q: want a number of days such as 30d", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("age %q: want 30d, 12h or 90m", s)
	}
	return d, nil
}
