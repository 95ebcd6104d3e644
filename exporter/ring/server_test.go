package ring_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/ring"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestServer: a remote query with the right token, or the right client
// certificate, gets the same frames as a local one; a wrong or missing
// token or certificate is refused; settings that would serve without
// protection are refused at start.
func TestServer(t *testing.T) {
	in, labels := generated(40, 3000, time.Date(2026, 12, 5, 2, 13, 0, 0, time.UTC))
	cfg := config(t.TempDir())
	fill(t, cfg, in)
	key, _, _ := ring.ParseFlow(labels[3])
	want, _ := search(t, cfg.Dir, ring.Query{Key: key})

	ca, other := testutil.NewCA(t, "ring"), testutil.NewCA(t, "stranger")
	srvCert := ca.Server(t, "probe")
	s, err := ring.NewServer(cfg.Dir, ring.ServerConfiguration{Listen: "127.0.0.1:0", Token: "s3cret", CertFile: srvCert.CertFile, KeyFile: srvCert.KeyFile, ClientCAFile: ca.File})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	client := func(cert *testutil.Leaf) *http.Client {
		tc := &tls.Config{RootCAs: ca.Pool()}
		if cert != nil {
			tc.Certificates = []tls.Certificate{cert.TLS}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	}
	good, stranger := ca.Client(t, "analyst"), other.Client(t, "analyst")
	for _, c := range []struct {
		name  string
		token string
		cert  *testutil.Leaf
		ok    bool
	}{
		{"token", "s3cret", nil, true},
		{"client certificate", "", &good, true},
		{"wrong token", "guess", nil, false},
		{"nothing", "", nil, false},
		{"certificate of another CA", "", &stranger, false},
	} {
		rm := ring.Remote{URL: "https://" + s.Addr(), Token: c.token, Client: client(c.cert)}
		pkts, err := rm.Fetch(context.Background(), 0, 0, labels[3], "", func(string) {})
		switch {
		case c.ok && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.ok:
			if diff := diffFrames(frames(pkts), want); diff != "" {
				t.Errorf("%s: frames (-got, +want):\n%s", c.name, diff)
			}
		case err == nil:
			t.Errorf("%s: answered %d frames", c.name, len(pkts))
		case c.cert == nil && !strings.Contains(err.Error(), "401"):
			t.Errorf("%s: %v, want 401", c.name, err)
		}
	}
	// Bad query: one line, 400.
	rm := ring.Remote{URL: "https://" + s.Addr(), Token: "s3cret", Client: client(nil)}
	if _, err := rm.Fetch(context.Background(), 0, 0, "1:nope", "", func(string) {}); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("bad flow: %v", err)
	}
	// Bounds swapped, or equal: 400, not an empty pcap.
	first := want[0].Time
	for _, w := range [][2]int64{{first + 1, first}, {first, first}} {
		if pkts, err := rm.Fetch(context.Background(), w[0], w[1], labels[3], "", func(string) {}); err == nil || !strings.Contains(err.Error(), "400") {
			t.Errorf("from %d to %d: %d frames, %v; want 400", w[0], w[1], len(pkts), err)
		}
	}
	if pkts, err := rm.Fetch(context.Background(), first, first+1, labels[3], "", func(string) {}); err != nil || len(pkts) == 0 || pkts[0].Time != first {
		t.Errorf("from %d to %d: %d frames, %v; want the first", first, first+1, len(pkts), err)
	}
	for _, bad := range []ring.ServerConfiguration{
		{Listen: "127.0.0.1:0"},                        // no token, no CA
		{Listen: "0.0.0.0:9109", Token: "x"},           // not loopback, no TLS
		{Listen: "127.0.0.1:0", ClientCAFile: ca.File}, // client certificates without TLS
		{Listen: "nonsense", Token: "x"},
	} {
		if _, err := ring.NewServer(cfg.Dir, bad); err == nil {
			t.Errorf("%+v: accepted", bad)
		}
	}
}

// TestServerPins: PUT /pins/NAME sets a pin (replacing one of that name),
// GET /pins lists them, DELETE /pins/NAME removes it (404 when none), all
// behind the same token; a bad range is a 400 that changes nothing.
func TestServerPins(t *testing.T) {
	dir := t.TempDir()
	s := tokenServer(t, dir)
	do := func(method, path, token string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+s.Addr()+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct {
		method, path, token string
		code                int
		pins                []ring.Pin
	}{
		{"PUT", "/pins/incident-1?from=100&to=200", "", 401, nil},
		{"PUT", "/pins/incident-1?from=100&to=200", "guess", 401, nil},
		{"PUT", "/pins/incident-1?from=100&to=200", "s3cret", 204, []ring.Pin{{100, 200, "incident-1"}}},
		{"PUT", "/pins/incident-1?from=100&to=300", "s3cret", 204, []ring.Pin{{100, 300, "incident-1"}}},
		{"PUT", "/pins/incident-2?from=300&to=200", "s3cret", 400, []ring.Pin{{100, 300, "incident-1"}}},
		{"PUT", "/pins/incident-2?from=yesterday&to=200", "s3cret", 400, []ring.Pin{{100, 300, "incident-1"}}},
		{"GET", "/pins", "", 401, []ring.Pin{{100, 300, "incident-1"}}},
		{"DELETE", "/pins/incident-1", "", 401, []ring.Pin{{100, 300, "incident-1"}}},
		{"DELETE", "/pins/incident-1", "s3cret", 204, nil},
		{"DELETE", "/pins/incident-1", "s3cret", 404, nil},
	} {
		code, body := do(c.method, c.path, c.token)
		pins, _ := ring.Pins(dir)
		if code != c.code || fmt.Sprint(pins) != fmt.Sprint(c.pins) {
			t.Errorf("%s %s (token %q): %d %q, pins %v; want %d, %v", c.method, c.path, c.token, code, body, pins, c.code, c.pins)
		}
	}
	do("PUT", "/pins/a?from=1&to=2", "s3cret")
	if code, body := do("GET", "/pins", "s3cret"); code != 200 || body != "1 2 a\n" {
		t.Errorf("GET /pins: %d %q", code, body)
	}
}

// TestPinNames: a name that is not one word of printable characters (a
// no-break space pasted from a ticket, a control character, 70,000
// bytes) is refused, by PUT /pins/NAME (400) and by AddPin, and the pins
// already set still read and hold. A pins file with a line too long for
// the reader (left by an older version) is an error, not a shorter list
// that the next change would write back without the pins past it.
func TestPinNames(t *testing.T) {
	dir := t.TempDir()
	s := tokenServer(t, dir)
	put := func(name string) int {
		req, _ := http.NewRequest(http.MethodPut, "http://"+s.Addr()+"/pins/"+url.PathEscape(name)+"?from=100&to=200", nil)
		req.Header.Set("Authorization", "Bearer s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	want := []ring.Pin{{From: 100, To: 200, Name: "INC-0213"}}
	if code := put("INC-0213"); code != http.StatusNoContent {
		t.Fatalf("PUT a good name: %d", code)
	}
	for _, name := range []string{"INC\u00a00213", "INC\v0213", "INC\x000213", "INC\r", "INC\u20280213", "\xff\xfe", strings.Repeat("x", 70000), strings.Repeat("x", ring.MaxPinName+1)} {
		if code := put(name); code != http.StatusBadRequest {
			t.Errorf("PUT %.20q: %d, want 400", name, code)
		}
		if err := ring.AddPin(dir, ring.Pin{From: 1, To: 2, Name: name}); err == nil {
			t.Errorf("AddPin %.20q: accepted", name)
		}
		if pins, err := ring.Pins(dir); err != nil || fmt.Sprint(pins) != fmt.Sprint(want) {
			t.Fatalf("after %.20q: pins %v, %v; want %v", name, pins, err, want)
		}
	}
	if code := put(strings.Repeat("x", ring.MaxPinName)); code != http.StatusNoContent {
		t.Errorf("PUT a name of %d bytes: %d", ring.MaxPinName, code)
	}
	long := fmt.Sprintf("1 2 %s\n3 4 after\n", strings.Repeat("x", 70000))
	if err := os.WriteFile(filepath.Join(dir, "pins"), []byte(long), 0o640); err != nil {
		t.Fatal(err)
	}
	if pins, err := ring.Pins(dir); err == nil && len(pins) != 2 {
		t.Errorf("pins file with a line of 70,000 bytes: %d pins, no error", len(pins))
	}
}

// TestServerLinkTypes: a ring fed by interfaces of two link types
// (Ethernet and raw IP, merged by mergecap) cannot answer as one pcap:
// the server says so (409, naming pcapng) instead of a header and no
// frames; asked for pcapng it answers what tshark reads as the merged
// capture itself (times to the nanosecond, lengths, link types, the
// layers), and a remote query reads that answer back whole.
func TestServerLinkTypes(t *testing.T) {
	tshark, mergecap := testutil.Command(t, "tshark"), testutil.Command(t, "mergecap")
	data := testutil.SharedTestdata(t)
	merged := filepath.Join(t.TempDir(), "merged.pcapng")
	if out, err := exec.Command(mergecap, "-F", "pcapng", "-w", merged, filepath.Join(data, "mirror/ipfixprobe/http.pcap"), filepath.Join(data, "mirror/tcpdump/LINKTYPE_RAW_ipv6.pcap")).CombinedOutput(); err != nil {
		t.Fatalf("mergecap: %v\n%s", err, out)
	}
	in := readFrames(t, merged)
	cfg := config(t.TempDir())
	fill(t, cfg, in)
	s := tokenServer(t, cfg.Dir)
	get := func(query string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+s.Addr()+"/packets?"+query, nil)
		req.Header.Set("Authorization", "Bearer s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, body := get(""); code != http.StatusConflict || !strings.Contains(string(body), "pcapng") {
		t.Errorf("pcap of two link types: %d %q, want 409 naming pcapng", code, body)
	}
	if code, body := get("format=xml"); code != http.StatusBadRequest {
		t.Errorf("format=xml: %d %q, want 400", code, body)
	}
	code, body := get("format=pcapng")
	if code != http.StatusOK {
		t.Fatalf("pcapng: %d %q", code, body)
	}
	answer := filepath.Join(t.TempDir(), "answer.pcapng")
	if err := os.WriteFile(answer, body, 0o600); err != nil {
		t.Fatal(err)
	}
	fields := func(path string) []string {
		out, err := exec.Command(tshark, "-r", path, "-T", "fields", "-e", "frame.time_epoch", "-e", "frame.len", "-e", "frame.cap_len", "-e", "frame.encap_type", "-e", "frame.protocols").Output()
		if err != nil {
			t.Fatalf("tshark -r %s: %v", path, err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		slices.Sort(lines) // the answer is in time order, the merged file as captured
		return lines
	}
	want := fields(merged)
	if diff := testutil.Diff(fields(answer), want); diff != "" {
		t.Errorf("tshark on the answer (-got, +want: tshark on the merged capture):\n%s", diff)
	}
	encaps := map[string]bool{}
	for _, l := range want {
		encaps[strings.Split(l, "\t")[3]] = true
	}
	if len(encaps) != 2 {
		t.Fatalf("the merged capture has link types %v, want two", encaps)
	}
	rm := ring.Remote{URL: "http://" + s.Addr(), Token: "s3cret"}
	pkts, err := rm.Fetch(context.Background(), 0, 0, "", "", func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	if diff := diffFrames(frames(pkts), timeOrder(in)); diff != "" {
		t.Errorf("remote query (-got, +want):\n%s", diff)
	}
}

// TestServerStuckClients: clients that ask for a whole ring and never
// read hold no more than two answers in the server's memory however many
// they are, and are cut off at the write deadline; a query then answers
// the whole ring.
func TestServerStuckClients(t *testing.T) {
	defer ring.SetAnswerWriteTime(2 * time.Second)()
	cfg := ring.Configuration{Dir: t.TempDir(), Size: 128 << 20, Codec: ring.CodecNone}
	rng := rand.New(rand.NewPCG(3, 3))
	in := make([]frame, 32<<10)
	ts := time.Date(2026, 12, 5, 2, 13, 0, 0, time.UTC).UnixNano()
	for i := range in {
		data := make([]byte, 1000)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		ts += 1000
		in[i] = frame{Time: ts, Length: len(data), Link: 1, Data: data}
	}
	fill(t, cfg, in)
	answer := int64(len(in) * 1000)
	in = nil
	s := tokenServer(t, cfg.Dir)
	heap := func() int64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	base := heap()
	for range 6 {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /packets HTTP/1.1\r\nHost: probe\r\nAuthorization: Bearer s3cret\r\n\r\n")
	}
	var most int64
	for range 15 {
		time.Sleep(100 * time.Millisecond)
		most = max(most, heap()-base)
	}
	if most > 3*answer {
		t.Errorf("6 stuck clients of %d MiB answers: the server held %d MiB", answer>>20, most>>20)
	}
	t.Logf("6 stuck clients of %d MiB answers: the server held %d MiB at most", answer>>20, most>>20)
	rm := ring.Remote{URL: "http://" + s.Addr(), Token: "s3cret", Client: &http.Client{Timeout: 30 * time.Second}}
	pkts, err := rm.Fetch(context.Background(), 0, 0, "", "", func(string) {})
	if err != nil || len(pkts) != 32<<10 {
		t.Errorf("after the stuck clients: %d frames, %v; want %d", len(pkts), err, 32<<10)
	}
}

// TestPinsFromTwoProcesses: the query server and spanflow pcap pin (here
// this test and a copy of it in another process) each set 100 pins on one
// ring at once: all 200 are there, and the file reads.
func TestPinsFromTwoProcesses(t *testing.T) {
	if dir := os.Getenv("SPANFLOW_TEST_PIN_DIR"); dir != "" {
		for i := range 100 {
			if err := ring.AddPin(dir, ring.Pin{From: 1, To: 2, Name: fmt.Sprintf("cli-%d", i)}); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPinsFromTwoProcesses$")
	cmd.Env = append(os.Environ(), "SPANFLOW_TEST_PIN_DIR="+dir)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var errs []error
	for i := range 100 {
		if err := ring.AddPin(dir, ring.Pin{From: 3, To: 4, Name: fmt.Sprintf("server-%d", i)}); err != nil {
			errs = append(errs, err)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the other process: %v\n%s", err, out.String())
	}
	if len(errs) > 0 {
		t.Errorf("%d pins refused, first: %v", len(errs), errs[0])
	}
	pins, err := ring.Pins(dir)
	if err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for i := range 100 {
		want = append(want, fmt.Sprintf("cli-%d", i), fmt.Sprintf("server-%d", i))
	}
	for _, p := range pins {
		got = append(got, p.Name)
	}
	slices.Sort(want)
	slices.Sort(got)
	if diff := testutil.Diff(got, want); diff != "" {
		t.Errorf("pins (-got, +want):\n%s", diff)
	}
}

// TestServerLongFilter: a filter past 8 KiB (500 hosts or-ed, which
// libpcap takes seconds to compile, 2,000 over ten minutes, in the
// capturing process) is refused at once; one of 100 hosts is answered as
// tcpdump selects with it from the same frames.
func TestServerLongFilter(t *testing.T) {
	in, _ := generated(40, 3000, time.Date(2026, 12, 5, 2, 13, 0, 0, time.UTC))
	cfg := config(t.TempDir())
	fill(t, cfg, in)
	s := tokenServer(t, cfg.Dir)
	hosts := func(n int) string {
		var h []string
		for i := range n {
			h = append(h, fmt.Sprintf("host 10.1.%d.%d", i/250, i%250))
		}
		return strings.Join(h, " or ")
	}
	rm := ring.Remote{URL: "http://" + s.Addr(), Token: "s3cret"}
	start := time.Now()
	if _, err := rm.Fetch(context.Background(), 0, 0, "", hosts(500), func(string) {}); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("filter of 500 hosts: %v, want 400", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("filter of 500 hosts refused after %s", d)
	}
	pkts, err := rm.Fetch(context.Background(), 0, 0, "", hosts(100), func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	tcpdump := testutil.Command(t, "tcpdump")
	all, sel := filepath.Join(t.TempDir(), "all.pcap"), filepath.Join(t.TempDir(), "sel.pcap")
	var b bytes.Buffer
	var src []ring.Packet
	for _, f := range timeOrder(in) {
		src = append(src, ring.Packet{Time: f.Time, Length: f.Length, LinkType: f.Link, Data: f.Data})
	}
	if err := ring.WritePcap(&b, src); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(all, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tcpdump, "--time-stamp-precision=nano", "-r", all, "-w", sel, hosts(100)).CombinedOutput(); err != nil {
		t.Fatalf("tcpdump: %v\n%s", err, out)
	}
	want := readFrames(t, sel)
	if len(want) == 0 {
		t.Fatal("the filter of 100 hosts selects nothing: a useless case")
	}
	if diff := diffFrames(frames(pkts), want); diff != "" {
		t.Errorf("filter of 100 hosts (-got, +want):\n%s", diff)
	}
}

// TestServerCommunityIDUnescaped: a Community ID pasted into a URL as it
// is, its '+' not escaped (which a query string reads as a space), still
// selects its flow: the frames tshark's communityid selects.
func TestServerCommunityIDUnescaped(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	path := filepath.Join(testutil.SharedTestdata(t), "mirror/ipfixprobe/http.pcap")
	cfg := config(t.TempDir())
	fill(t, cfg, readFrames(t, path))
	s := tokenServer(t, cfg.Dir)
	const id = "1:YclH2P2NjIrHuq3+XyFFsI+Dpzw=" // two '+'
	wantFile := filepath.Join(t.TempDir(), "want.pcap")
	if out, err := exec.Command(tshark, "-r", path, "--enable-protocol", "communityid", "-Y", `communityid == "`+id+`"`, "-w", wantFile).CombinedOutput(); err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	want := timeOrder(readFrames(t, wantFile))
	if len(want) == 0 {
		t.Fatal("tshark finds no frame of the flow: a useless case")
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.Addr()+"/packets?flow="+id, nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("flow=%s unescaped: %s %q", id, resp.Status, body)
	}
	got := filepath.Join(t.TempDir(), "got.pcap")
	if err := os.WriteFile(got, body, 0o600); err != nil {
		t.Fatal(err)
	}
	if diff := diffFrames(readFrames(t, got), want); diff != "" {
		t.Errorf("flow=%s unescaped (-got, +want from tshark):\n%s", id, diff)
	}
}

// tokenServer serves the ring in dir on loopback behind the token
// "s3cret", until the test ends.
func tokenServer(t *testing.T, dir string) *ring.Server {
	t.Helper()
	s, err := ring.NewServer(dir, ring.ServerConfiguration{Listen: "127.0.0.1:0", Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}
