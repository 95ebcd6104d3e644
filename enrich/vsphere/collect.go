package vsphere

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// redact drops any user information from a URL before it is logged.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	u.User = nil
	return u.String()
}

// client is one logged-in session with vCenter.
type client struct {
	vc   *vim25.Client
	user *url.Userinfo
}

func (c *Component) connect(ctx context.Context) (*client, error) {
	u, err := soap.ParseURL(c.config.URL)
	if err != nil {
		return nil, fmt.Errorf("parse vcenter url: %w", err)
	}
	user := u.User
	u.User = nil
	if c.config.User != "" {
		user = url.UserPassword(c.config.User, c.config.Password)
	}
	sc := soap.NewClient(u, c.config.Insecure)
	if c.config.CAFile != "" {
		if err := sc.SetRootCAs(c.config.CAFile); err != nil {
			return nil, fmt.Errorf("load vcenter CA %s: %w", c.config.CAFile, err)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, c.config.RequestTimeout)
	defer cancel()
	vc, err := vim25.NewClient(rctx, sc)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", redact(c.config.URL), err)
	}
	if err := session.NewManager(vc).Login(rctx, user); err != nil {
		return nil, fmt.Errorf("log in to %s as %s: %w", redact(c.config.URL), user.Username(), err)
	}
	return &client{vc: vc, user: user}, nil
}

// logoutTimeout bounds the calls that end a session (logouts, destroying
// our own server-side objects), which run even when the session's context is
// done.
const logoutTimeout = 5 * time.Second

func (cl *client) close() {
	ctx, cancel := context.WithTimeout(context.Background(), logoutTimeout)
	defer cancel()
	_ = session.NewManager(cl.vc).Logout(ctx)
	cl.vc.CloseIdleConnections()
}

// destroy removes a server-side object (property collector, view) at the end
// of a session, even when the session's context is already cancelled.
func destroy(obj interface{ Destroy(context.Context) error }) {
	ctx, cancel := context.WithTimeout(context.Background(), logoutTimeout)
	defer cancel()
	_ = obj.Destroy(ctx)
}

func propSpecs() []types.PropertySpec {
	specs := make([]types.PropertySpec, 0, len(followed))
	for typ, paths := range followed {
		specs = append(specs, types.PropertySpec{Type: typ, PathSet: paths})
	}
	return specs
}

// session connects, loads the inventory and follows its changes until an
// error or ctx ends. loaded says whether the initial load completed.
func (c *Component) session(ctx context.Context) (loaded bool, err error) {
	start := time.Now()
	cl, err := c.connect(ctx)
	if err != nil {
		c.metrics.connects.WithLabelValues("error").Inc()
		return false, err
	}
	defer cl.close()
	vc := cl.vc

	rctx, cancel := context.WithTimeout(ctx, c.config.RequestTimeout)
	// A collector of our own: its filter goes with it when the session ends.
	pc, err := property.DefaultCollector(vc).Create(rctx)
	if err != nil {
		cancel()
		c.metrics.connects.WithLabelValues("error").Inc()
		return false, fmt.Errorf("create property collector: %w", err)
	}
	defer destroy(pc)
	cv, err := view.NewManager(vc).CreateContainerView(rctx, vc.ServiceContent.RootFolder, viewTypes, true)
	if err != nil {
		cancel()
		c.metrics.connects.WithLabelValues("error").Inc()
		return false, fmt.Errorf("create container view: %w", err)
	}
	defer destroy(cv)
	objects := []types.ObjectSpec{{
		Obj:  cv.Reference(),
		Skip: types.NewBool(true),
		SelectSet: []types.BaseSelectionSpec{&types.TraversalSpec{
			Type: "ContainerView", Path: "view", Skip: types.NewBool(false),
		}},
	}}
	if cfm := vc.ServiceContent.CustomFieldsManager; cfm != nil {
		objects = append(objects, types.ObjectSpec{Obj: *cfm})
	}
	_, err = pc.CreateFilter(rctx, types.CreateFilter{
		Spec: types.PropertyFilterSpec{ObjectSet: objects, PropSet: propSpecs()},
		// Report a change inside a followed property as the whole property.
		PartialUpdates: false,
	})
	cancel()
	if err != nil {
		c.metrics.connects.WithLabelValues("error").Inc()
		return false, fmt.Errorf("create property filter: %w", err)
	}

	m := newModel()
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		// Runs before the clean-up above, which may wait for a vCenter
		// that stopped answering: the session is over now.
		c.metrics.connected.Set(0)
		stop()
		wg.Wait()
	}()
	dirty := make(chan struct{}, 1)
	markDirty := func() {
		select {
		case dirty <- struct{}{}:
		default:
		}
	}
	if c.hasTagRules() {
		// Tags are read before the first snapshot so it has its projects,
		// then refreshed: the tagging service has no change feed.
		c.readTags(sctx, cl, m)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.followTags(sctx, cl, m, markDirty)
		}()
	}

	version := ""
	waitSecs := int32(c.config.MaxWait / time.Second)
	for {
		wctx, wcancel := context.WithTimeout(ctx, c.config.MaxWait+c.config.RequestTimeout)
		res, err := methods.WaitForUpdatesEx(wctx, vc, &types.WaitForUpdatesEx{
			This: pc.Reference(), Version: version,
			Options: &types.WaitOptions{MaxWaitSeconds: &waitSecs},
		})
		wcancel()
		if err != nil {
			if !loaded {
				c.metrics.connects.WithLabelValues("error").Inc()
			}
			return loaded, fmt.Errorf("wait for inventory updates: %w", err)
		}
		if loaded {
			c.synced.Store(time.Now().UnixNano())
		}
		set := res.Returnval
		if set == nil {
			continue // MaxWait passed without a change
		}
		version = set.Version
		var refetch []types.ManagedObjectReference
		c.mu.Lock()
		for _, fs := range set.FilterSet {
			for _, ou := range fs.ObjectSet {
				c.metrics.updates.Inc()
				if !m.apply(ou) {
					refetch = append(refetch, ou.Obj)
				}
			}
		}
		c.mu.Unlock()
		if len(refetch) > 0 {
			if err := c.refetch(ctx, pc, m, refetch); err != nil {
				return loaded, err
			}
		}
		if set.Truncated != nil && *set.Truncated {
			continue // the rest of the initial load follows at once
		}
		if !loaded {
			loaded = true
			c.mu.Lock()
			vms := m.build(c.rules, c.config.VNIs)
			c.mu.Unlock()
			took := time.Since(start)
			// Metrics and log first: publishing releases WaitLoaded.
			c.synced.Store(time.Now().UnixNano())
			c.metrics.connected.Set(1)
			c.metrics.connects.WithLabelValues("ok").Inc()
			c.metrics.loadSeconds.Set(took.Seconds())
			c.r.Log.Info("vcenter inventory loaded", "url", redact(c.config.URL), "vms", len(vms), "took", took.Round(time.Millisecond))
			c.publish(vms)
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.rebuild(sctx, m, dirty)
			}()
			continue
		}
		markDirty()
	}
}

// rebuild publishes a new snapshot after changes, at most once per
// RebuildInterval.
func (c *Component) rebuild(ctx context.Context, m *model, dirty <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-dirty:
		}
		c.mu.Lock()
		vms := m.build(c.rules, c.config.VNIs)
		c.mu.Unlock()
		c.publish(vms)
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.config.RebuildInterval):
		}
	}
}

// refetch reads whole the objects vCenter reported a nested change for.
func (c *Component) refetch(ctx context.Context, pc *property.Collector, m *model, refs []types.ManagedObjectReference) error {
	c.metrics.refetches.Add(float64(len(refs)))
	objs := make([]types.ObjectSpec, 0, len(refs))
	for _, r := range refs {
		objs = append(objs, types.ObjectSpec{Obj: r})
	}
	rctx, cancel := context.WithTimeout(ctx, c.config.RequestTimeout)
	defer cancel()
	res, err := pc.RetrieveProperties(rctx, types.RetrieveProperties{
		SpecSet: []types.PropertyFilterSpec{{ObjectSet: objs, PropSet: propSpecs()}},
	})
	if err != nil {
		// An object deleted meanwhile makes the whole call fail; its leave
		// update follows, so this is not worth a reconnect.
		c.limited.Warn("refetch", "read changed vcenter objects again", "objects", len(refs), "error", err)
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, oc := range res.Returnval {
		m.applyContent(oc)
	}
	return nil
}

func (c *Component) hasTagRules() bool {
	for _, r := range c.rules {
		if r.Kind == RuleTag {
			return true
		}
	}
	return false
}

func (c *Component) followTags(ctx context.Context, cl *client, m *model, markDirty func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.config.TagRefresh):
		}
		if c.readTags(ctx, cl, m) {
			markDirty()
		}
	}
}

// readTags reads, for every tag rule, which VM carries which tag of its
// category. A failure keeps the previous assignments; it reports whether
// anything was read.
func (c *Component) readTags(ctx context.Context, cl *client, m *model) bool {
	rctx, cancel := context.WithTimeout(ctx, c.config.RequestTimeout)
	defer cancel()
	rc := rest.NewClient(cl.vc)
	if err := rc.Login(rctx, cl.user); err != nil {
		c.limited.Warn("tags-login", "log in to the vcenter tagging service; tag project rules keep their last answer", "error", err)
		return false
	}
	defer func() {
		// Bounded on its own: a vCenter gone silent (a connection black-holed
		// by a firewall, a failed-over load balancer) would otherwise hold
		// the logout, the session and Stop forever, since nothing else
		// times the HTTP request out.
		lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), logoutTimeout)
		defer lcancel()
		_ = rc.Logout(lctx)
	}()
	mgr := tags.NewManager(rc)
	read := map[string]map[string]string{}
	for _, r := range c.rules {
		if r.Kind != RuleTag {
			continue
		}
		byVM, err := readCategory(rctx, mgr, r.Name)
		if err != nil {
			c.limited.Warn("tags-"+r.Name, "read vcenter tags; this rule keeps its last answer", "category", r.Name, "error", err)
			continue
		}
		read[r.Name] = byVM
	}
	if len(read) == 0 {
		return false
	}
	c.mu.Lock()
	for k, v := range read {
		m.tagRules[k] = v
	}
	c.mu.Unlock()
	return true
}

func readCategory(ctx context.Context, mgr *tags.Manager, category string) (map[string]string, error) {
	ids, err := mgr.ListTagsForCategory(ctx, category)
	if err != nil {
		return nil, fmt.Errorf("list tags of category %s: %w", category, err)
	}
	byVM := map[string]string{}
	if len(ids) == 0 {
		return byVM, nil
	}
	attached, err := mgr.GetAttachedObjectsOnTags(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("list objects tagged in category %s: %w", category, err)
	}
	for _, a := range attached {
		if a.Tag == nil {
			return nil, errors.New("tag association without its tag")
		}
		for _, o := range a.ObjectIDs {
			r := o.Reference()
			if r.Type != "VirtualMachine" {
				continue
			}
			// A category meant for projects allows one tag per object; if not,
			// keep the smallest name so the answer does not flap.
			if prev, ok := byVM[r.Value]; !ok || a.Tag.Name < prev {
				byVM[r.Value] = a.Tag.Name
			}
		}
	}
	return byVM, nil
}
