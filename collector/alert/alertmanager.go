package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spanflow/spanflow/internal/lifecycle"
	"github.com/spanflow/spanflow/internal/reporter"
)

// Alertmanager delivers to Prometheus Alertmanager's v2 API: every change is
// posted at once, and every firing alert is posted again every resend
// interval with an endsAt a few intervals ahead, as Alertmanager's clients
// must (an Alertmanager that restarted learns them again; one that stops
// hearing of them resolves them). A resolved alert is posted with its
// endsAt a few times, then forgotten.
//
// A wake posts the alerts changed since the last post (and those whose
// post failed), the resend tick all of them, in requests of at most
// amChunk alerts; the requests are built outside the lock that Send (on
// the detectors' path) takes. Posting every alert on every change held
// that lock 0.6 s and sent 127 MB per change with 100,000 alerts firing (a
// storm of new peers).
type Alertmanager struct {
	r       *reporter.Reporter
	m       *metrics
	urls    []string
	resend  time.Duration
	client  *http.Client
	mu      sync.Mutex
	active  map[string]*amAlert // fingerprint →
	changed []*amAlert          // to post at the next wake, each once (amAlert.queued)
	wake    chan struct{}
	t       lifecycle.Tracker
	warn    *reporter.Limited
	maxKeep int
	posting atomic.Bool // postAll is running
}

type amAlert struct {
	a         Alert
	gen       uint64          // Send calls that changed it
	resolves  int             // resolved posts left
	delivered map[string]bool // url → this state delivered once
	queued    bool            // in Alertmanager.changed
	gone      bool            // forgotten (its resolution posted enough)
}

const (
	// resolvedPosts: how many times a resolution is posted.
	resolvedPosts = 3
	// amChunk: alerts per request.
	amChunk = 1000
)

// NewAlertmanager posts to the Alertmanagers at urls (http://host:9093).
func NewAlertmanager(r *reporter.Reporter, m *metrics, urls []string, resend time.Duration) *Alertmanager {
	if resend <= 0 {
		resend = 30 * time.Second
	}
	return &Alertmanager{r: r, m: m, urls: urls, resend: resend, client: &http.Client{Timeout: 10 * time.Second},
		active: map[string]*amAlert{}, wake: make(chan struct{}, 1), warn: reporter.NewLimited(r.Log, time.Minute),
		maxKeep: 100000}
}

// Name of the sink.
func (s *Alertmanager) Name() string { return "alertmanager" }

// Send records the alert's new state and wakes the poster.
func (s *Alertmanager) Send(a Alert) {
	fp := a.Fingerprint()
	s.mu.Lock()
	x := s.active[fp]
	switch {
	case x != nil:
		x.a = a
		x.gen++
		x.resolves = resolvedPosts
		clear(x.delivered)
	case len(s.active) >= s.maxKeep:
		s.mu.Unlock()
		s.m.dropped.WithLabelValues(s.Name()).Inc()
		s.warn.Warn("full", "too many alerts for Alertmanager: dropped (counted)", "rule", a.Rule)
		return
	default:
		x = &amAlert{a: a, resolves: resolvedPosts, delivered: map[string]bool{}}
		s.active[fp] = x
	}
	s.queue(x)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// queue puts x in the changes to post; s.mu is held.
func (s *Alertmanager) queue(x *amAlert) {
	if !x.queued && !x.gone {
		x.queued = true
		s.changed = append(s.changed, x)
	}
}

// Start runs the poster.
func (s *Alertmanager) Start() error {
	s.t.Go(func(ctx context.Context) error {
		tick := time.NewTicker(s.resend)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-s.wake:
				s.postAll(ctx, false)
			case <-tick.C:
				s.postAll(ctx, true)
			}
		}
	})
	return nil
}

// Stop stops the poster once the changes are posted, or after stopGrace
// (the end of a --pcap replay changed them all within milliseconds);
// firing alerts resolve by their endsAt unless spanflow comes back and
// posts them again.
func (s *Alertmanager) Stop() error {
	pollUntil(stopGrace, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.changed) == 0 && !s.posting.Load()
	})
	return s.t.Stop()
}

// amPayload is one alert of POST /api/v2/alerts (postableAlert).
type amPayload struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     string            `json:"startsAt"`
	EndsAt       string            `json:"endsAt,omitempty"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// amPost is an alert as taken for a post: its state then, and its Send
// count then (a later Send is not marked delivered by this post).
type amPost struct {
	x   *amAlert
	a   Alert
	gen uint64
}

// take returns what to post: every alert (all), or the changed ones. A
// resolution counts down its posts here and is forgotten after the last.
func (s *Alertmanager) take(all bool) []amPost {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []amPost
	if all {
		out = make([]amPost, 0, len(s.active))
	}
	add := func(x *amAlert) {
		out = append(out, amPost{x: x, a: x.a, gen: x.gen})
		if !x.a.Firing() {
			if x.resolves--; x.resolves <= 0 {
				x.gone = true
				delete(s.active, x.a.Fingerprint())
			}
		}
	}
	for _, x := range s.changed {
		x.queued = false
		if !all && !x.gone {
			add(x)
		}
	}
	clear(s.changed)
	s.changed = s.changed[:0]
	if all {
		for _, x := range s.active {
			add(x)
		}
	}
	return out
}

func (s *Alertmanager) payload(p *amPost, now time.Time) amPayload {
	a := &p.a
	labels := make(map[string]string, len(a.Labels)+4)
	labels["alertname"], labels["rule"], labels["severity"], labels["scope"] = a.Rule, a.Rule, a.Severity, a.Scope
	for k, v := range a.Labels {
		labels[k] = v
	}
	ann := make(map[string]string, len(a.Annotations)+2)
	for k, v := range a.Annotations {
		ann[k] = v
	}
	ann["key"] = a.Key
	if a.DiscoverURL != "" {
		ann["kibana_discover"] = a.DiscoverURL
	}
	out := amPayload{Labels: labels, Annotations: ann, StartsAt: a.StartsAt.UTC().Format(time.RFC3339Nano),
		GeneratorURL: a.DiscoverURL}
	if a.Firing() {
		// Wall clock: Alertmanager resolves it unless told again.
		out.EndsAt = now.Add(4 * s.resend).UTC().Format(time.RFC3339Nano)
	} else {
		out.EndsAt = a.EndsAt.UTC().Format(time.RFC3339Nano)
		if !a.EndsAt.After(a.StartsAt) {
			out.EndsAt = a.StartsAt.Add(time.Millisecond).UTC().Format(time.RFC3339Nano)
		}
	}
	return out
}

// postAll posts every alert (all) or the changed ones, to every
// Alertmanager, amChunk at a time. An alert whose post failed to one of
// them is posted again at the next wake or resend.
func (s *Alertmanager) postAll(ctx context.Context, all bool) {
	s.posting.Store(true)
	defer s.posting.Store(false)
	now := time.Now()
	posts := s.take(all)
	var chunk []amPayload
	for len(posts) > 0 && ctx.Err() == nil {
		n := min(len(posts), amChunk)
		part := posts[:n]
		posts = posts[n:]
		chunk = chunk[:0]
		for i := range part {
			chunk = append(chunk, s.payload(&part[i], now))
		}
		body, err := json.Marshal(chunk)
		if err != nil {
			s.r.Log.Error("encode alerts", "err", err)
			return
		}
		failed := false
		for _, u := range s.urls {
			if err := s.post(ctx, u, body); err != nil {
				failed = true
				s.m.errors.WithLabelValues(s.Name()).Inc()
				s.warn.Warn("post "+u, "post alerts to Alertmanager failed; retried at the next change or resend",
					"url", u, "err", err)
				continue
			}
			s.mu.Lock()
			for _, p := range part {
				if p.x.gen == p.gen && !p.x.delivered[u] {
					p.x.delivered[u] = true
					s.m.deliveredAt(s.Name(), &p.x.a, time.Now())
				}
			}
			s.mu.Unlock()
		}
		if failed {
			s.mu.Lock()
			for _, p := range part {
				if p.x.gen == p.gen {
					s.queue(p.x)
				}
			}
			s.mu.Unlock()
		}
	}
}

func (s *Alertmanager) post(ctx context.Context, base string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+"/api/v2/alerts", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
