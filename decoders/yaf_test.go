package decoders_test

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/spanflow/spanflow/internal/testutil"
)

// TestYAFTCPFlags checks that a YAF flow's TCP flags are its
// initialTCPFlags | unionTCPFlags (CERT PEN 6871, ids 14 and 15; YAF sends
// no tcpControlBits), against the values tshark shows for those elements in
// each record of the logstash-codec-netflow YAF capture.
func TestYAFTCPFlags(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	path := filepath.Join(testutil.SharedTestdata(t), "flows", "logstash-derived", "ipfix-yaf-applabel.pcap")
	out, err := exec.Command(tshark, "-r", path, "-d", "udp.port==4739,cflow", "-V").Output()
	if err != nil {
		t.Fatal(err)
	}
	// A record's own elements are indented 12 spaces under "        Flow N";
	// those of its subTemplateMultiList are deeper.
	reFlag := regexp.MustCompile(`^ {12}Enterprise Private entry: \(CERT Coordination Center\) Type (14|15): Value \(hex bytes\): ([0-9a-f]{2})$`)
	rePort := regexp.MustCompile(`^ {12}(Src|Dst)Port: (\d+)$`)
	type key struct{ sp, dp string }
	want := map[key]uint16{}
	var k key
	var flags uint16
	var has bool
	flush := func() {
		if has {
			want[k] = flags
		}
		k, flags, has = key{}, 0, false
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "        Flow ") || !strings.HasPrefix(line, "        ") {
			flush()
			continue
		}
		if m := rePort.FindStringSubmatch(line); m != nil {
			if m[1] == "Src" {
				k.sp = m[2]
			} else {
				k.dp = m[2]
			}
		}
		if m := reFlag.FindStringSubmatch(line); m != nil {
			x, _ := strconv.ParseUint(m[2], 16, 8)
			flags |= uint16(x)
			has = true
		}
	}
	flush()
	if len(want) == 0 {
		t.Fatal("tshark shows no record with YAF TCP flags: not the capture this test expects")
	}
	got := decodeCapture(t, path)
	n := 0
	for i := range got.records {
		r := &got.records[i]
		w, ok := want[key{strconv.Itoa(int(r.SrcPort)), strconv.Itoa(int(r.DstPort))}]
		if !ok || r.Proto != 6 {
			continue
		}
		n++
		if r.TCPFlags != w || r.NoTCPFlags {
			t.Errorf("%v:%d > %v:%d: TCP flags %#x (none: %v), tshark's initial|union %#x", r.SrcAddr, r.SrcPort, r.DstAddr, r.DstPort, r.TCPFlags, r.NoTCPFlags, w)
		}
		if v, _ := get(document(t, r), "netflow.tcp_control_bits").(float64); v != float64(w) {
			t.Errorf("%v:%d > %v:%d: document's netflow.tcp_control_bits %v, want %d", r.SrcAddr, r.SrcPort, r.DstAddr, r.DstPort, v, w)
		}
	}
	if n == 0 {
		t.Fatal("no TCP record matched tshark's")
	}
}
