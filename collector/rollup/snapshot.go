// Package rollup keeps the collector's real-time view of its traffic: on a
// one-second tick, rates and TCP health per line (exporter + interface),
// project, VM, service (protocol + server port) and exporter, and the top
// talkers per line and project from a bounded heavy-hitter sketch. Alert rules
// (package alert), the rollups index and the Prometheus metrics all read the
// Snapshot it publishes every tick.
package rollup

import (
	"net/netip"
	"time"
)

// Scopes a Row can have.
const (
	ScopeLine     = "line"     // Key "<exporter> <interface>", e.g. "10.1.0.3 vmnic0"
	ScopeProject  = "project"  // Key is the project name
	ScopeVM       = "vm"       // Key is the VM name
	ScopeService  = "service"  // Key "<protocol>/<port>", e.g. "tcp/443"
	ScopeExporter = "exporter" // Key is the exporter's address
)

// Value names a Row carries; rules refer to them by these names.
const (
	BytesPerSecond          = "bytes_per_second"
	PacketsPerSecond        = "packets_per_second"
	FlowsPerSecond          = "flows_per_second"
	BytesPerSecondSmoothed  = "bytes_per_second_smoothed"
	PacketsPerSecondSmooth  = "packets_per_second_smoothed"
	FlowsPerSecondSmoothed  = "flows_per_second_smoothed"
	RTTp50                  = "rtt_p50_ms"
	RTTp95                  = "rtt_p95_ms"
	RTTp99                  = "rtt_p99_ms"
	RetransmissionRatio     = "retransmission_ratio"
	ZeroWindowsPerSecond    = "zero_windows_per_second"
	BitsPerSecond           = "bits_per_second"
	BitsPerSecondSmoothed   = "bits_per_second_smoothed"
	BytesPerSecondBaseline  = "bytes_per_second_baseline" // slow moving average, for drop detection
	RetransmittedPerSecond  = "retransmissions_per_second"
	HandshakesPerSecond     = "handshakes_per_second"
	UnansweredSYNsPerSecond = "unanswered_syns_per_second"
)

// Row is one rolled-up series at one tick.
type Row struct {
	Scope string
	Key   string
	// Labels describe the key: exporter, interface (line); project; vm;
	// protocol, port (service); exporter (exporter).
	Labels map[string]string
	// Values are the measurements by the names above; a value that could not
	// be measured in the window (no TCP handshake seen, say) is absent.
	Values map[string]float64
	// Top lists the heaviest talkers (line and project rows only), heaviest
	// first.
	Top []Talker
}

// Talker is one source address and its share of a row's bytes per second.
type Talker struct {
	Addr           netip.Addr
	BytesPerSecond float64
}

// Snapshot is every row at one tick. Time is the end of the window the rates
// cover (event time: the flows' own clocks, spread over their spans).
type Snapshot struct {
	Time time.Time
	Rows []Row
}

// Subscriber receives each snapshot; it must not keep or change it after
// returning.
type Subscriber interface {
	Rollup(s *Snapshot)
}
