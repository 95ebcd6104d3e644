package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/exporter/ring"
	"github.com/spanflow/spanflow/internal/testutil"
)

// tsharkCount is the number of frames of a capture that pass a display
// filter ("" for all), as tshark reads them.
func tsharkCount(t *testing.T, tshark, path, filter string) int {
	t.Helper()
	args := []string{"-r", path, "-T", "fields", "-e", "frame.len"}
	if filter != "" {
		args = append(args, "-Y", filter)
	}
	out, err := exec.Command(tshark, args...).Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v", path, err)
	}
	return len(strings.Fields(string(out)))
}

// TestPcapQueryAfterExporterRun: `exporter run --packet-ring DIR` keeps
// the capture's frames; `pcap query` gives back one flow (by 5-tuple and by
// Community ID), a filter's and a time window's frames as files that
// tshark reads, with the counts tshark's filters give on the input; `pcap
// list` shows the segment.
func TestPcapQueryAfterExporterRun(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	in := filepath.Join(testutil.SharedTestdata(t), "mirror", "ipfixprobe", "http.pcap")
	dir := filepath.Join(t.TempDir(), "ring")
	out := keepInRing(t, in, dir)
	all := tsharkCount(t, tshark, in, "")
	if !strings.Contains(out, "packet ring: "+strconv.Itoa(all)+" frames kept") {
		t.Errorf("summary %q: want %d frames kept", out, all)
	}
	out, err := run(t, "pcap", "list", "--ring", dir)
	if err != nil || !strings.Contains(out, "1 segment,") {
		t.Errorf("pcap list: %v\n%s", err, out)
	}
	cases := []struct {
		name    string
		args    []string
		display string
	}{
		{"5-tuple", []string{"--flow", "tcp 54.175.219.8:80 192.168.0.30:44328"}, "ip.addr==192.168.0.30 and ip.addr==54.175.219.8 and tcp.port==44328 and tcp.port==80"},
		{"filter", []string{"--filter", "tcp port 80 and host 54.175.222.246", "--pcapng"}, "tcp.port==80 and ip.addr==54.175.222.246"},
		{"everything", []string{"--pcapng"}, ""},
	}
	for _, c := range cases {
		file := filepath.Join(t.TempDir(), c.name+".pcap")
		out, err := run(t, append([]string{"pcap", "query", "--ring", dir, "-o", file}, c.args...)...)
		if err != nil {
			t.Fatalf("%s: pcap query: %v\n%s", c.name, err, out)
		}
		want := tsharkCount(t, tshark, in, c.display)
		if got := tsharkCount(t, tshark, file, ""); got != want || want == 0 {
			t.Errorf("%s: tshark reads %d frames from the query's output, %d from the input's filter %q (%s)", c.name, got, want, c.display, out)
		}
	}
	// The flow by its Community ID, as a flow document carries it, and a
	// time window of the first second.
	ts, err := exec.Command(tshark, "-r", in, "-T", "fields", "-e", "frame.time_epoch", "-c", "1").Output()
	if err != nil {
		t.Fatal(err)
	}
	first := strings.TrimSpace(string(ts))
	sec, _, _ := strings.Cut(first, ".")
	end, _ := strconv.ParseInt(sec, 10, 64)
	file := filepath.Join(t.TempDir(), "window.pcap")
	if out, err := run(t, "pcap", "query", "--ring", dir, "--from", first, "--to", strconv.FormatInt(end+1, 10), "-o", file); err != nil {
		t.Fatalf("window: %v\n%s", err, out)
	}
	want := tsharkCount(t, tshark, in, "frame.time_epoch < "+strconv.FormatInt(end+1, 10))
	if got := tsharkCount(t, tshark, file, ""); got != want || want == 0 {
		t.Errorf("window: %d frames, tshark %d", got, want)
	}
	_, id, _ := parseFlowForTest("tcp 54.175.219.8:80 192.168.0.30:44328")
	file = filepath.Join(t.TempDir(), "cid.pcap")
	if out, err := run(t, "pcap", "query", "--ring", dir, "--flow", id, "-o", file); err != nil {
		t.Fatalf("community id: %v\n%s", err, out)
	}
	if got, want := tsharkCount(t, tshark, file, ""), tsharkCount(t, tshark, in, cases[0].display); got != want {
		t.Errorf("community id %s: %d frames, want %d", id, got, want)
	}
	// The same query through the exporter's server, from two "probes"
	// (the same one twice): their packets merged by time.
	srv := serveRing(t, dir)
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600)
	url := "http://" + srv.Addr()
	file = filepath.Join(t.TempDir(), "remote.pcap")
	if out, err := run(t, "pcap", "query", "--exporter", url, "--exporter", url, "--token-file", tokenFile, "--flow", id, "-o", file); err != nil {
		t.Fatalf("remote: %v\n%s", err, out)
	}
	if got, want := tsharkCount(t, tshark, file, ""), 2*tsharkCount(t, tshark, in, cases[0].display); got != want {
		t.Errorf("remote, two exporters: %d frames, want %d", got, want)
	}
	os.WriteFile(tokenFile, []byte("guess\n"), 0o600)
	if out, err := run(t, "pcap", "query", "--exporter", url, "--token-file", tokenFile, "--flow", id, "-o", file); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("remote with a wrong token: %v\n%s", err, out)
	}
	// A pin shows in the list, and goes.
	if out, err := run(t, "pcap", "pin", "--ring", dir, "--from", first, "--to", strconv.FormatInt(end+1, 10), "--name", "incident-42"); err != nil {
		t.Fatalf("pin: %v\n%s", err, out)
	}
	if out, _ := run(t, "pcap", "list", "--ring", dir); !strings.Contains(out, "pin incident-42:") || !strings.Contains(out, " yes ") {
		t.Errorf("pcap list after pin:\n%s", out)
	}
	if out, err := run(t, "pcap", "unpin", "--ring", dir, "--name", "incident-42"); err != nil {
		t.Fatalf("unpin: %v\n%s", err, out)
	}
	if out, _ := run(t, "pcap", "list", "--ring", dir); strings.Contains(out, "incident-42") {
		t.Errorf("pcap list after unpin:\n%s", out)
	}
	// Wrong input: one line, no output.
	for _, args := range [][]string{{"--flow", "1:nope"}, {"--filter", "port banana"}, {"--from", "yesterday"}, {"--from", "2026-12-05T02:00:00Z", "--to", "2026-12-05T01:00:00Z"}} {
		if out, err := run(t, append([]string{"pcap", "query", "--ring", dir, "-o", filepath.Join(t.TempDir(), "x")}, args...)...); err == nil || strings.Count(err.Error(), "\n") > 0 {
			t.Errorf("%q: err %v, want one line\n%s", args, err, out)
		}
	}
}

func parseFlowForTest(s string) (uint64, string, error) { return ring.ParseFlow(s) }

// TestPcapHeadersOnly: with --packet-ring-headers-only, every frame of the
// capture is in the ring with its length on the wire, cut where its
// innermost transport payload starts (exporter/decode checks that place
// against tshark); frames without an IP packet keep no bytes.
func TestPcapHeadersOnly(t *testing.T) {
	in := filepath.Join(testutil.SharedTestdata(t), "mirror", "ipfixprobe", "mixed.pcap")
	dir := filepath.Join(t.TempDir(), "ring")
	keepInRing(t, in, dir, "--packet-ring-headers-only")
	got, _, err := ring.Search(dir, ring.Query{}, func(s string) { t.Error(s) })
	if err != nil {
		t.Fatal(err)
	}
	sent := testutil.ReadPcap(t, in)
	if len(got) != len(sent) {
		t.Fatalf("%d frames in the ring, %d in the capture", len(got), len(sent))
	}
	d := decode.New()
	var p decode.Packet
	cut := 0
	for i, s := range sent {
		want := 0
		if d.Decode(s.LinkType, s.Data, s.Length, &p) == decode.ReasonOK {
			want = min(len(s.Data), int(p.HeaderLen))
		}
		if g := got[i]; g.Length != s.Length || !bytes.Equal(g.Data, s.Data[:want]) {
			t.Errorf("frame %d: %d of %d bytes kept, want the first %d", i+1, len(g.Data), g.Length, want)
		}
		if want < len(s.Data) {
			cut++
		}
	}
	if cut < len(sent)/2 {
		t.Errorf("only %d of %d frames cut", cut, len(sent))
	}
}

// TestPacketRingFilter: --packet-ring-filter keeps the frames tshark's
// equivalent display filter selects, while metering still counts them all.
func TestPacketRingFilter(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	in := filepath.Join(testutil.SharedTestdata(t), "mirror", "ipfixprobe", "mixed.pcap")
	dir := filepath.Join(t.TempDir(), "ring")
	out := keepInRing(t, in, dir, "--packet-ring-filter", "ip6 or arp")
	all, want := tsharkCount(t, tshark, in, ""), tsharkCount(t, tshark, in, "ipv6 or arp")
	if !strings.Contains(out, strconv.Itoa(all)+" packets,") || !strings.Contains(out, "packet ring: "+strconv.Itoa(want)+" frames kept") || want == 0 || want == all {
		t.Errorf("summary %q: want %d packets metered and %d frames kept", out, all, want)
	}
}

// TestPcapQueryTwoLinkTypes: a ring fed with Ethernet and raw IP frames
// (a pcapng merged by mergecap) answers --pcapng with every frame, as
// tshark counts them in the input, and refuses a plain pcap without
// leaving an empty file behind.
func TestPcapQueryTwoLinkTypes(t *testing.T) {
	tshark, mergecap := testutil.Command(t, "tshark"), testutil.Command(t, "mergecap")
	data := testutil.SharedTestdata(t)
	tmp := t.TempDir()
	in := filepath.Join(tmp, "merged.pcapng")
	if out, err := exec.Command(mergecap, "-F", "pcapng", "-w", in, filepath.Join(data, "mirror/ipfixprobe/http.pcap"), filepath.Join(data, "mirror/tcpdump/LINKTYPE_RAW_ipv6.pcap")).CombinedOutput(); err != nil {
		t.Fatalf("mergecap: %v\n%s", err, out)
	}
	dir := filepath.Join(tmp, "ring")
	keepInRing(t, in, dir)
	plain := filepath.Join(tmp, "all.pcap")
	if out, err := run(t, "pcap", "query", "--ring", dir, "-o", plain); err == nil || !strings.Contains(err.Error(), "--pcapng") {
		t.Errorf("pcap of two link types: %v\n%s", err, out)
	}
	if _, err := os.Stat(plain); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused query left %s: %v", plain, err)
	}
	ng := filepath.Join(tmp, "all.pcapng")
	if out, err := run(t, "pcap", "query", "--ring", dir, "--pcapng", "-o", ng); err != nil {
		t.Fatalf("pcap query --pcapng: %v\n%s", err, out)
	}
	if got, want := tsharkCount(t, tshark, ng, ""), tsharkCount(t, tshark, in, ""); got != want {
		t.Errorf("--pcapng: tshark reads %d frames, %d in the input", got, want)
	}
}

// keepInRing runs `exporter run --pcap in` with a packet ring in dir (64
// MiB, and the extra flags) towards a UDP socket of its own, and returns
// its output.
func keepInRing(t *testing.T, in, dir string, extra ...string) string {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	out, err := run(t, append([]string{"exporter", "run", "--pcap", in, "--collector", conn.LocalAddr().String(),
		"--packet-ring", dir, "--packet-ring-size", "64MiB"}, extra...)...)
	if err != nil {
		t.Fatalf("exporter run: %v\n%s", err, out)
	}
	return out
}

// serveRing serves the packet ring in dir on a loopback port with the
// token s3cret, until the test's end.
func serveRing(t *testing.T, dir string) *ring.Server {
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
