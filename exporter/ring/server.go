package ring

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// ServerConfiguration is how an exporter serves its ring's queries over
// HTTP(S): off unless Listen is set; every request needs the token
// (Authorization: Bearer) or, with ClientCAFile, a client certificate
// that chains to it; an address that is not loopback needs TLS.
type ServerConfiguration struct {
	Listen       string
	Token        string
	CertFile     string
	KeyFile      string
	ClientCAFile string
}

// Validate checks the configuration.
func (c ServerConfiguration) Validate() error {
	if c.Listen == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("packet ring listen %q: want HOST:PORT (127.0.0.1:9109)", c.Listen)
	}
	tlsOn := c.CertFile != "" || c.KeyFile != ""
	var errs []error
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("packet ring server: give both cert-file and key-file"))
	}
	if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" && !tlsOn {
		errs = append(errs, fmt.Errorf("packet ring listen %s: not loopback, so it needs TLS (give its cert and key files)", c.Listen))
	}
	if c.Token == "" && c.ClientCAFile == "" {
		errs = append(errs, errors.New("packet ring server: give a token file or a client CA file: queries are never served without one"))
	}
	if c.ClientCAFile != "" && !tlsOn {
		errs = append(errs, errors.New("packet ring server: client certificates need TLS (give its cert and key files)"))
	}
	return errors.Join(errs...)
}

// Server serves GET /packets?from=NS&to=NS&flow=FLOW&filter=EXPR as a pcap.
type Server struct {
	dir  string
	cfg  ServerConfiguration
	srv  *http.Server
	ln   net.Listener
	done chan error
}

// NewServer checks the configuration and builds the server of a ring.
func NewServer(dir string, cfg ServerConfiguration) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{dir: dir, cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /packets", s.packets)
	mux.HandleFunc("GET /pins", s.pins)
	mux.HandleFunc("PUT /pins/{name}", s.pins)
	mux.HandleFunc("DELETE /pins/{name}", s.pins)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("packet ring server: %w", err)
		}
		tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if cfg.ClientCAFile != "" {
			pem, err := os.ReadFile(cfg.ClientCAFile)
			if err != nil {
				return nil, fmt.Errorf("packet ring server: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("packet ring server: %s holds no PEM certificate", cfg.ClientCAFile)
			}
			tc.ClientCAs, tc.ClientAuth = pool, tls.VerifyClientCertIfGiven
		}
		s.srv.TLSConfig = tc
	}
	return s, nil
}

// Start listens and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("packet ring server: %w", err)
	}
	s.ln, s.done = ln, make(chan error, 1)
	go func() {
		if s.srv.TLSConfig != nil {
			s.done <- s.srv.ServeTLS(ln, "", "")
		} else {
			s.done <- s.srv.Serve(ln)
		}
	}()
	return nil
}

// Addr is the address listened on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Stop ends the server, letting queries under way finish for a few seconds.
func (s *Server) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

func (s *Server) authorized(r *http.Request) bool {
	if s.cfg.ClientCAFile != "" && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return true
	}
	if s.cfg.Token == "" {
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) == 1
}

func (s *Server) packets(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		http.Error(w, "a valid token or client certificate is required", http.StatusUnauthorized)
		return
	}
	v := r.URL.Query()
	var q Query
	var err error
	for _, p := range []struct {
		name string
		dst  *int64
	}{{"from", &q.From}, {"to", &q.To}} {
		if s := v.Get(p.name); s != "" {
			if *p.dst, err = strconv.ParseInt(s, 10, 64); err != nil {
				http.Error(w, p.name+": want nanoseconds since the epoch", http.StatusBadRequest)
				return
			}
		}
	}
	if f := v.Get("flow"); f != "" {
		if q.Key, _, err = ParseFlow(f); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	if f := v.Get("filter"); f != "" {
		filter, err := NewFilter(f)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		q.Match = filter.Match
	}
	var warnings []string
	q.MaxBytes = maxAnswerBytes
	pkts, _, err := Search(s.dir, q, func(s string) { warnings = append(warnings, s) })
	switch {
	case errors.Is(err, ErrGone):
		http.Error(w, err.Error(), http.StatusGone)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	for _, s := range warnings {
		w.Header().Add("Spanflow-Warning", strings.ReplaceAll(s, "\n", " "))
	}
	w.Header().Set("Content-Type", "application/vnd.tcpdump.pcap")
	WritePcap(w, pkts)
}

// maxAnswerBytes bounds what one GET /packets holds in the capturing
// process's memory (Query.MaxBytes).
const maxAnswerBytes = 256 << 20

// pins lists the pins (GET /pins: "FROM TO NAME" lines, as the pins
// file), sets one (PUT /pins/NAME?from=NS&to=NS, replacing a pin of that
// name) or removes one (DELETE /pins/NAME; 404 when there is none).
func (s *Server) pins(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		http.Error(w, "a valid token or client certificate is required", http.StatusUnauthorized)
		return
	}
	name := r.PathValue("name")
	switch r.Method {
	case http.MethodPut:
		p := Pin{Name: name}
		var err error
		v := r.URL.Query()
		for _, f := range []struct {
			name string
			dst  *int64
		}{{"from", &p.From}, {"to", &p.To}} {
			if *f.dst, err = strconv.ParseInt(v.Get(f.name), 10, 64); err != nil {
				http.Error(w, f.name+": want nanoseconds since the epoch", http.StatusBadRequest)
				return
			}
		}
		if err := AddPin(s.dir, p); err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, ErrTooManyPins) {
				code = http.StatusConflict
			}
			http.Error(w, err.Error(), code)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case http.MethodDelete:
		if err := RemovePin(s.dir, name); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		pins, err := Pins(s.dir)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		for _, p := range pins {
			fmt.Fprintf(w, "%d %d %s\n", p.From, p.To, p.Name)
		}
	}
}

// Remote is a query sent to an exporter's server.
type Remote struct {
	URL    string // https://probe:9109
	Token  string
	Client *http.Client // with the CA and client certificate to use
}

// Fetch runs a query on an exporter; flow and filter are sent as given.
// warn is told the server's warnings.
func (rm Remote) Fetch(ctx context.Context, from, to int64, flow, filter string, warn func(string)) ([]Packet, error) {
	v := url.Values{}
	if from != 0 {
		v.Set("from", strconv.FormatInt(from, 10))
	}
	if to != 0 {
		v.Set("to", strconv.FormatInt(to, 10))
	}
	if flow != "" {
		v.Set("flow", flow)
	}
	if filter != "" {
		v.Set("filter", filter)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(rm.URL, "/")+"/packets?"+v.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("exporter %s: %w", rm.URL, err)
	}
	if rm.Token != "" {
		req.Header.Set("Authorization", "Bearer "+rm.Token)
	}
	c := rm.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("exporter %s: %w", rm.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		err := fmt.Errorf("exporter %s: %s: %s", rm.URL, resp.Status, strings.TrimSpace(string(msg)))
		if resp.StatusCode == http.StatusGone {
			err = fmt.Errorf("exporter %s: %w", rm.URL, ErrGone)
		}
		return nil, err
	}
	for _, s := range resp.Header.Values("Spanflow-Warning") {
		warn(rm.URL + ": " + s)
	}
	pkts, err := readPcap(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("exporter %s: %w", rm.URL, err)
	}
	return pkts, nil
}

// readPcap reads the nanosecond pcap WritePcap writes.
func readPcap(r io.Reader) ([]Packet, error) {
	var h [24]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, fmt.Errorf("read pcap header: %w", err)
	}
	le := binary.LittleEndian
	if le.Uint32(h[0:]) != 0xa1b23c4d {
		return nil, errors.New("not a nanosecond pcap")
	}
	link := le.Uint32(h[20:])
	var out []Packet
	for {
		var rec [16]byte
		if _, err := io.ReadFull(r, rec[:]); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("read pcap record %d: %w", len(out)+1, err)
		}
		n := le.Uint32(rec[8:])
		if n > maxFrame {
			return nil, fmt.Errorf("pcap record %d: %d bytes", len(out)+1, n)
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(r, data); err != nil {
			return nil, fmt.Errorf("read pcap record %d: %w", len(out)+1, err)
		}
		out = append(out, Packet{Time: int64(le.Uint32(rec[0:]))*1e9 + int64(le.Uint32(rec[4:])), Length: int(le.Uint32(rec[12:])), LinkType: link, Data: data})
	}
}
