package reporter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MetricsServer serves the registry as Prometheus text on /metrics. It is a
// lifecycle component.
type MetricsServer struct {
	addr string
	r    *Reporter
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// NewMetricsServer returns a server for addr ("" disables it).
func NewMetricsServer(r *Reporter, addr string) *MetricsServer {
	return &MetricsServer{addr: addr, r: r}
}

// Name is used in lifecycle errors.
func (m *MetricsServer) Name() string { return "metrics server" }

// Addr is the address actually listened on (useful with port 0).
func (m *MetricsServer) Addr() string {
	if m.ln == nil {
		return ""
	}
	return m.ln.Addr().String()
}

// Start listens and serves in the background.
func (m *MetricsServer) Start() error {
	if m.addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", m.addr)
	if err != nil {
		return fmt.Errorf("listen for metrics on %s: %w (change it with --metrics-listen, or \"\" to disable)", m.addr, err)
	}
	m.ln = ln
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.r.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "spanflow: metrics at /metrics")
	})
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	m.done = make(chan struct{})
	go func() {
		defer close(m.done)
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.r.Log.Error("metrics server stopped", "err", err)
		}
	}()
	m.r.Log.Info("serving metrics", "addr", "http://"+ln.Addr().String()+"/metrics")
	return nil
}

// Stop shuts the server down.
func (m *MetricsServer) Stop() error {
	if m.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := m.srv.Shutdown(ctx)
	<-m.done
	return err
}
