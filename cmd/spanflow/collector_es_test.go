package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/spanflow/spanflow/internal/esconn"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestCollectorToElasticsearch runs `collector run --pcap` with
// --output elasticsearch on a NetFlow v5 capture and compares what the
// cluster holds — documents, and bytes/packets per source address — with
// tshark's decode of the same capture.
func TestCollectorToElasticsearch(t *testing.T) {
	url := testutil.Elasticsearch(t)
	pcap := filepath.Join(testutil.SharedTestdata(t), "flows", "graylog", "netgraph-netflow5.pcap")

	wantBytes, wantPkts, wantFlows := tsharkV5(t, pcap)
	client, indices := flowIndices(t, url, pcap)
	do := esDo(t, client)
	target := strings.Join(indices, ",")

	if out, err := run(t, "collector", "run", "--pcap", pcap, "--metrics-listen", "", "--output", "elasticsearch",
		"--es-url", url, "--es-spool-dir", t.TempDir()); err != nil {
		t.Fatalf("collector to Elasticsearch: %v\n%s", err, out)
	}
	do(http.MethodPost, "/"+target+"/_refresh", "")
	var agg struct {
		Hits struct {
			Total struct {
				Value int `json:"value"`
			} `json:"total"`
		} `json:"hits"`
		Aggregations struct {
			Src struct {
				Buckets []struct {
					Key     string                  `json:"key"`
					Bytes   struct{ Value float64 } `json:"bytes"`
					Packets struct{ Value float64 } `json:"packets"`
				} `json:"buckets"`
			} `json:"src"`
		} `json:"aggregations"`
	}
	body := do(http.MethodPost, "/"+target+"/_search", `{"size":0,"track_total_hits":true,"query":{"term":{"event.kind":"event"}},
		"aggs":{"src":{"terms":{"field":"source.ip","size":10000},
		"aggs":{"bytes":{"sum":{"field":"network.bytes"}},"packets":{"sum":{"field":"network.packets"}}}}}}`)
	if err := json.Unmarshal(body, &agg); err != nil {
		t.Fatalf("search: %v: %s", err, body)
	}
	if agg.Hits.Total.Value != wantFlows {
		t.Errorf("cluster holds %d flows, tshark decodes %d", agg.Hits.Total.Value, wantFlows)
	}
	if len(agg.Aggregations.Src.Buckets) != len(wantBytes) {
		t.Errorf("%d source addresses in the cluster, tshark has %d", len(agg.Aggregations.Src.Buckets), len(wantBytes))
	}
	for _, b := range agg.Aggregations.Src.Buckets {
		if uint64(b.Bytes.Value) != wantBytes[b.Key] || uint64(b.Packets.Value) != wantPkts[b.Key] {
			t.Errorf("source %s: %.0f bytes, %.0f packets; tshark: %d, %d", b.Key, b.Bytes.Value, b.Packets.Value, wantBytes[b.Key], wantPkts[b.Key])
		}
	}
}

// tsharkV5 is the ground truth of a NetFlow v5 capture: tshark's cflow
// dissector, bytes and packets per source address and the record count.
func tsharkV5(t *testing.T, pcap string) (wantBytes, wantPkts map[string]uint64, wantFlows int) {
	t.Helper()
	tshark := testutil.Command(t, "tshark")
	out, err := exec.Command(tshark, "-r", pcap, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
		"-e", "cflow.srcaddr", "-e", "cflow.octets", "-e", "cflow.packets").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	wantBytes, wantPkts = map[string]uint64{}, map[string]uint64{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 3 || f[0] == "" {
			continue
		}
		srcs, octs, pkts := strings.Split(f[0], ","), strings.Split(f[1], ","), strings.Split(f[2], ",")
		for i := range srcs {
			o, _ := strconv.ParseUint(octs[i], 10, 64)
			p, _ := strconv.ParseUint(pkts[i], 10, 64)
			wantBytes[srcs[i]] += o
			wantPkts[srcs[i]] += p
			wantFlows++
		}
	}
	t.Logf("tshark: %d NetFlow v5 records from %d sources", wantFlows, len(wantBytes))
	if wantFlows == 0 {
		t.Fatal("tshark decoded no NetFlow v5 record")
	}
	return wantBytes, wantPkts, wantFlows
}

// esDo returns a function sending one request to the cluster and
// returning the answer's body.
func esDo(t *testing.T, client *elasticsearch.Client) func(method, path, body string) []byte {
	return func(method, path, body string) []byte {
		req, _ := http.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Perform(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return b
	}
}

// flowIndices returns a client of the cluster at url and the daily indices
// the capture's flows land in (found from the NDJSON output, the same
// documents), deleted now and when the test ends.
func flowIndices(t *testing.T, url, pcap string) (*elasticsearch.Client, []string) {
	t.Helper()
	client, err := esconn.New(esconn.Configuration{URLs: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	do := esDo(t, client)
	ndjson, err := run(t, "collector", "run", "--pcap", pcap, "--metrics-listen", "")
	if err != nil {
		t.Fatalf("collector to stdout: %v", err)
	}
	days := map[string]bool{}
	for _, line := range strings.Split(ndjson, "\n") {
		var doc struct {
			TS    string `json:"@timestamp"`
			Event struct {
				Kind string `json:"kind"`
			} `json:"event"`
		}
		// Flow documents only: statistics documents carry today's date, and
		// today's index is not this test's to delete.
		if json.Unmarshal([]byte(line), &doc) == nil && doc.Event.Kind == "event" && len(doc.TS) >= 10 {
			days["spanflow-flows-"+strings.ReplaceAll(doc.TS[:10], "-", ".")] = true
		}
	}
	var indices []string
	for d := range days {
		indices = append(indices, d)
		do(http.MethodDelete, "/"+d, "")
	}
	t.Cleanup(func() {
		for _, d := range indices {
			do(http.MethodDelete, "/"+d, "")
		}
	})
	return client, indices
}

// TestCollectorStartsWithoutElasticsearch: `collector run` with the
// Elasticsearch output starts although the cluster does not answer (its URL
// is a closed port), says so, and spools the flows it receives; when the
// cluster comes up there (a proxy to it opens on that port) it installs
// the template and every flow arrives, with the template's mappings. At
// SIGINT the summary accounts for every document.
func TestCollectorStartsWithoutElasticsearch(t *testing.T) {
	url := testutil.Elasticsearch(t)
	pcap := filepath.Join(testutil.SharedTestdata(t), "flows", "graylog", "netgraph-netflow5.pcap")
	wantBytes, _, wantFlows := tsharkV5(t, pcap)
	client, indices := flowIndices(t, url, pcap)
	do := esDo(t, client)

	free := func(network string) string { return testutil.FreeAddr(t, network) }
	esAddr, netflow, metrics := free("tcp"), free("udp"), free("tcp")
	app := newApp()
	logs := &testutil.SyncBuffer{}
	app.Writer, app.ErrWriter = io.Discard, logs
	app.ExitErrHandler = nil
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- app.RunContext(ctx, []string{"spanflow", "collector", "run", "--netflow-listen", netflow, "--ipfix-listen", "",
			"--ipfix-tcp-listen", "", "--sflow-listen", "", "--metrics-listen", metrics, "--output", "elasticsearch",
			"--es-url", "http://" + esAddr, "--es-spool-dir", t.TempDir()})
	}()
	defer func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs)
		}
	}()
	waitFor := func(what string, within time.Duration, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(within); !ok(); time.Sleep(100 * time.Millisecond) {
			select {
			case err := <-done:
				t.Fatalf("collector ended while waiting for %s: %v", what, err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s after %s", what, within)
			}
		}
	}
	waitFor("warning that Elasticsearch does not answer", 30*time.Second, func() bool {
		return strings.Contains(logs.String(), "Elasticsearch does not answer; started anyway")
	})
	// The listeners start last: the metrics may answer before them.
	waitFor("listeners", 30*time.Second, func() bool { return strings.Contains(logs.String(), `msg=listening`) })
	spooled := func() float64 {
		res, err := http.Get("http://" + metrics + "/metrics")
		if err != nil {
			return -1
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		for l := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(l, `spanflow_elasticsearch_documents_total{result="spooled"} `); ok {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				return f
			}
		}
		return -1
	}
	waitFor("metrics", 30*time.Second, func() bool { return spooled() >= 0 })
	conn, err := net.Dial("udp", netflow)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, p := range testutil.ReadPcap(t, pcap) {
		pkt := gopacket.NewPacket(p.Data, layers.LayerTypeEthernet, gopacket.Default)
		if udp, ok := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
			if _, err := conn.Write(udp.Payload); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor("flows in the spool", 30*time.Second, func() bool { return spooled() >= float64(wantFlows) })

	// The cluster comes up on the URL's port.
	target, _ := neturl.Parse(url)
	l, err := net.Listen("tcp", esAddr)
	if err != nil {
		t.Fatalf("listen on %s: %v", esAddr, err)
	}
	proxy := &http.Server{Handler: httputil.NewSingleHostReverseProxy(target)}
	go proxy.Serve(l)
	defer proxy.Close()

	search := strings.Join(indices, ",") + "/_search"
	var agg struct {
		Hits struct {
			Total struct {
				Value int `json:"value"`
			} `json:"total"`
		} `json:"hits"`
		Aggregations struct {
			Src struct {
				Buckets []struct {
					Key   string                  `json:"key"`
					Bytes struct{ Value float64 } `json:"bytes"`
				} `json:"buckets"`
			} `json:"src"`
		} `json:"aggregations"`
	}
	waitFor("every flow in the cluster", 2*time.Minute, func() bool {
		do(http.MethodPost, "/"+strings.Join(indices, ",")+"/_refresh", "")
		body := do(http.MethodPost, "/"+search, `{"size":0,"track_total_hits":true,"query":{"term":{"event.kind":"event"}},
			"aggs":{"src":{"terms":{"field":"source.ip","size":10000},"aggs":{"bytes":{"sum":{"field":"network.bytes"}}}}}}`)
		return json.Unmarshal(body, &agg) == nil && agg.Hits.Total.Value >= wantFlows
	})
	if agg.Hits.Total.Value != wantFlows || len(agg.Aggregations.Src.Buckets) != len(wantBytes) {
		t.Errorf("cluster holds %d flows from %d sources; tshark: %d from %d", agg.Hits.Total.Value,
			len(agg.Aggregations.Src.Buckets), wantFlows, len(wantBytes))
	}
	for _, b := range agg.Aggregations.Src.Buckets {
		if uint64(b.Bytes.Value) != wantBytes[b.Key] {
			t.Errorf("source %s: %.0f bytes, tshark %d", b.Key, b.Bytes.Value, wantBytes[b.Key])
		}
	}
	mapping := string(do(http.MethodGet, "/"+indices[0]+"/_mapping/field/source.ip", ""))
	if !strings.Contains(mapping, `"type":"ip"`) {
		t.Errorf("%s maps source.ip as %s: want the template's ip", indices[0], mapping)
	}
	if !strings.Contains(logs.String(), "Elasticsearch answers: installed the index template") {
		t.Errorf("no log line saying the template was installed once the cluster answered")
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("collector run: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("collector did not stop within a minute of the interrupt")
	}
	m := regexp.MustCompile(`Elasticsearch output stopped: indexed (\d+), replayed (\d+) from the spool, 0 lost`).FindStringSubmatch(logs.String())
	if m == nil || strings.Contains(logs.String(), "kept in the spool") {
		t.Fatalf("stop summary: want \"indexed N, replayed M from the spool, 0 lost\" and nothing kept")
	}
	if replayed, _ := strconv.Atoi(m[2]); replayed < wantFlows {
		t.Errorf("stop summary %q: want at least the %d flows replayed from the spool", m[0], wantFlows)
	}
}

// TestCollectorSpoolDirNotWritable: a spool directory that cannot be
// created is refused at start with one line naming --es-spool-dir.
func TestCollectorSpoolDirNotWritable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := run(t, "collector", "run", "--netflow-listen", "127.0.0.1:0", "--ipfix-listen", "", "--ipfix-tcp-listen", "",
		"--sflow-listen", "", "--metrics-listen", "", "--output", "elasticsearch", "--es-url", "http://127.0.0.1:1",
		"--es-spool-dir", filepath.Join(file, "spool"))
	if err == nil || !strings.Contains(err.Error(), "--es-spool-dir") || strings.Contains(err.Error(), "\n") {
		t.Errorf("collector with an unwritable spool directory: %v; want one line naming --es-spool-dir", err)
	}
}
