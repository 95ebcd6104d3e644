// Package noc is the collector's live view for a NOC wall: an HTTP server
// (--ui) that serves a read-only page embedded in the binary and streams,
// as server-sent events, a frame made from every rollup snapshot (package
// rollup), the flows (Sankey, east-west/north-south split), the exporters'
// statistics and the firing alerts (package alert). It reads nothing from
// Elasticsearch, so it keeps moving when the cluster does not.
//
//	rollup.Engine ─▶ Server.Rollup ─▶ frame (JSON, once) ─▶ each client's bounded queue ─▶ SSE
//	pipeline ─▶ Server.Write (pairs, directions, exporter statistics) ─┘
package noc

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spanflow/spanflow/collector/alert"
	"github.com/spanflow/spanflow/collector/rollup"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

//go:embed web
var webFS embed.FS

// TokenCookie is the cookie holding the token once a browser gave it.
const TokenCookie = "spanflow_ui_token"

// Dependencies of the server.
type Dependencies struct {
	// Rollups is the engine whose snapshots the view shows; its tick and
	// smoothing window set the view's.
	Rollups *rollup.Engine
	// Lines are the lines' capacities and names (the rules file's lines).
	Lines map[string]LineInfo
	// Health returns the collector's datagram and kernel drop counts.
	Health func() (datagrams, kernelDrops uint64)
}

// Server is the live view: a lifecycle component, a rollup.Subscriber, a
// flow.Sink (a pipeline output) and an alert observer.
type Server struct {
	r    *reporter.Reporter
	cfg  Configuration
	view *view
	// rollups is read provisionally every tick, Delay after the second,
	// when provisional; else the server is its subscriber.
	rollups     *rollup.Engine
	provisional bool
	clock       sync.WaitGroup
	token       []byte
	nets        []netip.Prefix
	m           *metrics

	mu       sync.Mutex
	clients  map[*client]struct{}
	last     []byte // the last frame as an SSE event
	lastJSON []byte
	hello    helloState
	dropped  atomic.Uint64 // frames not queued to slow clients

	srv    *http.Server
	ln     net.Listener
	done   chan struct{}
	closed chan struct{}
}

type helloState struct {
	end time.Time
}

type client struct {
	ch chan []byte
}

type metrics struct {
	clients       prometheus.Gauge
	refused       prometheus.Counter
	framesDropped prometheus.Counter
	slowClosed    prometheus.Counter
	frames        prometheus.Counter
	push          *prometheus.HistogramVec
}

// New builds the server; it listens at Start.
func New(r *reporter.Reporter, cfg Configuration, deps Dependencies) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Rollups == nil {
		return nil, errors.New("ui: the live view needs the rollups (--rollups)")
	}
	s := &Server{r: r, cfg: cfg, clients: map[*client]struct{}{}}
	if cfg.TokenFile != "" {
		b, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("ui-token-file: %w", err)
		}
		if s.token = bytes.TrimSpace(b); len(s.token) < 16 {
			return nil, fmt.Errorf("ui-token-file: %s: the token must be at least 16 characters", cfg.TokenFile)
		}
	}
	for _, p := range cfg.TrustedProxies {
		s.nets = append(s.nets, netip.MustParsePrefix(p)) // validated
	}
	rc := deps.Rollups.Configuration()
	s.view = newView(cfg, rc.Tick, rc.SmoothingWindow, deps.Lines, deps.Health)
	f := r.Factory("ui")
	s.m = &metrics{
		clients:       f.Gauge("clients", "Live view streams open."),
		refused:       f.Counter("clients_refused_total", "Live view streams refused: ui-max-clients reached."),
		framesDropped: f.Counter("frames_dropped_total", "Frames not sent to a client whose queue was full (a slow client)."),
		slowClosed:    f.Counter("clients_closed_slow_total", "Streams closed because a write blocked for ui-write-timeout."),
		frames:        f.Counter("frames_total", "Frames built (one per rollup tick)."),
		push: f.HistogramVec("push_seconds", "Server time to build a frame and queue it to every client.",
			[]float64{0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1}, "stage"),
	}
	s.rollups = deps.Rollups
	s.provisional = !rc.EventTime && cfg.Delay < rc.Delay
	if !s.provisional {
		deps.Rollups.Subscribe(s)
	}
	return s, nil
}

// Name of the component.
func (s *Server) Name() string { return "ui" }

// Addr is the address listened on, once started.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// URL is the page's address, once started.
func (s *Server) URL() string {
	scheme := "http"
	if s.cfg.TLSCertFile != "" {
		scheme = "https"
	}
	return scheme + "://" + s.Addr() + "/"
}

// Start listens and serves.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Addr())
	if err != nil {
		return fmt.Errorf("ui: listen on %s: %w (change it with --ui)", s.cfg.Addr(), err)
	}
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	if s.cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
		if err != nil {
			ln.Close()
			return fmt.Errorf("ui-tls-cert-file: %w", err)
		}
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, s.srv.TLSConfig)
	}
	s.ln = ln
	s.done, s.closed = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.closed)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.r.Log.Error("ui server stopped", "err", err)
		}
	}()
	if s.provisional {
		s.clock.Add(1)
		go s.tick()
	}
	s.r.Log.Info("serving the live view", "url", s.URL())
	return nil
}

// tick reads the rollups' newest second Delay after each tick ends and
// pushes its frame, until Stop.
func (s *Server) tick() {
	defer s.clock.Done()
	tick := s.rollups.Configuration().Tick
	for {
		now := time.Now()
		next := now.Add(-s.cfg.Delay).Truncate(tick).Add(tick + s.cfg.Delay)
		t := time.NewTimer(next.Sub(now))
		select {
		case <-s.done:
			t.Stop()
			return
		case <-t.C:
		}
		s.rollups.Provisional(time.Now(), s.cfg.Delay, s.Rollup)
	}
}

// Stop closes every stream and the server.
func (s *Server) Stop() error {
	if s.srv == nil {
		return nil
	}
	close(s.done)
	s.clock.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.closed
	s.srv = nil
	return err
}

// Rollup builds the frame of a snapshot and queues it to every client
// without waiting: a client whose queue is full loses this frame
// (rollup.Subscriber).
func (s *Server) Rollup(snap *rollup.Snapshot) {
	// One lock from the history's new value to the queues: a client
	// connecting meanwhile gets either the old history and this frame, or
	// the new history without it.
	s.mu.Lock()
	t0 := time.Now()
	f := s.view.rollup(snap, t0)
	f.Health.Clients = len(s.clients)
	f.Health.FramesDropped = s.dropped.Load()
	body, err := json.Marshal(f)
	if err != nil {
		s.mu.Unlock()
		s.r.Log.Error("ui: frame", "err", err)
		return
	}
	t1 := time.Now()
	ev := event("frame", body)
	s.last, s.lastJSON, s.hello.end = ev, body, snap.Time
	dropped := 0
	for c := range s.clients {
		select {
		case c.ch <- ev:
		default:
			dropped++
		}
	}
	s.mu.Unlock()
	s.dropped.Add(uint64(dropped))
	s.m.framesDropped.Add(float64(dropped))
	s.m.frames.Inc()
	s.m.push.WithLabelValues("build").Observe(t1.Sub(t0).Seconds())
	s.m.push.WithLabelValues("queue").Observe(time.Since(t1).Seconds())
}

// Write reads flows and exporter statistics (flow.Sink).
func (s *Server) Write(recs []flow.Record) error { return s.view.Write(recs) }

// Observe sees every alert change (set it as the alert dispatcher's
// observer).
func (s *Server) Observe(a alert.Alert) { s.view.Observe(a) }

func event(name string, data []byte) []byte {
	b := make([]byte, 0, len(data)+len(name)+16)
	b = append(b, "event: "...)
	b = append(b, name...)
	b = append(b, "\ndata: "...)
	b = append(b, data...) // JSON has no raw newline
	return append(b, "\n\n"...)
}

// Handler serves the page, its assets, /api/frame and /api/events.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(webFS, "web")
	files := http.FileServerFS(static)
	mux.Handle("GET /", files)
	mux.HandleFunc("GET /api/events", s.events)
	mux.HandleFunc("GET /api/frame", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		b := s.lastJSON
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if b == nil {
			b = []byte("null")
		}
		w.Write(b)
	})
	return s.guard(mux)
}

// guard applies the read-only policy, the security headers and the
// authentication.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if s.cfg.TLSCertFile != "" {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "read-only", http.StatusMethodNotAllowed)
			return
		}
		user, ok := s.authenticate(w, r)
		if !ok {
			h.Set("WWW-Authenticate", `Bearer realm="spanflow"`)
			http.Error(w, "unauthorized: give the token (ui-token-file) as Authorization: Bearer, or open the page once with ?token=", http.StatusUnauthorized)
			return
		}
		if user != "" {
			r = r.WithContext(context.WithValue(r.Context(), userKey{}, user))
		}
		next.ServeHTTP(w, r)
	})
}

type userKey struct{}

// authenticate says who the request is from: anyone on loopback without a
// token, else the token's holder or the trusted proxy's user.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (string, bool) {
	if s.token == nil && s.cfg.UserHeader == "" {
		return "", true
	}
	if s.cfg.UserHeader != "" {
		if u := r.Header.Get(s.cfg.UserHeader); u != "" && s.fromProxy(r) {
			return u, true
		}
	}
	if s.token == nil {
		return "", false
	}
	if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") && s.tokenOK(strings.TrimPrefix(a, "Bearer ")) {
		return "", true
	}
	if c, err := r.Cookie(TokenCookie); err == nil && s.tokenOK(c.Value) {
		return "", true
	}
	if q := r.URL.Query().Get("token"); q != "" && s.tokenOK(q) {
		// Kiosk browsers cannot set headers: the token becomes a cookie,
		// and the address bar loses it.
		http.SetCookie(w, &http.Cookie{Name: TokenCookie, Value: q, Path: "/", HttpOnly: true,
			Secure: s.cfg.TLSCertFile != "", SameSite: http.SameSiteStrictMode})
		return "", true
	}
	return "", false
}

func (s *Server) tokenOK(t string) bool {
	return subtle.ConstantTimeCompare([]byte(t), s.token) == 1
}

func (s *Server) fromProxy(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	for _, p := range s.nets {
		if p.Contains(ap.Addr().Unmap()) {
			return true
		}
	}
	return false
}

// events is the live stream: a hello event (settings, history), the last
// frame, then every frame as it is built.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	c := &client{ch: make(chan []byte, s.cfg.ClientQueue)}
	s.mu.Lock()
	if len(s.clients) >= s.cfg.MaxClients {
		s.mu.Unlock()
		s.m.refused.Inc()
		w.Header().Set("Retry-After", "10")
		http.Error(w, "too many live view clients (ui-max-clients)", http.StatusServiceUnavailable)
		return
	}
	s.clients[c] = struct{}{}
	last, end, hist := s.last, s.hello.end, s.view.history()
	s.mu.Unlock()
	s.m.clients.Inc()
	defer func() {
		s.mu.Lock()
		delete(s.clients, c)
		s.mu.Unlock()
		s.m.clients.Dec()
	}()

	user, _ := r.Context().Value(userKey{}).(string)
	hello, _ := json.Marshal(Hello{Tick: s.view.tick.Seconds(), End: end, History: hist, Points: s.view.histLen,
		Kibana: strings.TrimRight(s.cfg.KibanaURL, "/"), DataView: s.cfg.KibanaDataView, Rotate: s.cfg.Rotate.Seconds(), User: user})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	rc := http.NewResponseController(w)
	write := func(b []byte) bool {
		rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		if _, err := w.Write(b); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				s.m.slowClosed.Inc()
			}
			return false
		}
		if err := rc.Flush(); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				s.m.slowClosed.Inc()
			}
			return false
		}
		return true
	}
	if !write(append([]byte("retry: 2000\n\n"), event("hello", hello)...)) {
		return
	}
	if last != nil && !write(last) {
		return
	}
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		case ev := <-c.ch:
			if !write(ev) {
				return
			}
		case <-ping.C:
			if !write([]byte(": ping\n\n")) {
				return
			}
		}
	}
}
