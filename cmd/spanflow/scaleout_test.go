package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/bench/ipfixgen"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestScaleOutExactlyOnce runs the scale-out path as operators would, every
// part a process: 500 exporters (distinct loopback addresses, each with
// its own IPFIX template, sequence numbers and observation domain) ─▶ two
// collectors sharing the UDP port (SO_REUSEPORT) with --output kafka ─▶ the
// real broker ─▶ two indexers in one group ─▶ the real Elasticsearch. A
// third of the exporters speak IPFIX, a third NetFlow v9 (both with template
// id 256), a third are sFlow v5 agents (their own agent address, sub-agent
// and sequence numbers; one flow per flow sample, sampled 1 in 100) sending
// to the collectors' shared sFlow port. One indexer is killed with SIGKILL
// mid-run. Every flow sent is then in Elasticsearch exactly once: per
// exporter, as many documents as it sent flows, and the bytes add up to
// what was sent (sFlow: the sampled lengths times the rate).
func TestScaleOutExactlyOnce(t *testing.T) {
	brokers, esURL := testutil.Kafka(t), testutil.Elasticsearch(t)
	const exporters, messages, perMessage = 500, 4, 20
	const flows = exporters * messages * perMessage
	// A /16 of loopback no earlier run left flows from (the test cluster
	// has no delete-by-query).
	var netByte byte
	var cidr string
	for range 50 {
		netByte = byte(2 + rand.IntN(250))
		if cidr = fmt.Sprintf("127.%d.0.0/16", netByte); countFlows(t, esURL, cidr) == 0 {
			break
		}
	}
	run := fmt.Sprintf("%d-%d", netByte, time.Now().UnixNano()%1e6)
	topic, group := "spanflow-e2e-"+run, "e2e-"+run

	free := func() string {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	}
	ipfixAddr, sflowAddr := free(), free()
	var logs testutil.SyncBuffer
	defer func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	}()
	kafkaFlags := []string{"--kafka-brokers", brokers, "--kafka-topic", topic}
	start := func(what string, wait string, args ...string) *processHandle {
		return startWatched(t, spanflowProcess(t, args...), &logs, what, wait)
	}
	for i := range 2 {
		start(fmt.Sprintf("collector%d", i+1), "msg=listening", append([]string{"collector", "run", "--metrics-listen", "",
			"--netflow-listen", "", "--sflow-listen", sflowAddr, "--ipfix-tcp-listen", "", "--ipfix-listen", ipfixAddr, "--listen-reuseport",
			"--exporter-stats-interval", "0", "--output", "kafka", "--kafka-partitions", "8"}, kafkaFlags...)...)
	}
	indexer := func(i int) *processHandle {
		return start(fmt.Sprintf("indexer%d", i), "indexer consuming", append([]string{"indexer", "run", "--metrics-listen", "",
			"--es-url", esURL, "--es-spool-dir", t.TempDir(), "--kafka-group", group, "--kafka-session-timeout", "6s",
			// Small batches: the kill lands between commits.
			"--kafka-max-poll-messages", "5"}, kafkaFlags...)...)
	}
	victim := indexer(1)
	indexer(2)

	// 500 exporters, each its own socket on 127.N.x.y: templates, sequence
	// numbers and domains of their own, the same template id, three protocols.
	var wantBytes uint64
	gens := make([]interface {
		Template() []byte
		AppendData([]byte) []byte
		Flows() uint64
		Bytes() uint64
	}, exporters)
	conns := make([]*net.UDPConn, exporters)
	target := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(ipfixAddr))
	sflowTarget := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(sflowAddr))
	for i := range exporters {
		src := netip.AddrFrom4([4]byte{127, netByte, byte(i / 250), byte(i%250 + 1)})
		// IPFIX, NetFlow v9 (the same template id as its IPFIX
		// neighbours, another layout) and sFlow (its agent address is its
		// source address), in turn.
		to := target
		switch i % 3 {
		case 0:
			gens[i] = ipfixgen.New(uint32(1000+i), perMessage)
		case 1:
			gens[i] = ipfixgen.NewV9(uint32(1000+i), perMessage)
		case 2:
			gens[i], to = ipfixgen.NewSFlow(src, uint32(1000+i), perMessage, 100), sflowTarget
		}
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), to)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	sent := 0
	send := func(c *net.UDPConn, b []byte) {
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		if sent++; sent%5 == 0 {
			time.Sleep(time.Millisecond) // paced: the test is about Kafka, not the kernel's buffers
		}
	}
	for i, c := range conns {
		if t := gens[i].Template(); t != nil {
			send(c, t)
		}
	}
	var buf []byte
	for range messages {
		for i, c := range conns {
			buf = gens[i].AppendData(buf[:0])
			send(c, buf)
		}
	}
	for _, g := range gens {
		wantBytes += g.Bytes()
	}

	// Kill one indexer once a third of the flows are in.
	waitCount := func(what string, within time.Duration, ok func(n int) bool) int {
		t.Helper()
		n := 0
		for deadline := time.Now().Add(within); ; time.Sleep(500 * time.Millisecond) {
			if n = countFlows(t, esURL, cidr); ok(n) {
				return n
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d of %d flows in Elasticsearch after %s", what, n, flows, within)
			}
		}
	}
	atKill := waitCount("before the kill", 2*time.Minute, func(n int) bool { return n >= flows/3 })
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("indexer1 killed with %d of %d flows indexed", atKill, flows)
	if atKill == flows {
		t.Log("every flow was indexed before the kill landed: the replay was not exercised this time")
	}
	waitCount("after the kill", 3*time.Minute, func(n int) bool { return n >= flows })
	time.Sleep(5 * time.Second) // a late duplicate would show now

	var res struct {
		Hits struct {
			Total struct{ Value int }
		}
		Aggregations struct {
			Bytes     struct{ Value float64 }
			Exporters struct {
				Buckets []struct {
					Key      string
					DocCount int `json:"doc_count"`
				}
			}
		}
	}
	esPost(t, esURL, "/spanflow-flows*/_refresh", "")
	body := esPost(t, esURL, "/spanflow-flows*/_search", fmt.Sprintf(`{"size":0,"track_total_hits":true,
		"query":{"term":{"observer.ip":%q}},
		"aggs":{"bytes":{"sum":{"field":"network.bytes"}},"exporters":{"terms":{"field":"observer.ip","size":1000}}}}`, cidr))
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if got := res.Hits.Total.Value; got != flows {
		t.Errorf("%d flow documents, want %d (sent)", got, flows)
	}
	if got := uint64(res.Aggregations.Bytes.Value); got != wantBytes {
		t.Errorf("network.bytes sum %d, want %d", got, wantBytes)
	}
	if got := len(res.Aggregations.Exporters.Buckets); got != exporters {
		t.Errorf("%d exporters in Elasticsearch, want %d", got, exporters)
	}
	for _, b := range res.Aggregations.Exporters.Buckets {
		if b.DocCount != messages*perMessage {
			t.Errorf("exporter %s: %d documents, want %d", b.Key, b.DocCount, messages*perMessage)
		}
	}
}

// processHandle is a spanflow child process whose log is watched for a line.
// startWatched starts cmd, copies its stderr into logs (each line after
// "what: "), and waits up to 60 s for it to log wait; it is interrupted at
// the test's end.
func startWatched(t *testing.T, cmd *exec.Cmd, logs *testutil.SyncBuffer, what, wait string) *processHandle {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &processHandle{cmd: cmd, ready: make(chan struct{})}
	t.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	go p.watch(io.TeeReader(stderr, prefixWriter{logs, what + ": "}), wait)
	select {
	case <-p.ready:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not log %q within 60s", what, wait)
	}
	return p
}

type processHandle struct {
	cmd   *exec.Cmd
	ready chan struct{}
}

func (p *processHandle) watch(r io.Reader, want string) {
	buf := make([]byte, 64<<10)
	var line []byte
	signalled := false
	for {
		n, err := r.Read(buf)
		line = append(line, buf[:n]...)
		if !signalled && strings.Contains(string(line), want) {
			close(p.ready)
			signalled = true
			line = nil
		}
		if len(line) > 1<<20 {
			line = line[len(line)-1024:]
		}
		if err != nil {
			return
		}
	}
}

type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if l != "" {
			io.WriteString(p.w, p.prefix+l)
		}
	}
	return len(b), nil
}

func esPost(t *testing.T, url, path, body string) []byte {
	t.Helper()
	res, err := http.Post(url+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 300 && res.StatusCode != http.StatusNotFound {
		t.Fatalf("POST %s: %s: %s", path, res.Status, b)
	}
	return b
}

func countFlows(t *testing.T, url, cidr string) int {
	t.Helper()
	esPost(t, url, "/spanflow-flows*/_refresh", "")
	var res struct{ Count int }
	b := esPost(t, url, "/spanflow-flows*/_count", fmt.Sprintf(`{"query":{"term":{"observer.ip":%q}}}`, cidr))
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return res.Count
}
