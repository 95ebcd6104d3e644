package vsphere

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spanflow/spanflow/internal/reporter"
)

// lookupCounts counts lookup results on the hot path. Collector workers on
// several cores would all hit one counter's cache line; spreading the counts
// over shards picked by address keeps them apart. Scrapes add the shards up.
type lookupCounts struct {
	shards [16]struct {
		found, unknown, ambiguous atomic.Uint64
		_                         [40]byte // one shard per 64-byte cache line
	}
}

func (l *lookupCounts) add(shard uint8, res Result, n uint64) {
	s := &l.shards[shard&15]
	switch res {
	case Found:
		s.found.Add(n)
	case Ambiguous:
		s.ambiguous.Add(n)
	default:
		s.unknown.Add(n)
	}
}

func (l *lookupCounts) sum(res Result) float64 {
	var t uint64
	for i := range l.shards {
		s := &l.shards[i]
		switch res {
		case Found:
			t += s.found.Load()
		case Ambiguous:
			t += s.ambiguous.Load()
		default:
			t += s.unknown.Load()
		}
	}
	return float64(t)
}

type metrics struct {
	lookups        lookupCounts
	connected      prometheus.Gauge
	connects       *prometheus.CounterVec
	updates        prometheus.Counter
	refetches      prometheus.Counter
	rebuilds       prometheus.Counter
	loadSeconds    prometheus.Gauge
	vms, addresses prometheus.Gauge
}

func newMetrics(r *reporter.Reporter, c *Component) *metrics {
	f := r.Factory("vsphere")
	m := &metrics{
		connected: f.Gauge("connected", "1 while a session with vCenter is up and its inventory loaded, else 0."),
		connects: f.CounterVec("connects_total",
			"Attempts to connect to vCenter and load its inventory, by outcome (ok, error).", "outcome"),
		updates:     f.Counter("updates_total", "Object updates received from vCenter (initial load included)."),
		refetches:   f.Counter("refetches_total", "Objects read again whole because vCenter reported a change inside a followed property."),
		rebuilds:    f.Counter("snapshot_rebuilds_total", "Lookup snapshots built from the inventory."),
		loadSeconds: f.Gauge("initial_load_seconds", "How long the last full inventory load took, from login to the first snapshot."),
		vms:         f.Gauge("vms", "Virtual machines in the current inventory snapshot (templates excluded)."),
		addresses:   f.Gauge("addresses", "IP addresses indexed in the current inventory snapshot (powered-on VMs)."),
	}
	lookupsDesc := prometheus.NewDesc("spanflow_vsphere_lookups_total",
		"Flow ends looked up in the vCenter inventory, by result: found, unknown (no VM has the address or MAC), ambiguous (several VMs have it and the VLAN/VNI does not tell which).",
		[]string{"result"}, nil)
	r.Registry.MustRegister(lookupsCollector{desc: lookupsDesc, counts: &m.lookups})
	f.GaugeFunc("inventory_age_seconds",
		"Seconds since the inventory was last known to be current (vCenter last answered); grows while vCenter is unreachable and the last inventory is served, and from the start until the first load (flows pass unenriched meanwhile).",
		func() float64 { return age(c.staleSince()) })
	return m
}

// lookupsCollector exposes lookupCounts as spanflow_vsphere_lookups_total.
type lookupsCollector struct {
	desc   *prometheus.Desc
	counts *lookupCounts
}

func (l lookupsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- l.desc }

func (l lookupsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range []struct {
		res   Result
		label string
	}{{Found, "found"}, {Unknown, "unknown"}, {Ambiguous, "ambiguous"}} {
		ch <- prometheus.MustNewConstMetric(l.desc, prometheus.CounterValue, l.counts.sum(r.res), r.label)
	}
}
