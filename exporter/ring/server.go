package ring

import (
	"bytes"
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
	"slices"
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
	// answers admits maxAnswers GET /packets at once: each holds its
	// answer whole in the capturing process's memory until written.
	answers chan struct{}
}

// NewServer checks the configuration and builds the server of a ring.
func NewServer(dir string, cfg ServerConfiguration) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{dir: dir, cfg: cfg, answers: make(chan struct{}, maxAnswers)}
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
	if q.From != 0 && q.To != 0 && q.To <= q.From {
		// An empty window is a mistake (swapped bounds, seconds for
		// nanoseconds), not a question whose answer is no packets.
		http.Error(w, "to must come after from", http.StatusBadRequest)
		return
	}
	if f := v.Get("flow"); f != "" {
		if q.Key, _, err = ParseFlow(f); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	if f := v.Get("filter"); f != "" {
		if len(f) > maxFilter {
			http.Error(w, fmt.Sprintf("filter of %d bytes: at most %d here (libpcap's compiler, in the capturing process, takes time growing with the cube of the length: 400 hosts or-ed take 9 s, 2,000 over 10 minutes); use nets, or several queries", len(f), maxFilter), http.StatusBadRequest)
			return
		}
		filter, err := NewFilter(f)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		q.Match = filter.Match
	}
	format := v.Get("format")
	if format != "" && format != "pcap" && format != "pcapng" {
		http.Error(w, fmt.Sprintf("format %q: want pcap or pcapng", format), http.StatusBadRequest)
		return
	}
	// Wait for a turn: queries beyond maxAnswers would each hold up to
	// maxAnswerBytes more, and a client that reads slowly holds its
	// answer until the write deadline.
	select {
	case s.answers <- struct{}{}:
		defer func() { <-s.answers }()
	case <-r.Context().Done():
		return
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
	pcapng := format == "pcapng"
	// A pcap holds one link type: say so before answering, rather than
	// send a header and no frames.
	if link, other, ok := linkTypes(pkts); !ok && !pcapng {
		http.Error(w, fmt.Sprintf("the frames have link types %d and %d, which one pcap file cannot hold: ask for pcapng (format=pcapng)", link, other), http.StatusConflict)
		return
	}
	var size int64
	for _, p := range pkts {
		size += int64(len(p.Data))
	}
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(answerWriteTime(size)))
	for _, s := range warnings {
		w.Header().Add("Spanflow-Warning", strings.ReplaceAll(s, "\n", " "))
	}
	if pcapng {
		w.Header().Set("Content-Type", "application/x-pcapng")
		WritePcapng(w, pkts)
		return
	}
	w.Header().Set("Content-Type", "application/vnd.tcpdump.pcap")
	WritePcap(w, pkts)
}

// maxAnswerBytes bounds what one GET /packets holds in the capturing
// process's memory (Query.MaxBytes).
const maxAnswerBytes = 256 << 20

// maxFilter bounds a query's filter expression, in bytes.
const maxFilter = 8 << 10

// maxAnswers is how many GET /packets are answered at once; more wait.
const maxAnswers = 2

// answerWriteTime is how long writing an answer of so many bytes may take:
// a minute, and 2 seconds per MiB (256 MiB in 9.5 minutes, over 512
// KiB/s). Past it the connection is closed and the answer's memory freed.
var answerWriteTime = func(bytes int64) time.Duration {
	return time.Minute + time.Duration(bytes>>20)*2*time.Second
}

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
			} else if errors.Is(err, ErrGone) {
				code = http.StatusGone
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
// warn is told the server's warnings. The answer is asked for as pcapng,
// which keeps each frame's link type (a ring fed by interfaces of
// several); a server that answers pcap is read as well.
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
	v.Set("format", "pcapng")
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
	pkts, err := readCapture(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("exporter %s: %w", rm.URL, err)
	}
	return pkts, nil
}

// linkTypes says whether the frames have one link type, and if not which
// two differ.
func linkTypes(pkts []Packet) (link, other uint32, ok bool) {
	for _, p := range pkts {
		if p.LinkType != pkts[0].LinkType {
			return pkts[0].LinkType, p.LinkType, false
		}
	}
	return 0, 0, true
}

// readCapture reads the nanosecond pcap WritePcap writes or the pcapng
// WritePcapng writes.
func readCapture(r io.Reader) ([]Packet, error) {
	var h [24]byte
	if _, err := io.ReadFull(r, h[:4]); err != nil {
		return nil, fmt.Errorf("read pcap header: %w", err)
	}
	le := binary.LittleEndian
	switch le.Uint32(h[0:]) {
	case 0xa1b23c4d:
	case 0x0a0d0d0a:
		return readPcapng(io.MultiReader(bytes.NewReader(h[:4]), r))
	default:
		return nil, errors.New("not a nanosecond pcap nor a pcapng")
	}
	if _, err := io.ReadFull(r, h[4:]); err != nil {
		return nil, fmt.Errorf("read pcap header: %w", err)
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

// readPcapng reads the little-endian pcapng WritePcapng writes: section
// header, interface descriptions (link type, if_tsresol) and enhanced
// packet blocks; other blocks are skipped.
func readPcapng(r io.Reader) ([]Packet, error) {
	le := binary.LittleEndian
	type iface struct {
		link uint32
		unit int64 // ns per timestamp unit; 0 when finer than 1 ns
		div  int64 // timestamp units per ns, when finer
	}
	var ifaces []iface
	var out []Packet
	first := true
	for {
		var bh [8]byte
		if _, err := io.ReadFull(r, bh[:]); err == io.EOF && !first {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("read pcapng block: %w", err)
		}
		typ, n := le.Uint32(bh[0:]), le.Uint32(bh[4:])
		if n < 12 || n%4 != 0 || n > maxFrame+1024 {
			return nil, fmt.Errorf("pcapng block of %d bytes", n)
		}
		body := make([]byte, n-8)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, fmt.Errorf("read pcapng block: %w", err)
		}
		body = body[:len(body)-4] // the trailing length
		if first && (typ != 0x0a0d0d0a || len(body) < 16 || le.Uint32(body) != 0x1a2b3c4d) {
			return nil, errors.New("not a little-endian pcapng")
		}
		first = false
		switch typ {
		case 0x0a0d0d0a:
			ifaces = ifaces[:0] // a new section numbers its interfaces anew
		case 0x00000001:
			if len(body) < 8 {
				return nil, errors.New("pcapng interface block cut short")
			}
			ifc := iface{link: uint32(le.Uint16(body[0:])), unit: 1000} // microseconds unless said
			for opt := body[8:]; len(opt) >= 4; {
				code, l := le.Uint16(opt[0:]), int(le.Uint16(opt[2:]))
				if code == 0 || 4+l > len(opt) {
					break
				}
				if code == 9 && l == 1 {
					ifc.unit, ifc.div = tsUnit(opt[4])
				}
				opt = opt[4+(l+3)&^3:]
			}
			ifaces = append(ifaces, ifc)
		case 0x00000006:
			if len(body) < 20 {
				return nil, errors.New("pcapng packet block cut short")
			}
			id, caplen := le.Uint32(body[0:]), le.Uint32(body[12:])
			if int(id) >= len(ifaces) || int(caplen) > len(body)-20 {
				return nil, fmt.Errorf("pcapng packet %d: interface %d or length %d out of range", len(out)+1, id, caplen)
			}
			ifc := ifaces[id]
			ts := int64(uint64(le.Uint32(body[4:]))<<32 | uint64(le.Uint32(body[8:])))
			if ifc.div > 0 {
				ts /= ifc.div
			} else {
				ts *= ifc.unit
			}
			out = append(out, Packet{Time: ts, Length: int(le.Uint32(body[16:])), LinkType: ifc.link, Data: slices.Clone(body[20 : 20+caplen])})
		}
	}
}

// tsUnit reads if_tsresol: nanoseconds per unit, or units per nanosecond
// when the unit is finer.
func tsUnit(res byte) (unit, div int64) {
	if res&0x80 != 0 {
		return 1, 0 // powers of two: not written by spanflow; taken as ns
	}
	unit = 1
	for e := int(res); e < 9; e++ {
		unit *= 10
	}
	if res > 9 {
		div = 1
		for e := 9; e < int(res) && e < 18; e++ {
			div *= 10
		}
		return 0, div
	}
	return unit, 0
}
