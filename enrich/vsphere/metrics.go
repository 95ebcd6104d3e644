package vsphere

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spanflow/spanflow/internal/reporter"
)

type metrics struct {
	lookupFound, lookupUnknown, lookupAmbiguous prometheus.Counter
	connected                                   prometheus.Gauge
	connects                                    *prometheus.CounterVec
	updates                                     prometheus.Counter
	refetches                                   prometheus.Counter
	rebuilds                                    prometheus.Counter
	loadSeconds                                 prometheus.Gauge
	vms, addresses                              prometheus.Gauge
}

func newMetrics(r *reporter.Reporter, c *Component) *metrics {
	f := r.Factory("vsphere")
	lookups := f.CounterVec("lookups_total",
		"Flow ends looked up in the vCenter inventory, by result: found, unknown (no VM has the address or MAC), ambiguous (several VMs have it and the VLAN/VNI does not tell which).",
		"result")
	m := &metrics{
		lookupFound:     lookups.WithLabelValues("found"),
		lookupUnknown:   lookups.WithLabelValues("unknown"),
		lookupAmbiguous: lookups.WithLabelValues("ambiguous"),
		connected:       f.Gauge("connected", "1 while a session with vCenter is up and its inventory loaded, else 0."),
		connects: f.CounterVec("connects_total",
			"Attempts to connect to vCenter and load its inventory, by outcome (ok, error).", "outcome"),
		updates:     f.Counter("updates_total", "Object updates received from vCenter (initial load included)."),
		refetches:   f.Counter("refetches_total", "Objects read again whole because vCenter reported a change inside a followed property."),
		rebuilds:    f.Counter("snapshot_rebuilds_total", "Lookup snapshots built from the inventory."),
		loadSeconds: f.Gauge("initial_load_seconds", "How long the last full inventory load took, from login to the first snapshot."),
		vms:         f.Gauge("vms", "Virtual machines in the current inventory snapshot (templates excluded)."),
		addresses:   f.Gauge("addresses", "IP addresses indexed in the current inventory snapshot (powered-on VMs)."),
	}
	f.GaugeFunc("inventory_age_seconds",
		"Seconds since the inventory was last known to be current (vCenter last answered); grows while vCenter is unreachable and the last inventory is served. 0 before the first load.",
		func() float64 { return age(c.syncedAt()) })
	return m
}
