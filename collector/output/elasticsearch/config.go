package elasticsearch

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spanflow/spanflow/collector/output/elasticsearch/setup"
	"github.com/spanflow/spanflow/internal/esconn"
)

// Configuration of the Elasticsearch output. The flags that set it are
// listed in docs/elasticsearch.md.
type Configuration struct {
	// Connection says how to reach the cluster (URLs, TLS, credential files).
	Connection esconn.Configuration
	// Setup is what is installed at start (template, settings, lifecycle).
	Setup setup.Configuration
	// RunSetup installs the template (and ILM policy, data stream) at Start;
	// when it cannot, Start fails. Without it the layout is only detected.
	RunSetup bool

	// Bulk request tuning.
	Workers       int           // concurrent bulk requests
	FlushBytes    int           // a worker sends its bulk request when it holds this many bytes
	FlushInterval time.Duration // ... or when its first document waited this long

	// QueueSize is how many documents wait in memory for a bulk request;
	// when it is full (the cluster is slow) documents go to the spool.
	QueueSize int

	// SpoolDir holds documents that could not be indexed yet (cluster down,
	// slow, or answering 429/5xx); they are replayed in order. SpoolMaxBytes
	// bounds it: when full, the oldest segment is dropped and counted.
	SpoolDir      string
	SpoolMaxBytes int64
	// DeadLetterFile receives documents the cluster refused for their content
	// (mapping errors), one JSON line each with the reason; empty means
	// dead-letter.ndjson in SpoolDir. DeadLetterMaxBytes bounds it (0: no
	// bound): past it refused documents are dropped and counted until the
	// file is moved away.
	DeadLetterFile     string
	DeadLetterMaxBytes int64

	// DrainTimeout bounds Stop: what the cluster has not taken by then is
	// written to the spool (a SIGTERM never waits on a hung cluster).
	DrainTimeout time.Duration

	// ReplayBackoffMax caps the wait between attempts to replay the spool
	// while the cluster does not answer (the wait starts at 1 s and doubles).
	ReplayBackoffMax time.Duration
}

// DefaultConfiguration returns the defaults: measured on the test cluster,
// 2 workers with 2 MiB requests keep a small node busy (see
// docs/performance.md), and a 1 s interval bounds how long a flow waits.
func DefaultConfiguration() Configuration {
	conn := esconn.DefaultConfiguration()
	// gzip off: on a 2-core host shared with the cluster it cost 15-40% of the
	// throughput (docs/performance.md); turn it on for a cluster behind a slow link.
	conn.Compress = false
	conn.Timeout = 30 * time.Second
	conn.MaxRetries = 2
	conn.RetryBackoff = func(attempt int) time.Duration { return time.Duration(attempt) * 200 * time.Millisecond }
	return Configuration{
		Connection:         conn,
		Setup:              setup.DefaultConfiguration(),
		RunSetup:           true,
		Workers:            2,
		FlushBytes:         2 << 20,
		FlushInterval:      time.Second,
		QueueSize:          8192,
		SpoolDir:           "/var/lib/spanflow/es-spool",
		SpoolMaxBytes:      1 << 30,
		DeadLetterMaxBytes: 1 << 30,
		ReplayBackoffMax:   30 * time.Second,
		DrainTimeout:       15 * time.Second,
	}
}

// Validate checks the configuration.
func (c Configuration) Validate() error {
	switch {
	case len(c.Connection.URLs) == 0:
		return fmt.Errorf("no Elasticsearch URL: give --es-url")
	case c.Workers < 1:
		return fmt.Errorf("es-workers: must be at least 1, not %d", c.Workers)
	case c.FlushBytes < 1024:
		return fmt.Errorf("es-flush-bytes: must be at least 1024, not %d", c.FlushBytes)
	case c.FlushBytes > 64<<20:
		// A request Elasticsearch refuses for its size (http.max_content_length,
		// 100 MB by default) would be spooled and replayed for ever.
		return fmt.Errorf("es-flush-bytes: must be at most 64 MiB (67108864), not %d: Elasticsearch refuses requests over 100 MB by default", c.FlushBytes)
	case c.FlushInterval <= 0:
		return fmt.Errorf("es-flush-interval: must be positive")
	case c.QueueSize < 1:
		return fmt.Errorf("es-queue-size: must be at least 1")
	case c.SpoolDir == "":
		return fmt.Errorf("es-spool-dir: must be set")
	case c.SpoolMaxBytes < 1<<20:
		return fmt.Errorf("es-spool-max-bytes: must be at least 1 MiB")
	case c.DeadLetterMaxBytes < 0:
		return fmt.Errorf("es-dead-letter-max-bytes: must be 0 (no bound) or more")
	case c.DrainTimeout <= 0:
		return fmt.Errorf("es-drain-timeout: must be positive")
	case c.ReplayBackoffMax < time.Second:
		return fmt.Errorf("es replay backoff must be at least 1s")
	}
	return c.Setup.Validate()
}

func (c Configuration) deadLetterFile() string {
	if c.DeadLetterFile != "" {
		return c.DeadLetterFile
	}
	return filepath.Join(c.SpoolDir, "dead-letter.ndjson")
}
