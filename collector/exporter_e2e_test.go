package collector_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/ring"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestExporterRoundTrip runs `spanflow exporter run --pcap` on a mirrored
// capture, sending IPFIX to the collector: the documents add up to the
// packets and IP bytes tshark counts in the capture. The exact per-flow
// comparison, TCP performance fields included, is TestExporterGroundTruth.
func TestExporterRoundTrip(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	goBin := testutil.Command(t, "go")
	capture := filepath.Join(testutil.SharedTestdata(t), "mirror", "ipfixprobe", "http.pcap")
	bin := filepath.Join(t.TempDir(), "spanflow")
	build := exec.Command(goBin, "build", "-o", bin, "./cmd/spanflow")
	build.Dir = testutil.ModuleRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build spanflow: %v\n%s", err, out)
	}
	out, err := exec.Command(tshark, "-r", capture, "-T", "fields", "-e", "ip.len").Output()
	if err != nil {
		t.Fatal(err)
	}
	var want truth
	for _, l := range strings.Fields(string(out)) {
		n, _ := strconv.ParseUint(strings.Split(l, ",")[0], 10, 64)
		want.packets++
		want.bytes += n
	}
	c := startCollector(t)
	c.srcPrefix = "*"
	exp := exec.Command(bin, "exporter", "run", "--pcap", capture, "--collector", c.addr)
	if out, err := exp.CombinedOutput(); err != nil {
		t.Fatalf("exporter: %v\n%s", err, out)
	}
	pkts, byts, docs, kinds := c.waitFor(t, want, 10*time.Second)
	t.Logf("%d documents %v, %d packets, %d bytes; tshark: %d packets, %d IP bytes", docs, kinds, pkts, byts, want.packets, want.bytes)
	if pkts != want.packets || byts != want.bytes || kinds["ipfix"] != docs {
		t.Errorf("documents add up to %d packets and %d bytes, tshark counts %d and %d", pkts, byts, want.packets, want.bytes)
	}
}

// TestFlowDocumentsLinkToPackets: `exporter run --packet-ring DIR
// --probe-name --packet-ring-url` sends its identity in IPFIX; every flow
// document the collector makes names the probe and carries the URL of its
// packets at the probe, and fetching each URL from the ring's server (with
// its token) gives exactly the frames tshark finds in the capture for that
// 5-tuple (both directions) and time window.
func TestFlowDocumentsLinkToPackets(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	goBin := testutil.Command(t, "go")
	capture := filepath.Join(testutil.SharedTestdata(t), "mirror", "ipfixprobe", "http.pcap")
	bin := filepath.Join(t.TempDir(), "spanflow")
	build := exec.Command(goBin, "build", "-o", bin, "./cmd/spanflow")
	build.Dir = testutil.ModuleRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build spanflow: %v\n%s", err, out)
	}
	c := startCollector(t)
	c.srcPrefix = "*"
	dir := filepath.Join(t.TempDir(), "ring")
	ringAddr := testutil.FreeAddr(t, "tcp")
	exp := exec.Command(bin, "exporter", "run", "--pcap", capture, "--collector", c.addr, "--packet-ring", dir,
		"--packet-ring-size", "64MiB", "--probe-name", "probe-a", "--packet-ring-url", "http://"+ringAddr)
	if out, err := exp.CombinedOutput(); err != nil {
		t.Fatalf("exporter: %v\n%s", err, out)
	}
	srv, err := ring.NewServer(dir, ring.ServerConfiguration{Listen: ringAddr, Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()

	type doc struct {
		Event struct {
			Action     string
			Start, End time.Time
		}
		Source, Destination struct {
			IP   string
			Port uint16
		}
		Network struct {
			Transport   string
			Packets     uint64
			CommunityID string `json:"community_id"`
		}
		Netflow struct {
			Probe string `json:"observation_domain_name"`
			URL   string `json:"spanflow_packets_url"`
		}
	}
	var docs []doc
	for prev, deadline := -1, time.Now().Add(10*time.Second); time.Now().Before(deadline); { // until two reads agree
		time.Sleep(500 * time.Millisecond)
		docs = docs[:0]
		for _, line := range strings.Split(strings.TrimSpace(c.out.String()), "\n") {
			var d doc
			if json.Unmarshal([]byte(line), &d) == nil && d.Event.Action == "network_flow" {
				docs = append(docs, d)
			}
		}
		if len(docs) > 0 && len(docs) == prev {
			break
		}
		prev = len(docs)
	}
	if len(docs) == 0 {
		t.Fatal("no flow document")
	}
	checked := 0
	for i, d := range docs {
		if d.Netflow.Probe != "probe-a" || !strings.HasPrefix(d.Netflow.URL, "http://"+ringAddr+"/packets?") {
			t.Fatalf("document %d names probe %q, packets %q", i, d.Netflow.Probe, d.Netflow.URL)
		}
		u, err := url.Parse(d.Netflow.URL)
		if err != nil || u.Query().Get("flow") != d.Network.CommunityID {
			t.Fatalf("document %d: packets URL %q (%v), community id %s", i, d.Netflow.URL, err, d.Network.CommunityID)
		}
		if d.Network.Transport != "tcp" && d.Network.Transport != "udp" || checked >= 40 {
			continue
		}
		checked++
		req, _ := http.NewRequest("GET", d.Netflow.URL, nil)
		req.Header.Set("Authorization", "Bearer s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s %s", d.Netflow.URL, resp.Status, body)
		}
		file := filepath.Join(t.TempDir(), fmt.Sprintf("flow%d.pcap", i))
		os.WriteFile(file, body, 0o644)
		from, _ := strconv.ParseInt(u.Query().Get("from"), 10, 64)
		to, _ := strconv.ParseInt(u.Query().Get("to"), 10, 64)
		p := d.Network.Transport
		filter := fmt.Sprintf("ip.addr==%s and ip.addr==%s and %s.port==%d and %s.port==%d and frame.time_epoch >= %d.%09d and frame.time_epoch < %d.%09d",
			d.Source.IP, d.Destination.IP, p, d.Source.Port, p, d.Destination.Port, from/1e9, from%1e9, to/1e9, to%1e9)
		want := frames(t, tshark, capture, filter)
		if got := frames(t, tshark, file, ""); got != want || want < int(d.Network.Packets) {
			t.Errorf("%s: %d frames from the probe, tshark finds %d in the capture (%s), the document counts %d one way",
				d.Netflow.URL, got, want, filter, d.Network.Packets)
		}
	}
	t.Logf("%d documents name probe-a and link to their packets; %d links fetched and checked against tshark", len(docs), checked)
	if checked == 0 {
		t.Fatal("no TCP or UDP flow to fetch")
	}
}

// frames is how many frames of a capture pass a display filter.
func frames(t *testing.T, tshark, path, filter string) int {
	t.Helper()
	args := []string{"-r", path, "-T", "fields", "-e", "frame.number"}
	if filter != "" {
		args = append(args, "-Y", filter)
	}
	out, err := exec.Command(tshark, args...).Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v", path, err)
	}
	return len(strings.Fields(string(out)))
}
