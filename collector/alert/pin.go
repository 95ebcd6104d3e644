package alert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
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
	// Networks (CIDR) may serve probes besides each exporter's own
	// address: the probe URLs come from unauthenticated IPFIX, and the
	// token and client certificate go only to an address that is the
	// announcing exporter's or in one of these.
	Networks []string
}

// ParseNetworks parses Networks.
func (c PinConfiguration) ParseNetworks() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, n := range c.Networks {
		pfx, err := netip.ParsePrefix(n)
		if err != nil {
			if a, aerr := netip.ParseAddr(n); aerr == nil {
				pfx = netip.PrefixFrom(a, a.BitLen())
			} else {
				return nil, fmt.Errorf("%q is not a network (CIDR, 10.1.0.0/16) or an address", n)
			}
		}
		out = append(out, pfx.Masked())
	}
	return out, nil
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

// Target is a probe to pin on: the base of its URL, and the exporter that
// announced it.
type Target struct {
	Base     string
	Exporter netip.Addr
}

// For is the probes an alert concerns: its exporter's (line and exporter
// alerts), else every probe seen in the last hour (each once, with one of
// the exporters that announced it).
func (p *Probes) For(a *Alert) []Target {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := a.Labels["exporter"]; s != "" {
		if addr, err := netip.ParseAddr(s); err == nil {
			if pr, ok := p.urls[addr]; ok {
				return []Target{{pr.base, addr}}
			}
			return nil
		}
	}
	set := map[string]netip.Addr{}
	for addr, pr := range p.urls {
		if time.Since(pr.seen) < time.Hour {
			// An address that can be trusted with the base wins: the
			// exporter on the URL's own host, when one announced it.
			if old, ok := set[pr.base]; !ok || (!sameHost(pr.base, old) && sameHost(pr.base, addr)) {
				set[pr.base] = addr
			}
		}
	}
	out := make([]Target, 0, len(set))
	for u, addr := range set {
		out = append(out, Target{u, addr})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Base < out[j].Base })
	return out
}

// sameHost says that base's host is the address a (an IP literal).
func sameHost(base string, a netip.Addr) bool {
	u, err := url.Parse(base)
	if err != nil {
		return false
	}
	h, err := netip.ParseAddr(u.Hostname())
	return err == nil && h.Unmap() == a.Unmap()
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
	Backoff  time.Duration
	networks []netip.Prefix
	lookup   func(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// trusted says whether the probe at t.Base may be sent the pin: its
// host's addresses are all the announcing exporter's own or in
// alert-pin-networks, and it is reached over https unless on loopback (a
// probe's server needs TLS off loopback). The URLs come from
// unauthenticated IPFIX: without this, anyone who could send a datagram
// would be sent the token that downloads packets from every probe.
func (p *Pinner) trusted(ctx context.Context, t Target) error {
	u, err := url.Parse(t.Base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return fmt.Errorf("%q is not an http(s) URL", t.Base)
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(u.Hostname()); err == nil {
		addrs = []netip.Addr{a}
	} else {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		addrs, err = p.lookup(lctx, "ip", u.Hostname())
		cancel()
		if err != nil {
			return fmt.Errorf("resolving %s: %w", u.Hostname(), err)
		}
	}
	for _, a := range addrs {
		a = a.Unmap()
		if u.Scheme == "http" && !a.IsLoopback() {
			return fmt.Errorf("%s is http:// and not on loopback: a probe's server off loopback serves https", t.Base)
		}
		ok := a == t.Exporter.Unmap()
		for _, n := range p.networks {
			ok = ok || n.Contains(a)
		}
		if !ok {
			return fmt.Errorf("%s (%s) is neither the announcing exporter %s nor in alert-pin-networks", t.Base, a, t.Exporter)
		}
	}
	return nil
}

// NewPinner reads the token and certificates.
func NewPinner(r *reporter.Reporter, m *metrics, cfg PinConfiguration, probes *Probes, queueSize int) (*Pinner, error) {
	p := &Pinner{r: r, m: m, cfg: cfg, probes: probes, q: newQueue(r, m, "pin", queueSize),
		warn: reporter.NewLimited(r.Log, time.Minute), Backoff: time.Second, lookup: net.DefaultResolver.LookupNetIP}
	var err error
	if p.networks, err = cfg.ParseNetworks(); err != nil {
		return nil, fmt.Errorf("alert-pin-networks: %w", err)
	}
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
				for _, t := range p.probes.For(&a) {
					if err := p.trusted(ctx, t); err != nil {
						p.m.errors.WithLabelValues(p.Name()).Inc()
						p.warn.Warn("untrusted "+t.Base, "not pinning at a probe URL an exporter announced: add its network to alert-pin-networks if the probe is yours",
							"probe", t.Base, "exporter", t.Exporter, "err", err)
						continue
					}
					p.pin(ctx, t.Base, &a)
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
