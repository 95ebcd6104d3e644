package alert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/lifecycle"
	"github.com/spanflow/spanflow/internal/reporter"
)

// PinConfiguration makes each alert pin, in the packet rings of the probes
// that saw its traffic, the time around it, so that retention keeps the
// packets until someone unpins them (spanflow pcap unpin).
type PinConfiguration struct {
	// Before and After widen the pinned range around the alert: from
	// StartsAt-Before to EndsAt+After. Hold is how far past StartsAt the
	// pin reaches while the alert fires (it is set again, to EndsAt+After,
	// when it resolves).
	Before, After, Hold time.Duration
	// TokenFile holds the probes' query token; CAFile the CAs of their
	// certificates; CertFile and KeyFile a client certificate (mutual TLS).
	TokenFile, CAFile, CertFile, KeyFile string
}

// DefaultPinConfiguration pins 5 minutes before an alert to 1 minute after
// it, and up to 1 hour while it fires.
func DefaultPinConfiguration() PinConfiguration {
	return PinConfiguration{Before: 5 * time.Minute, After: time.Minute, Hold: time.Hour}
}

// maxProbes bounds the probes remembered; the least recently seen go.
const maxProbes = 10000

// Probes remembers, from the flows, which probe serves each exporter's
// packet ring: the base of the netflow.spanflow_packets_url a spanflow
// exporter's identity puts on its documents.
type Probes struct {
	mu   sync.Mutex
	urls map[netip.Addr]probe
}

type probe struct {
	base string
	seen time.Time
}

// NewProbes returns an empty directory.
func NewProbes() *Probes { return &Probes{urls: map[netip.Addr]probe{}} }

// Write learns the probes of records (flow.Sink).
func (p *Probes) Write(recs []flow.Record) error {
	var now time.Time
	for i := range recs {
		r := &recs[i]
		for j := range r.Extra {
			x := &r.Extra[j]
			if x.Name != "spanflow_packets_url" {
				continue
			}
			base, _, _ := strings.Cut(x.Str, "/packets?")
			if now.IsZero() {
				now = time.Now()
				p.mu.Lock()
				defer p.mu.Unlock()
			}
			if old, ok := p.urls[r.ObserverIP]; !ok || old.base != base || now.Sub(old.seen) > time.Second {
				p.urls[r.ObserverIP] = probe{base, now}
				p.bound()
			}
			break
		}
	}
	return nil
}

// bound drops the least recently seen probes past maxProbes: a tenth of
// them at once, so that a stream of new exporters past the bound (spoofed
// ones) costs a sort every thousand, not a search of the whole directory
// each (192 µs a record, under the lock of the flows' path).
func (p *Probes) bound() {
	if len(p.urls) <= maxProbes {
		return
	}
	type seenAt struct {
		a    netip.Addr
		seen time.Time
	}
	all := make([]seenAt, 0, len(p.urls))
	for a, pr := range p.urls {
		all = append(all, seenAt{a, pr.seen})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].seen.Before(all[j].seen) })
	for _, x := range all[:len(all)-maxProbes*9/10] {
		delete(p.urls, x.a)
	}
}

// For is the probe URLs an alert concerns: its exporter's (line and
// exporter alerts), else every probe seen in the last hour.
func (p *Probes) For(a *Alert) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := a.Labels["exporter"]; s != "" {
		if addr, err := netip.ParseAddr(s); err == nil {
			if pr, ok := p.urls[addr]; ok {
				return []string{pr.base}
			}
			return nil
		}
	}
	set := map[string]bool{}
	for _, pr := range p.urls {
		if time.Since(pr.seen) < time.Hour {
			set[pr.base] = true
		}
	}
	out := make([]string, 0, len(set))
	for u := range set {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

// Pinner is the sink that pins: for each alert change it sets the pin
// "alert-RULE-FINGERPRINT" on every probe the alert concerns (PUT
// /pins/NAME on the probe's query server). A probe that fails is retried
// with backoff, five times; the notifications wait in a bounded queue.
type Pinner struct {
	r      *reporter.Reporter
	m      *metrics
	cfg    PinConfiguration
	probes *Probes
	token  string
	q      *queue
	client *http.Client
	t      lifecycle.Tracker
	warn   *reporter.Limited
	// Backoff is the first wait between attempts (doubled each time).
	Backoff time.Duration
}

// NewPinner reads the token and certificates.
func NewPinner(r *reporter.Reporter, m *metrics, cfg PinConfiguration, probes *Probes, queueSize int) (*Pinner, error) {
	p := &Pinner{r: r, m: m, cfg: cfg, probes: probes, q: newQueue(r, m, "pin", queueSize),
		warn: reporter.NewLimited(r.Log, time.Minute), Backoff: time.Second}
	if cfg.TokenFile != "" {
		b, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("alert-pin-token-file: %w", err)
		}
		p.token = strings.TrimSpace(string(b))
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("alert-pin-ca-file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("alert-pin-ca-file: %s holds no PEM certificate", cfg.CAFile)
		}
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("alert-pin-cert-file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	p.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	return p, nil
}

// Name of the sink.
func (p *Pinner) Name() string { return "pin" }

// Send queues an alert change.
func (p *Pinner) Send(a Alert) { p.q.put(a) }

// Start runs the sender.
func (p *Pinner) Start() error {
	p.t.Go(func(ctx context.Context) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case a := <-p.q.ch:
				for _, base := range p.probes.For(&a) {
					p.pin(ctx, base, &a)
				}
				p.q.done()
			}
		}
	})
	return nil
}

// Stop stops the sender once what is queued is pinned, or after
// stopGrace; what is still queued then is counted as dropped.
func (p *Pinner) Stop() error {
	p.q.drain(stopGrace)
	err := p.t.Stop()
	if n := len(p.q.ch); n > 0 {
		p.m.dropped.WithLabelValues(p.Name()).Add(float64(n))
	}
	return err
}

// maxPinName is the longest pin name a probe's ring takes
// (exporter/ring.MaxPinName).
const maxPinName = 255

// PinName is the name of an alert's pin: one word.
func PinName(a *Alert) string {
	rule := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, a.Rule)
	// The fingerprint holds the whole rule name: a long one is cut to keep
	// the name within what a probe's ring takes (exporter/ring.MaxPinName).
	fp := a.Fingerprint()
	if n := maxPinName - len("alert-") - 1 - len(fp); len(rule) > n {
		rule = rule[:n]
	}
	return "alert-" + rule + "-" + fp
}

// PinRange is the range an alert change pins.
func (c PinConfiguration) PinRange(a *Alert) (from, to time.Time) {
	from = a.StartsAt.Add(-c.Before)
	if a.Firing() {
		return from, a.StartsAt.Add(c.Hold)
	}
	return from, a.EndsAt.Add(c.After)
}

func (p *Pinner) pin(ctx context.Context, base string, a *Alert) {
	from, to := p.cfg.PinRange(a)
	u := fmt.Sprintf("%s/pins/%s?from=%s&to=%s", strings.TrimRight(base, "/"), PinName(a),
		strconv.FormatInt(from.UnixNano(), 10), strconv.FormatInt(to.UnixNano(), 10))
	wait := p.Backoff
	for attempt := 1; ; attempt++ {
		err := p.put(ctx, u)
		if err == nil {
			p.m.deliveredAt(p.Name(), a, time.Now())
			return
		}
		p.m.errors.WithLabelValues(p.Name()).Inc()
		if attempt == 5 {
			p.warn.Warn("pin "+base, "alert pin failed five times: the packets may go with retention",
				"probe", base, "rule", a.Rule, "key", a.Key, "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait *= 2
	}
}

func (p *Pinner) put(ctx context.Context, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, nil)
	if err != nil {
		return err
	}
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
