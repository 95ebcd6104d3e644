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
type Alertmanager struct {
	r       *reporter.Reporter
	m       *metrics
	urls    []string
	resend  time.Duration
	client  *http.Client
	mu      sync.Mutex
	active  map[string]*amAlert // fingerprint →
	wake    chan struct{}
	t       lifecycle.Tracker
	warn    *reporter.Limited
	maxKeep int
}

type amAlert struct {
	a         Alert
	resolves  int             // resolved posts left
	delivered map[string]bool // url → delivered once
}

// resolvedPosts: how many times a resolution is posted.
const resolvedPosts = 3

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
	cur := s.active[fp]
	switch {
	case cur != nil:
		cur.a = a
		cur.resolves = resolvedPosts
		cur.delivered = map[string]bool{}
	case len(s.active) >= s.maxKeep:
		s.mu.Unlock()
		s.m.dropped.WithLabelValues(s.Name()).Inc()
		s.warn.Warn("full", "too many alerts for Alertmanager: dropped (counted)", "rule", a.Rule)
		return
	default:
		s.active[fp] = &amAlert{a: a, resolves: resolvedPosts, delivered: map[string]bool{}}
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
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
			case <-tick.C:
			}
			s.postAll(ctx)
		}
	})
	return nil
}

// Stop stops the poster; firing alerts resolve by their endsAt unless
// spanflow comes back and posts them again.
func (s *Alertmanager) Stop() error { return s.t.Stop() }

// amPayload is one alert of POST /api/v2/alerts (postableAlert).
type amPayload struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     string            `json:"startsAt"`
	EndsAt       string            `json:"endsAt,omitempty"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

func (s *Alertmanager) payload(now time.Time) ([]amPayload, []*amAlert) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []amPayload
	var which []*amAlert
	for fp, x := range s.active {
		a := &x.a
		labels := map[string]string{"alertname": a.Rule, "rule": a.Rule, "severity": a.Severity, "scope": a.Scope}
		for k, v := range a.Labels {
			labels[k] = v
		}
		ann := map[string]string{}
		for k, v := range a.Annotations {
			ann[k] = v
		}
		ann["key"] = a.Key
		if a.DiscoverURL != "" {
			ann["kibana_discover"] = a.DiscoverURL
		}
		p := amPayload{Labels: labels, Annotations: ann, StartsAt: a.StartsAt.UTC().Format(time.RFC3339Nano),
			GeneratorURL: a.DiscoverURL}
		if a.Firing() {
			// Wall clock: Alertmanager resolves it unless told again.
			p.EndsAt = now.Add(4 * s.resend).UTC().Format(time.RFC3339Nano)
		} else {
			p.EndsAt = a.EndsAt.UTC().Format(time.RFC3339Nano)
			if !a.EndsAt.After(a.StartsAt) {
				p.EndsAt = a.StartsAt.Add(time.Millisecond).UTC().Format(time.RFC3339Nano)
			}
			x.resolves--
			if x.resolves <= 0 {
				delete(s.active, fp)
			}
		}
		out = append(out, p)
		which = append(which, x)
	}
	return out, which
}

func (s *Alertmanager) postAll(ctx context.Context) {
	now := time.Now()
	alerts, which := s.payload(now)
	if len(alerts) == 0 {
		return
	}
	body, err := json.Marshal(alerts)
	if err != nil {
		s.r.Log.Error("encode alerts", "err", err)
		return
	}
	for _, u := range s.urls {
		if err := s.post(ctx, u, body); err != nil {
			s.m.errors.WithLabelValues(s.Name()).Inc()
			s.warn.Warn("post "+u, "post alerts to Alertmanager failed; retried at the next change or resend",
				"url", u, "err", err)
			continue
		}
		s.mu.Lock()
		for _, x := range which {
			if !x.delivered[u] {
				x.delivered[u] = true
				s.m.deliveredAt(s.Name(), &x.a, time.Now())
			}
		}
		s.mu.Unlock()
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
