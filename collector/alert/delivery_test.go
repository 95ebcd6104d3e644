package alert

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// alertmanagerBin is the binary scripts/alertmanager builds; the test
// skips without it (fails under CI=true).
func alertmanagerBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("SPANFLOW_ALERTMANAGER_BIN")
	if bin == "" {
		home, _ := os.UserHomeDir()
		cache := os.Getenv("SPANFLOW_CACHE")
		if cache == "" {
			cache = filepath.Join(home, ".cache", "spanflow")
		}
		bin = filepath.Join(cache, "alertmanager-0.35.0")
	}
	reason := ""
	if _, err := os.Stat(bin); err != nil {
		reason = bin + " not found (scripts/alertmanager fetch builds it)"
	}
	testutil.NeedService(t, "Alertmanager", reason)
	return bin
}

// amInstance is a real Alertmanager started by a test.
type amInstance struct {
	t    *testing.T
	bin  string
	addr string
	dir  string
	args []string // more flags
	cmd  *exec.Cmd
}

func freeAddr(t *testing.T) string { return testutil.FreeAddr(t, "tcp") }

// startAlertmanager starts one that groups by alertname and sends to hook.
func startAlertmanager(t *testing.T, hook string) *amInstance {
	am := &amInstance{t: t, bin: alertmanagerBin(t), addr: freeAddr(t), dir: t.TempDir()}
	cfg := fmt.Sprintf(`route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: %s
        send_resolved: true
`, hook)
	if err := os.WriteFile(filepath.Join(am.dir, "am.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	am.start()
	t.Cleanup(am.stop)
	return am
}

func (am *amInstance) start() {
	t := am.t
	data := filepath.Join(am.dir, fmt.Sprintf("data-%d", time.Now().UnixNano()))
	am.cmd = exec.Command(am.bin, append([]string{"--config.file=" + filepath.Join(am.dir, "am.yml"), "--storage.path=" + data,
		"--web.listen-address=" + am.addr, "--cluster.listen-address="}, am.args...)...)
	logf, _ := os.Create(filepath.Join(am.dir, "am.log"))
	am.cmd.Stdout, am.cmd.Stderr = logf, logf
	if err := am.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(am.url() + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(am.dir, "am.log"))
	t.Fatalf("alertmanager did not start:\n%s", log)
}

func (am *amInstance) stop() {
	if am.cmd != nil && am.cmd.Process != nil {
		am.cmd.Process.Kill()
		am.cmd.Wait()
		am.cmd = nil
	}
}

func (am *amInstance) url() string { return "http://" + am.addr }

type amGot struct {
	Labels map[string]string `json:"labels"`
	Status struct {
		State string `json:"state"`
	} `json:"status"`
	EndsAt time.Time `json:"endsAt"`
}

// active lists what Alertmanager holds (GET /api/v2/alerts).
func (am *amInstance) active() []amGot {
	resp, err := http.Get(am.url() + "/api/v2/alerts")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var out []amGot
	json.NewDecoder(resp.Body).Decode(&out)
	return out
}

// hookServer is a webhook receiver that keeps every body.
type hookServer struct {
	mu     sync.Mutex
	bodies [][]byte
	heads  []http.Header
	srv    *http.Server
	addr   string
}

func startHook(t *testing.T, addr string) *hookServer {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	h := &hookServer{addr: l.Addr().String()}
	h.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.bodies, h.heads = append(h.bodies, b), append(h.heads, r.Header.Clone())
		h.mu.Unlock()
	})}
	go h.srv.Serve(l)
	t.Cleanup(func() { h.srv.Close() })
	return h
}

func (h *hookServer) got() ([][]byte, []http.Header) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]byte(nil), h.bodies...), append([]http.Header(nil), h.heads...)
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if ok() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", d, what)
}

func testAlert(rule, key string, started time.Time) Alert {
	return Alert{Rule: rule, Severity: "critical", Scope: "line", Key: key,
		Labels: map[string]string{"line": key}, Annotations: map[string]string{"summary": "line " + key + " saturated"},
		StartsAt: started, FiredAt: started, Value: 0.95}
}

// amWebhook is Alertmanager's webhook notification (the fields we check).
type amWebhook struct {
	Status      string            `json:"status"`
	GroupLabels map[string]string `json:"groupLabels"`
	Alerts      []struct {
		Status string            `json:"status"`
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
}

// TestAlertmanager: a real Alertmanager receives the alerts, groups the
// three of one rule into one notification, and resolves them.
func TestAlertmanager(t *testing.T) {
	hook := startHook(t, "")
	am := startAlertmanager(t, "http://"+hook.addr+"/hook")
	r := reporter.NewForTest(nil)
	m := newMetrics(r)
	s := NewAlertmanager(r, m, []string{am.url()}, time.Second)
	s.Start()
	defer s.Stop()
	now := time.Now()
	var alerts []Alert
	for _, k := range []string{"esx-a01 vmnic0", "esx-a02 vmnic0", "esx-a03 vmnic0"} {
		alerts = append(alerts, testAlert("line_saturated", k, now))
	}
	other := testAlert("retransmission_burst", "payments", now)
	other.Scope = "project"
	alerts = append(alerts, other)
	for _, a := range alerts {
		s.Send(a)
	}
	waitFor(t, "4 active alerts in Alertmanager", 20*time.Second, func() bool { return len(am.active()) == 4 })
	for _, a := range am.active() {
		if a.Labels["alertname"] == "" || a.Labels["severity"] != "critical" || a.Status.State != "active" || !a.EndsAt.After(time.Now()) {
			t.Errorf("alert in Alertmanager: %+v", a)
		}
	}
	notes := func(status string) []amWebhook {
		bodies, _ := hook.got()
		var out []amWebhook
		for _, b := range bodies {
			var n amWebhook
			if err := json.Unmarshal(b, &n); err != nil {
				t.Fatalf("receiver got %s: %v", b, err)
			}
			if n.Status == status {
				out = append(out, n)
			}
		}
		return out
	}
	waitFor(t, "two grouped firing notifications", 20*time.Second, func() bool { return len(notes("firing")) >= 2 })
	for _, n := range notes("firing") {
		want := map[string]int{"line_saturated": 3, "retransmission_burst": 1}[n.GroupLabels["alertname"]]
		if len(n.Alerts) != want {
			t.Errorf("group %v has %d alerts, want %d", n.GroupLabels, len(n.Alerts), want)
		}
	}
	end := time.Now()
	for _, a := range alerts[:3] {
		a.EndsAt = end
		s.Send(a)
	}
	waitFor(t, "a resolved notification of the line group", 20*time.Second, func() bool {
		for _, n := range notes("resolved") {
			if n.GroupLabels["alertname"] == "line_saturated" && len(n.Alerts) == 3 {
				return true
			}
		}
		return false
	})
	if got := am.active(); len(got) != 1 || got[0].Labels["alertname"] != "retransmission_burst" {
		t.Errorf("active after resolving: %+v", got)
	}
}

// TestAlertmanagerRestart: an Alertmanager that lost its state (restarted
// with an empty storage) gets the firing alerts again from the resends.
func TestAlertmanagerRestart(t *testing.T) {
	hook := startHook(t, "")
	am := startAlertmanager(t, "http://"+hook.addr+"/hook")
	r := reporter.NewForTest(nil)
	s := NewAlertmanager(r, newMetrics(r), []string{am.url()}, time.Second)
	s.Start()
	defer s.Stop()
	s.Send(testAlert("line_saturated", "esx-a03 vmnic0", time.Now()))
	waitFor(t, "the alert in Alertmanager", 20*time.Second, func() bool { return len(am.active()) == 1 })
	am.stop()
	time.Sleep(1500 * time.Millisecond) // resends fail meanwhile
	am.start()
	if n := len(am.active()); n != 0 {
		t.Fatalf("restarted Alertmanager already holds %d alerts: its state was not lost", n)
	}
	waitFor(t, "the alert re-sent to the restarted Alertmanager", 20*time.Second, func() bool { return len(am.active()) == 1 })
}

// TestWebhookDown: the receiver is down when the alert fires; it is
// delivered, signed, once the receiver is back, followed by its resolution.
func TestWebhookDown(t *testing.T) {
	addr := freeAddr(t) // nothing listens there yet
	r := reporter.NewForTest(nil)
	m := newMetrics(r)
	secret := []byte("s3cret")
	w := NewWebhook(r, m, "http://"+addr+"/alerts", secret, 100)
	w.MaxBackoff = 500 * time.Millisecond
	w.Start()
	defer w.Stop()
	a := testAlert("line_saturated", "esx-a03 vmnic0", time.Now())
	w.Send(a)
	a.EndsAt = time.Now()
	w.Send(a)
	time.Sleep(2 * time.Second)
	if errs := promtest.ToFloat64(m.errors.WithLabelValues("webhook")); errs < 2 {
		t.Fatalf("%v failed attempts while the receiver was down, want several", errs)
	}
	hook := startHook(t, addr)
	waitFor(t, "both notifications at the receiver", 10*time.Second, func() bool { b, _ := hook.got(); return len(b) == 2 })
	bodies, heads := hook.got()
	for i, want := range []string{"firing", "resolved"} {
		var msg WebhookMessage
		if err := json.Unmarshal(bodies[i], &msg); err != nil {
			t.Fatal(err)
		}
		if msg.Status != want || msg.Alert.Rule != "line_saturated" || msg.Alert.Key != "esx-a03 vmnic0" {
			t.Errorf("notification %d: %s", i, bodies[i])
		}
		mac := hmac.New(sha256.New, secret)
		mac.Write(bodies[i])
		if got := heads[i].Get(SignatureHeader); got != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
			t.Errorf("signature %q does not match the body", got)
		}
	}
}

// TestWebhookQueueFull: beyond the queue's bound notifications are counted.
func TestWebhookQueueFull(t *testing.T) {
	r := reporter.NewForTest(nil)
	m := newMetrics(r)
	w := NewWebhook(r, m, "http://"+freeAddr(t)+"/", nil, 3)
	for i := 0; i < 10; i++ { // not started: nothing drains the queue
		w.Send(testAlert("r", strconv.Itoa(i), time.Now()))
	}
	if got := promtest.ToFloat64(m.dropped.WithLabelValues("webhook")); got != 7 {
		t.Errorf("dropped %v, want 7", got)
	}
}

// rfc5424 is the message grammar of RFC 5424 §6 (our own reading of it).
var rfc5424 = regexp.MustCompile(`^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|(?:\[(?:[^\]\\]|\\.)*\])+) ?(.*)$`)
var sdParam = regexp.MustCompile(`(\S+?)="((?:[^"\\]|\\.)*)"`)

type syslogMsg struct {
	pri                   int
	time                  time.Time
	host, app, msgid, msg string
	params                map[string]string
}

func parse5424(t *testing.T, s string) syslogMsg {
	t.Helper()
	m := rfc5424.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("not RFC 5424: %q", s)
	}
	pri, _ := strconv.Atoi(m[1])
	ts, err := time.Parse(time.RFC3339Nano, m[2])
	if err != nil {
		t.Errorf("timestamp %q: %v", m[2], err)
	}
	out := syslogMsg{pri: pri, time: ts, host: m[3], app: m[4], msgid: m[6], msg: m[8], params: map[string]string{}}
	if !strings.HasPrefix(m[7], "[spanflow@32473 ") {
		t.Errorf("structured data %q", m[7])
	}
	for _, p := range sdParam.FindAllStringSubmatch(m[7], -1) {
		out.params[p[1]] = strings.NewReplacer(`\"`, `"`, `\\`, `\`, `\]`, `]`).Replace(p[2])
	}
	return out
}

func checkSyslog(t *testing.T, got []string) {
	t.Helper()
	if len(got) != 2 {
		t.Fatalf("%d messages, want 2", len(got))
	}
	f, r := parse5424(t, got[0]), parse5424(t, got[1])
	if f.pri != 16*8+2 || f.msgid != "firing" || f.app != "spanflow" || f.params["rule"] != "line_saturated" ||
		f.params["label.line"] != `esx-a03 "vmnic0"]` || f.msg != `line esx-a03 "vmnic0"] saturated` {
		t.Errorf("firing message %q read as %+v", got[0], f)
	}
	if r.pri != 16*8+5 || r.msgid != "resolved" || r.params["endsAt"] == "" || r.params["fingerprint"] != f.params["fingerprint"] {
		t.Errorf("resolved message %q read as %+v", got[1], r)
	}
	if time.Since(f.time) > time.Minute {
		t.Errorf("timestamp %v", f.time)
	}
}

// TestSyslog: a listener parses the RFC 5424 messages, over UDP (one per
// datagram) and TCP (RFC 6587 octet counting).
func TestSyslog(t *testing.T) {
	a := testAlert("line_saturated", `esx-a03 "vmnic0"]`, time.Now())
	resolved := a
	resolved.EndsAt = time.Now()
	t.Run("udp", func(t *testing.T) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		r := reporter.NewForTest(nil)
		s, err := NewSyslog(r, newMetrics(r), "udp://"+pc.LocalAddr().String(), 10)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		defer s.Stop()
		s.Send(a)
		s.Send(resolved)
		var got []string
		buf := make([]byte, 65536)
		pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		for len(got) < 2 {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(buf[:n]))
		}
		checkSyslog(t, got)
	})
	t.Run("tcp", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		r := reporter.NewForTest(nil)
		s, err := NewSyslog(r, newMetrics(r), "tcp://"+l.Addr().String(), 10)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		defer s.Stop()
		s.Send(a)
		s.Send(resolved)
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		var got []string
		for len(got) < 2 {
			lenText, err := br.ReadString(' ')
			if err != nil {
				t.Fatal(err)
			}
			n, err := strconv.Atoi(strings.TrimSpace(lenText))
			if err != nil {
				t.Fatalf("octet count %q: %v", lenText, err)
			}
			msg := make([]byte, n)
			if _, err := io.ReadFull(br, msg); err != nil {
				t.Fatal(err)
			}
			got = append(got, string(msg))
		}
		checkSyslog(t, got)
	})
}

// TestWebhookRejected: a notification the receiver rejects (a 4xx answer)
// is counted as dropped and not sent again, so the ones queued behind it
// go out; one answered 429 (too many requests) or 5xx is retried.
func TestWebhookRejected(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var msg WebhookMessage
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &msg)
		mu.Lock()
		seen[msg.Alert.Key]++
		n := seen[msg.Alert.Key]
		mu.Unlock()
		switch {
		case msg.Alert.Key == "bad":
			w.WriteHeader(http.StatusBadRequest)
		case msg.Alert.Key == "busy" && n == 1:
			w.WriteHeader(http.StatusTooManyRequests)
		case msg.Alert.Key == "flaky" && n == 1:
			w.WriteHeader(http.StatusBadGateway)
		}
	})}
	go srv.Serve(l)
	defer srv.Close()
	r := reporter.NewForTest(nil)
	m := newMetrics(r)
	w := NewWebhook(r, m, "http://"+l.Addr().String()+"/", nil, 100)
	w.MaxBackoff = 200 * time.Millisecond
	w.Start()
	defer w.Stop()
	for _, k := range []string{"bad", "busy", "flaky", "good"} {
		w.Send(testAlert("r", k, time.Now()))
	}
	count := func(k string) int { mu.Lock(); defer mu.Unlock(); return seen[k] }
	waitFor(t, "the notifications behind the rejected one", 10*time.Second, func() bool { return count("good") == 1 })
	time.Sleep(300 * time.Millisecond) // a retry of the rejected one would come by now
	if got := [4]int{count("bad"), count("busy"), count("flaky"), count("good")}; got != [4]int{1, 2, 2, 1} {
		t.Errorf("posts of bad, busy, flaky, good: %v, want [1 2 2 1]", got)
	}
	if got := promtest.ToFloat64(m.dropped.WithLabelValues("webhook")); got != 1 {
		t.Errorf("dropped %v, want 1 (the rejected one)", got)
	}
}

// TestAlertmanagerPostsChanges: with thousands of alerts firing (a storm of
// new peers), a change posts that alert alone, not all of them; the
// resend posts all, in requests of at most amChunk; alerts whose post
// failed go again with the next change.
func TestAlertmanagerPostsChanges(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	keys := map[string]int{}
	fail := false
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var posted []amPayload
		if err := json.NewDecoder(r.Body).Decode(&posted); err != nil || r.URL.Path != "/api/v2/alerts" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if fail {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		sizes = append(sizes, len(posted))
		for _, p := range posted {
			keys[p.Annotations["key"]]++
		}
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	// posted returns the request sizes and the posts per key since the last call.
	posted := func() ([]int, map[string]int) {
		mu.Lock()
		defer mu.Unlock()
		s, k := sizes, keys
		sizes, keys = nil, map[string]int{}
		return s, k
	}
	total := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, c := range sizes {
			n += c
		}
		return n
	}
	r := reporter.NewForTest(nil)
	s := NewAlertmanager(r, newMetrics(r), []string{"http://" + l.Addr().String()}, time.Hour)
	s.Start()
	defer s.Stop()
	const n = 2500
	now := time.Now()
	for i := range n {
		s.Send(testAlert("new_peer", strconv.Itoa(i), now))
	}
	waitFor(t, "every alert posted", 10*time.Second, func() bool { return total() >= n })
	time.Sleep(100 * time.Millisecond)
	sz, k := posted()
	if len(k) != n {
		t.Fatalf("%d alerts posted, want %d", len(k), n)
	}
	for _, c := range sz {
		if c > amChunk {
			t.Errorf("a request of %d alerts, more than %d", c, amChunk)
		}
	}
	// One resolves: that one is posted.
	a := testAlert("new_peer", "7", now)
	a.EndsAt = time.Now()
	s.Send(a)
	waitFor(t, "the change posted", 10*time.Second, func() bool { return total() >= 1 })
	time.Sleep(100 * time.Millisecond)
	if sz, k = posted(); len(k) != 1 || k["7"] != 1 {
		t.Errorf("after one change: requests %v posting %d alerts, want only alert 7", sz, len(k))
	}
	// A failed post is posted again with the next change.
	mu.Lock()
	fail = true
	mu.Unlock()
	s.Send(testAlert("new_peer", "8", time.Now()))
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	fail = false
	mu.Unlock()
	s.Send(testAlert("new_peer", "9", time.Now()))
	waitFor(t, "the failed change and the next", 10*time.Second, func() bool { return total() >= 2 })
	time.Sleep(100 * time.Millisecond)
	if _, k = posted(); len(k) != 2 || k["8"] != 1 || k["9"] != 1 {
		t.Errorf("after a failed post and a change: %d alerts posted (8: %d, 9: %d), want alerts 8 and 9 once each", len(k), k["8"], k["9"])
	}
	// The resend posts them all.
	s.postAll(context.Background(), true)
	sz, k = posted()
	if len(k) != n || len(sz) != (n+amChunk-1)/amChunk {
		t.Errorf("resend: %d alerts in %d requests, want %d in %d", len(k), len(sz), n, (n+amChunk-1)/amChunk)
	}
}

// TestSyslogParamNames: every structured data parameter of the syslog
// message of a rule's alert is an RFC 5424 PARAM-NAME (1 to 32 printable
// ASCII characters but = SP ] "), whatever label names the rules file
// takes; a label name that would make a longer one (27 characters:
// label.NAME is 33) is refused at its rule's line. A strict receiver
// refused the whole message.
func TestSyslogParamNames(t *testing.T) {
	paramName := regexp.MustCompile(`^[!#-<>-\\^-~]{1,32}$`)
	for _, name := range []string{"team", strings.Repeat("a", 26), strings.Repeat("a", 27)} {
		f, err := ParseRules([]byte("rules:\n  - name: r\n    value: bytes_per_second\n    exporter: 10.0.0.1\n    above: 1\n    labels: {" + name + ": v}\n"))
		if len(name) > 26 {
			if err == nil || !strings.HasPrefix(err.Error(), `line 2: rule "r": label name`) {
				t.Errorf("label %s: %v, want refused at line 2", name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("label %s: %v", name, err)
		}
		a := testAlert("r", "10.0.0.1", time.Now())
		for k, v := range f.Rules[0].Labels {
			a.Labels[k] = v
		}
		r := reporter.NewForTest(nil)
		s, err := NewSyslog(r, newMetrics(r), "udp://127.0.0.1:514", 1)
		if err != nil {
			t.Fatal(err)
		}
		m := parse5424(t, s.Format(&a, time.Now()))
		if m.params["label."+name] != "v" {
			t.Errorf("label %s: params %v", name, m.params)
		}
		for p := range m.params {
			if !paramName.MatchString(p) {
				t.Errorf("PARAM-NAME %q is not RFC 5424's", p)
			}
		}
	}
}
