package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spanflow/spanflow/internal/esconn"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestCollectorToElasticsearch runs `collector run --pcap` with
// --output elasticsearch on a NetFlow v5 capture and compares what the
// cluster holds — documents, and bytes/packets per source address — with
// tshark's decode of the same capture.
func TestCollectorToElasticsearch(t *testing.T) {
	url := testutil.Elasticsearch(t)
	tshark := testutil.Command(t, "tshark")
	pcap := filepath.Join(testutil.SharedTestdata(t), "flows", "graylog", "netgraph-netflow5.pcap")

	// Ground truth: tshark's cflow dissector, one line per datagram with
	// the records' fields comma-separated.
	out, err := exec.Command(tshark, "-r", pcap, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
		"-e", "cflow.srcaddr", "-e", "cflow.octets", "-e", "cflow.packets").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	wantBytes, wantPkts, wantFlows := map[string]uint64{}, map[string]uint64{}, 0
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

	client, err := esconn.New(esconn.Configuration{URLs: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path, body string) []byte {
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
	// The capture's flows land in the daily indices of its days: find them
	// from the NDJSON output (the same documents), and start them empty.
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

// TestCollectorRefusesWithoutTemplate: with the Elasticsearch output and no
// cluster, the collector refuses to start with one line saying why.
func TestCollectorRefusesWithoutTemplate(t *testing.T) {
	pcap := filepath.Join(testutil.SharedTestdata(t), "flows", "graylog", "netgraph-netflow5.pcap")
	_, err := run(t, "collector", "run", "--pcap", pcap, "--metrics-listen", "", "--es-url", "http://127.0.0.1:1",
		"--es-spool-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "index template") || strings.Contains(err.Error(), "\n") {
		t.Errorf("collector without a cluster: %v; want one line about the index template", err)
	}
}
