package exporter

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spanflow/spanflow/exporter/internal/verify"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestReplayToNfcapd: a capture of 100,000 packets (about 32,000 flows,
// 2,000 IPFIX messages) exported with the default settings to a Debian
// nfcapd left at its defaults (the kernel's default socket buffer):
// nfcapd stores every flow record sent, and nfdump's totals are the
// capture's, as tshark counts them (IP packets, IP bytes), less only the
// frames the exporter could not decode. Sent in one burst, nfcapd stored
// about half of the records.
func TestReplayToNfcapd(t *testing.T) {
	nfcapd := testutil.Command(t, "nfcapd")
	nfdump := testutil.Command(t, "nfdump")
	tshark := testutil.Command(t, "tshark")
	path := filepath.Join(t.TempDir(), "plain.pcap")
	if err := synth.WritePlainFile(path, base, 100000); err != nil {
		t.Fatal(err)
	}
	// The ground truth: every IP packet of the capture and its IP length.
	out, err := exec.Command(tshark, "-r", path, "-T", "fields", "-E", "occurrence=f", "-e", "ip.len", "-e", "ipv6.plen").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	var wantPackets, wantBytes uint64
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		v4, v6, _ := strings.Cut(line, "\t")
		if n, err := strconv.ParseUint(v4, 10, 64); err == nil {
			wantPackets, wantBytes = wantPackets+1, wantBytes+n
		} else if n, err := strconv.ParseUint(v6, 10, 64); err == nil {
			wantPackets, wantBytes = wantPackets+1, wantBytes+n+40
		}
	}
	n, err := verify.StartNfcapd(nfcapd, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfiguration()
	cfg.Pcap = path
	cfg.Collectors = []string{"127.0.0.1:" + strconv.Itoa(n.Port)}
	sum := sendFile(t, path, cfg)
	log := n.Stop()
	got, err := verify.NfdumpFlows(nfdump, n.Dir)
	if err != nil {
		t.Fatalf("%v\nnfcapd: %s", err, log)
	}
	var packets, bytes uint64
	for _, f := range got {
		packets, bytes = packets+f.Packets, bytes+f.Bytes
	}
	if uint64(len(got)) != sum.Flows || sum.Flows < 30000 {
		t.Errorf("nfcapd stored %d flow records of the %d sent\nnfcapd: %s", len(got), sum.Flows, log)
	}
	lost := sum.NotDecodable()
	if packets+lost != wantPackets || bytes > wantBytes || wantBytes-bytes > lost*1518 {
		t.Errorf("nfdump: %d packets, %d bytes; the capture: %d IP packets, %d bytes (%d frames not decodable)", packets, bytes, wantPackets, wantBytes, lost)
	}
}
