// Package rollup keeps the collector's real-time view of its traffic: on a
// one-second tick, rates and TCP health per line (exporter + interface),
// project, VM, service (protocol + server port) and exporter, and the top
// talkers per line and project from a bounded heavy-hitter sketch. Alert rules
// (package alert), the rollups index and the Prometheus metrics all read the
// Snapshot it publishes every tick.
package rollup

import (
	"math/bits"
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
	Values Values
	// Top lists the heaviest talkers (line and project rows only), heaviest
	// first.
	Top []Talker
}

// A ValueID stands for one of the value names above (ValueOf), for
// readers that look the same value up in every row.
type ValueID uint8

// The values by ID, in the order of valueNames.
const (
	vBytes ValueID = iota
	vPackets
	vFlows
	vBytesSmoothed
	vPacketsSmoothed
	vFlowsSmoothed
	vRTTp50
	vRTTp95
	vRTTp99
	vRetransRatio
	vZeroWindows
	vBits
	vBitsSmoothed
	vBaseline
	vRetrans
	vHandshakes
	vSYNs
	vAge
	numValues
)

// valueNames are the values rows carry, by ValueID.
var valueNames = [numValues]string{BytesPerSecond, PacketsPerSecond, FlowsPerSecond, BytesPerSecondSmoothed,
	PacketsPerSecondSmooth, FlowsPerSecondSmoothed, RTTp50, RTTp95, RTTp99, RetransmissionRatio,
	ZeroWindowsPerSecond, BitsPerSecond, BitsPerSecondSmoothed, BytesPerSecondBaseline,
	RetransmittedPerSecond, HandshakesPerSecond, UnansweredSYNsPerSecond, SeriesAgeSeconds}

var valueIDs = func() map[string]ValueID {
	m := make(map[string]ValueID, numValues)
	for i, n := range valueNames {
		m[n] = ValueID(i)
	}
	return m
}()

// ValueOf is the ID of a value name, false for a name rows never carry.
func ValueOf(name string) (ValueID, bool) {
	id, ok := valueIDs[name]
	return id, ok
}

// Values are a row's measurements: a fixed array, so that filling
// thousands of rows every tick costs no hashing.
type Values struct {
	v   [numValues]float64
	has uint32 // bit i: v[i] measured
}

// ValuesOf makes Values from a map (names rows never carry are ignored):
// for tests and for rows built outside the engine.
func ValuesOf(m map[string]float64) Values {
	var v Values
	for n, x := range m {
		if id, ok := valueIDs[n]; ok {
			v.set(id, x)
		}
	}
	return v
}

func (v *Values) set(id ValueID, x float64) { v.v[id], v.has = x, v.has|1<<id }
func (v *Values) del(id ValueID)            { v.v[id], v.has = 0, v.has&^(1<<id) }

// At is the value of id, and whether it was measured.
func (v *Values) At(id ValueID) (float64, bool) { return v.v[id], v.has&(1<<id) != 0 }

// Get is the value named name, and whether it was measured (0, false for
// a name rows never carry).
func (v *Values) Get(name string) (float64, bool) {
	id, ok := valueIDs[name]
	if !ok {
		return 0, false
	}
	return v.At(id)
}

// Of is the value named name, 0 when it was not measured.
func (v *Values) Of(name string) float64 {
	x, _ := v.Get(name)
	return x
}

// Len is how many values were measured.
func (v *Values) Len() int { return bits.OnesCount32(v.has) }

// Each calls fn for every measured value, in ValueID order.
func (v *Values) Each(fn func(name string, x float64)) {
	for h := v.has; h != 0; h &= h - 1 {
		id := bits.TrailingZeros32(h)
		fn(valueNames[id], v.v[id])
	}
}

// Map is the measured values by name (a new map).
func (v *Values) Map() map[string]float64 {
	m := make(map[string]float64, v.Len())
	v.Each(func(n string, x float64) { m[n] = x })
	return m
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
	// Layout names the rows' scopes, keys, labels and order: while a
	// snapshot (the same *Snapshot) keeps its Layout from one tick to the
	// next, its rows are the same series in the same places, and a reader
	// may keep what it worked out per row (alert.Evaluator: which rules
	// match which rows). 0 promises nothing.
	Layout uint64
}

// Subscriber receives each snapshot; it must not keep or change it after
// returning.
type Subscriber interface {
	Rollup(s *Snapshot)
}
