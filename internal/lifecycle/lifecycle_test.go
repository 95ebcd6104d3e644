package lifecycle

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type recorder struct {
	name     string
	log      *[]string
	startErr error
}

func (r *recorder) Name() string { return r.name }
func (r *recorder) Start() error {
	*r.log = append(*r.log, "start "+r.name)
	return r.startErr
}
func (r *recorder) Stop() error {
	*r.log = append(*r.log, "stop "+r.name)
	return nil
}

func TestGroupOrder(t *testing.T) {
	cases := []struct {
		name    string
		failAt  int // -1: none
		want    []string
		wantErr string
	}{
		{name: "all start", failAt: -1, want: []string{"start a", "start b", "start c", "stop c", "stop b", "stop a"}},
		{name: "third fails", failAt: 2, want: []string{"start a", "start b", "start c", "stop b", "stop a"}, wantErr: "start c: boom"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var log []string
			var g Group
			cs := []Component{}
			for i, n := range []string{"a", "b", "c"} {
				r := &recorder{name: n, log: &log}
				if i == c.failAt {
					r.startErr = errors.New("boom")
				}
				cs = append(cs, r)
			}
			err := g.Start(cs...)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("Start: %v", err)
				}
				if err := g.Stop(); err != nil {
					t.Fatalf("Stop: %v", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("Start error = %v, want %q", err, c.wantErr)
			}
			if d := cmp.Diff(log, c.want); d != "" {
				t.Errorf("calls (-got, +want):\n%s", d)
			}
		})
	}
}

func TestTrackerWaitsAndKeepsFirstError(t *testing.T) {
	var tr Tracker
	var ended atomic.Int32
	for range 3 {
		tr.Go(func(ctx context.Context) error {
			<-ctx.Done()
			ended.Add(1)
			return ctx.Err()
		})
	}
	tr.Go(func(context.Context) error { return errors.New("listener died") })
	// The failing goroutine cancels the others; Wait returns its error.
	if err := tr.Wait(); err == nil || err.Error() != "listener died" {
		t.Fatalf("Wait = %v, want listener died", err)
	}
	if ended.Load() != 3 {
		t.Errorf("%d goroutines ended, want 3", ended.Load())
	}
	if err := tr.Stop(); err == nil {
		t.Error("Stop lost the error")
	}
}

func TestTrackerEvery(t *testing.T) {
	var tr Tracker
	ticks := make(chan time.Time)
	tr.Every(time.Millisecond, func(now time.Time) {
		select {
		case ticks <- now:
		case <-tr.Context().Done():
		}
	})
	first, second := <-ticks, <-ticks
	if !second.After(first) {
		t.Errorf("second tick %v is not after the first %v", second, first)
	}
	if err := tr.Stop(); err != nil {
		t.Errorf("Stop = %v, want nil", err)
	}
	select {
	case now := <-ticks:
		t.Errorf("f ran at %v after Stop returned", now)
	case <-time.After(10 * time.Millisecond):
	}
}
