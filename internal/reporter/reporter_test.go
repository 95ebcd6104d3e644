package reporter

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/spanflow/spanflow/internal/testutil"
)

func TestMetricsServerServesLintCleanMetrics(t *testing.T) {
	r := NewForTest(nil)
	f := r.Factory("test")
	f.Counter("packets_total", "Packets seen.").Add(3)
	f.GaugeVec("queue_depth", "Records waiting per collector.", "collector").WithLabelValues("a").Set(2)
	s := NewMetricsServer(r, "127.0.0.1:0")
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	resp, err := http.Get("http://" + s.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "spanflow_test_packets_total 3") {
		t.Errorf("metrics lack the counter:\n%s", body)
	}
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

func TestLimitedSuppresses(t *testing.T) {
	var buf bytes.Buffer
	l := NewLimited(NewForTest(&buf).Log, time.Hour)
	for range 100 {
		l.Warn("192.0.2.1/short", "short datagram")
	}
	l.Warn("192.0.2.2/short", "short datagram")
	if n := strings.Count(buf.String(), "short datagram"); n != 2 {
		t.Errorf("logged %d times, want 2 (one per key):\n%s", n, buf.String())
	}
}

// The lines of WarnCount add up to the loss, not to the lines: each gives
// the total of the calls since the key's last line, and the calls
// suppressed at the end are logged when the interval ends.
func TestLimitedCountAddsUp(t *testing.T) {
	var buf testutil.SyncBuffer
	l := NewLimited(NewForTest(&buf).Log, 50*time.Millisecond)
	for range 100 {
		l.WarnCount("buffer-full", "records dropped", "records", 3, "err", "full")
	}
	total := func() (n int) {
		for _, line := range strings.Split(buf.String(), "\n") {
			if _, v, ok := strings.Cut(line, " records="); ok {
				k, _ := strconv.Atoi(strings.Fields(v)[0])
				n += k
			}
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); total() < 300 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := total(); got != 300 {
		t.Errorf("the lines add up to %d records, want 300:\n%s", got, buf.String())
	}
}

// A log line carries one component key, however deep the reporters nest,
// and With keeps it.
func TestOneComponentKey(t *testing.T) {
	var buf bytes.Buffer
	r := NewForTest(&buf)
	r.Sub("output elasticsearch").Sub("elasticsearch").Log.Info("a")
	r.Sub("exporter").With(nil, "worker", 1).Sub("meter").Log.Info("b")
	r.Sub("listen").Log.Info("c")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{`component="output elasticsearch"`, `worker=1 component=exporter/meter`, `component=listen`}
	for i, l := range lines {
		if n := strings.Count(l, "component="); n != 1 || !strings.Contains(l, want[i]) {
			t.Errorf("line %d: %s\nwant one component key, %s", i, l, want[i])
		}
	}
}
