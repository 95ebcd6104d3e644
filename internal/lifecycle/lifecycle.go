// Package lifecycle runs spanflow's components: each one is started in order,
// stopped in reverse, and the goroutines it spawns are tracked so that Stop
// returns only when they have all ended.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Component is a part of a running service (a listener, a decoder pool, an
// output). Start must not block; Stop must release everything Start acquired.
type Component interface {
	Start() error
	Stop() error
}

// Named components are reported by name in errors.
type Named interface {
	Name() string
}

func nameOf(c Component) string {
	if n, ok := c.(Named); ok {
		return n.Name()
	}
	return fmt.Sprintf("%T", c)
}

// Group starts components in order and stops them in reverse.
type Group struct {
	mu      sync.Mutex
	started []Component
}

// Start starts each component in turn. When one fails, those already started
// are stopped in reverse order and the error says which one failed.
func (g *Group) Start(components ...Component) error {
	for _, c := range components {
		if err := c.Start(); err != nil {
			stopErr := g.Stop()
			return errors.Join(fmt.Errorf("start %s: %w", nameOf(c), err), stopErr)
		}
		g.mu.Lock()
		g.started = append(g.started, c)
		g.mu.Unlock()
	}
	return nil
}

// Stop stops every started component, last started first, and returns all
// their errors joined.
func (g *Group) Stop() error {
	g.mu.Lock()
	started := g.started
	g.started = nil
	g.mu.Unlock()
	var errs []error
	for i := len(started) - 1; i >= 0; i-- {
		if err := started[i].Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", nameOf(started[i]), err))
		}
	}
	return errors.Join(errs...)
}

// Tracker tracks the goroutines of one component: Go starts one, Stop cancels
// their context and waits for all of them.
type Tracker struct {
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error
}

func (t *Tracker) init() {
	t.once.Do(func() { t.ctx, t.cancel = context.WithCancel(context.Background()) })
}

// Context is cancelled when Stop is called.
func (t *Tracker) Context() context.Context {
	t.init()
	return t.ctx
}

// Go runs f in a tracked goroutine. The first non-nil error f returns is kept
// for Err, and cancels the others' context.
func (t *Tracker) Go(f func(ctx context.Context) error) {
	t.init()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		if err := f(t.ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.mu.Lock()
			if t.err == nil {
				t.err = err
			}
			t.mu.Unlock()
			t.cancel()
		}
	}()
}

// Every runs f in a tracked goroutine every interval, with the tick's time,
// until Stop. A tick that comes while f still runs is dropped, as with
// time.Ticker.
func (t *Tracker) Every(interval time.Duration, f func(now time.Time)) {
	t.Go(func(ctx context.Context) error {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case now := <-tick.C:
				f(now)
			}
		}
	})
}

// Stop cancels the context, waits for every goroutine and returns the first error.
func (t *Tracker) Stop() error {
	t.init()
	t.cancel()
	t.wg.Wait()
	return t.Err()
}

// Wait waits for every goroutine without cancelling them.
func (t *Tracker) Wait() error {
	t.wg.Wait()
	return t.Err()
}

// Err is the first error a goroutine returned.
func (t *Tracker) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}
