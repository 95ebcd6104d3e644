package collector_test

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
