// Package vsphere is the collector's vCenter enrichment: it loads the
// inventory (VMs with their addresses and MACs, hosts, clusters,
// datacenters, port groups and VLANs, projects) once through a property
// collector, follows its changes with WaitForUpdatesEx, and fills
// source.vsphere.* and destination.vsphere.* of every flow from an immutable
// snapshot, without locks or allocations on the hot path.
package vsphere

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/lifecycle"
	"github.com/spanflow/spanflow/internal/reporter"
)

// Component follows one vCenter and enriches flows from its inventory.
type Component struct {
	r       *reporter.Reporter
	config  Configuration
	rules   []ProjectRule
	metrics *metrics
	limited *reporter.Limited

	snap    atomic.Pointer[Snapshot]
	synced  atomic.Int64 // unix nanoseconds when vCenter last answered with the inventory loaded
	started atomic.Int64 // unix nanoseconds when Start was called

	lastErr atomic.Pointer[error] // why the last session ended

	loadedOnce sync.Once
	loaded     chan struct{}

	mu sync.Mutex // guards the session's model between its updater and rebuilder
	t  lifecycle.Tracker
}

// New checks the configuration and returns the component; Start connects.
func New(r *reporter.Reporter, config Configuration) (*Component, error) {
	if err := config.Validate(); err != nil {
		return nil, err
	}
	rules, err := config.parseRules()
	if err != nil {
		return nil, err
	}
	c := &Component{r: r, config: config, rules: rules, loaded: make(chan struct{}),
		limited: reporter.NewLimited(r.Log, time.Minute)}
	c.metrics = newMetrics(r, c)
	return c, nil
}

// Name names the component in lifecycle errors.
func (c *Component) Name() string { return "vsphere" }

// Start follows vCenter in the background. It waits up to StartWait for the
// first load, never fails on an unreachable vCenter (it retries with
// backoff), and until the first load flows pass unenriched.
func (c *Component) Start() error {
	c.started.Store(time.Now().UnixNano())
	c.t.Go(c.run)
	if c.config.StartWait > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), c.config.StartWait)
		defer cancel()
		if err := c.WaitLoaded(ctx); err != nil {
			c.r.Log.Warn("vcenter inventory not loaded yet; flows pass without vsphere fields until it is",
				"waited", c.config.StartWait, "last_error", c.LastError())
		}
	}
	return nil
}

// Stop ends the session with vCenter and waits for it.
func (c *Component) Stop() error { return c.t.Stop() }

// Snapshot returns the current inventory snapshot, nil before the first load.
func (c *Component) Snapshot() *Snapshot { return c.snap.Load() }

// LastError is why the last session with vCenter ended (nil before any
// ended): a bad password, an unreachable host, a certificate problem.
func (c *Component) LastError() error {
	if p := c.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// WaitLoaded waits until the first inventory is loaded or ctx ends.
func (c *Component) WaitLoaded(ctx context.Context) error {
	select {
	case <-c.loaded:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the vcenter inventory: %w", ctx.Err())
	}
}

// lastByte is a's last byte (As16's, without its 16-byte copy for IPv4).
func lastByte(a netip.Addr) byte {
	if a.Is4() {
		return a.As4()[3]
	}
	return a.As16()[15]
}

// Enrich fills r.Src.VSphere and r.Dst.VSphere when the address (or MAC) of
// that end belongs to a powered-on VM. The values are shared between records
// and must not be modified.
func (c *Component) Enrich(r *flow.Record) {
	s := c.snap.Load()
	if s == nil {
		return
	}
	var vni uint32
	if r.SegmentID <= math.MaxUint32 {
		vni = uint32(r.SegmentID)
	}
	shard := lastByte(r.SrcAddr) ^ lastByte(r.DstAddr)
	vs, srcRes := s.Lookup(r.SrcAddr, r.SrcMAC, r.VLAN, vni)
	if vs != nil {
		r.Src.VSphere = vs
	}
	vs, dstRes := s.Lookup(r.DstAddr, r.DstMAC, r.VLAN, vni)
	if vs != nil {
		r.Dst.VSphere = vs
	}
	if srcRes == dstRes {
		c.metrics.lookups.add(shard, srcRes, 2)
	} else {
		c.metrics.lookups.add(shard, srcRes, 1)
		c.metrics.lookups.add(shard, dstRes, 1)
	}
}

func (c *Component) syncedAt() time.Time {
	n := c.synced.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// staleSince is when the enrichment last had a current inventory: the last
// answer from vCenter, or, before any load, the start (flows have gone
// unenriched since), zero before Start.
func (c *Component) staleSince() time.Time {
	if t := c.syncedAt(); !t.IsZero() {
		return t
	}
	if n := c.started.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

func (c *Component) publish(vms []VM) {
	s := NewSnapshot(vms, time.Now())
	c.snap.Store(s)
	addrs, _ := s.Len()
	c.metrics.vms.Set(float64(len(vms)))
	c.metrics.addresses.Set(float64(addrs))
	c.metrics.rebuilds.Inc()
	c.loadedOnce.Do(func() { close(c.loaded) })
}

// run keeps a session with vCenter up, reconnecting with exponential backoff;
// the last snapshot keeps serving flows meanwhile.
func (c *Component) run(ctx context.Context) error {
	backoff := c.config.ReconnectMin
	for {
		loaded, err := c.session(ctx)
		c.metrics.connected.Set(0)
		if ctx.Err() != nil {
			return nil
		}
		if loaded {
			backoff = c.config.ReconnectMin // the session worked: vCenter went away, retry quickly
		}
		if err == nil {
			err = errors.New("session ended")
		}
		c.lastErr.Store(&err)
		refused := fault.Is(err, &types.InvalidLogin{})
		if refused {
			// Not an outage, and retried quickly it would lock the account
			// (vCenter locks it after 5 failed logins in 3 minutes by
			// default): retry at the longest interval only.
			backoff = c.config.ReconnectMax
		}
		switch {
		case refused && c.snap.Load() == nil:
			c.r.Log.Warn("vcenter refused the login; flows pass without vsphere fields until the inventory is loaded", "url", redact(c.config.URL),
				"error", err, "retry_in", backoff)
		case refused:
			c.r.Log.Warn("vcenter refused the login; serving the last inventory", "url", redact(c.config.URL),
				"error", err, "retry_in", backoff, "inventory_age", time.Duration(age(c.syncedAt())*float64(time.Second)).Round(time.Second))
		case c.snap.Load() == nil:
			// Nothing loaded yet: there is no last inventory to serve.
			c.r.Log.Warn("vcenter unreachable; flows pass without vsphere fields until the inventory is loaded", "url", redact(c.config.URL),
				"error", err, "retry_in", backoff)
		default:
			c.r.Log.Warn("vcenter unreachable; serving the last inventory", "url", redact(c.config.URL),
				"error", err, "retry_in", backoff, "inventory_age", time.Duration(age(c.syncedAt())*float64(time.Second)).Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, c.config.ReconnectMax)
	}
}
