package meter

import (
	"fmt"
	"math"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestTCPPerfAgainstTshark: on real captures, the retransmissions the meter
// counts add up to the segments tshark's TCP analysis flags as
// retransmissions or out-of-order, and each connection's client-side plus server-side
// handshake RTT is tshark's initial RTT (SYN to the client's ACK).
func TestTCPPerfAgainstTshark(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	root := filepath.Join(testutil.SharedTestdata(t), "mirror")
	for _, tc := range []struct {
		file string
		rtt  bool // compare handshake RTTs
	}{
		{"zeek/tcp-retransmit-fast009.pcap", true},
		{"zeek/tcp-retransmit-timeout.pcapng", true},
		{"zeek/tcp-fin_retransmission.pcap", true},
		{"zeek/tcp-ssh-dups.pcap", true},
		{"zeek/tcp-option-sack.pcap", true},
		{"zeek/nflog-http.pcap", false}, // NFLOG timestamps: every handshake packet at the same time
		{"zeek/pppoe-over-qinq.pcap", true},
		{"zeek/communityid-tcp.pcap", true},
		{"tcpdump/dns_tcp.pcap", true},
		{"ipfixprobe/http.pcap", true},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join(root, tc.file)
			// Long timeouts: tshark's analysis spans the whole capture.
			flows, _, _ := meterFile(t, path, Configuration{ActiveTimeout: 24 * time.Hour, IdleTimeout: 24 * time.Hour, MaxFlows: 100000})
			var retrans uint32
			for _, f := range flows {
				retrans += f.Retrans
			}
			// A segment below the highest sequence seen is a retransmission to
			// spanflow; tshark calls it out-of-order when it comes soon after.
			out, err := exec.Command(tshark, "-r", path, "-Y", "tcp.analysis.retransmission or tcp.analysis.out_of_order", "-T", "fields", "-e", "frame.number").Output()
			if err != nil {
				t.Fatal(err)
			}
			if want := uint32(strings.Count(string(out), "\n")); retrans != want {
				t.Errorf("%d retransmissions, tshark flags %d", retrans, want)
			}
			if !tc.rtt {
				return
			}
			checkRTTs(t, tshark, path, flows)
		})
	}
}

// checkRTTs compares each connection's handshake RTTs in flows with
// tshark's initial RTT of its stream, and returns how many streams tshark
// gave one.
func checkRTTs(t *testing.T, tshark, path string, flows []synth.Flow) int {
	t.Helper()
	out, err := exec.Command(tshark, "-r", path, "-Y", "tcp.analysis.initial_rtt", "-T", "fields", "-E", "separator=|",
		"-e", "tcp.stream", "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.dstport",
		"-e", "tcp.analysis.initial_rtt").Output()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "|")
		if len(f) < 8 || seen[f[0]] {
			continue
		}
		seen[f[0]] = true
		if err := checkRTT(flows, f); err != nil {
			t.Error(err)
		}
	}
	return len(seen)
}

// checkRTT finds the connection of a tshark line (stream, addresses, ports,
// initial RTT) among the flows and compares its RTTs.
func checkRTT(flows []synth.Flow, f []string) error {
	last := func(s string) string { // inner header when tshark shows several
		if i := strings.LastIndex(s, ","); i >= 0 {
			return s[i+1:]
		}
		return s
	}
	src, err := netip.ParseAddr(last(f[1] + f[2]))
	if err != nil {
		return fmt.Errorf("tshark address %q", f[1]+f[2])
	}
	dst, _ := netip.ParseAddr(last(f[4] + f[5]))
	sport, _ := strconv.Atoi(last(f[3]))
	dport, _ := strconv.Atoi(last(f[6]))
	rtt, err := strconv.ParseFloat(f[7], 64)
	if err != nil {
		return fmt.Errorf("tshark initial RTT %q", f[7])
	}
	want := int64(math.Round(rtt * 1e6))
	for _, fl := range flows {
		same := fl.Src == src && fl.Dst == dst && int(fl.SrcPort) == sport && int(fl.DstPort) == dport
		reverse := fl.Src == dst && fl.Dst == src && int(fl.SrcPort) == dport && int(fl.DstPort) == sport
		if (same || reverse) && fl.Proto == 6 && (fl.RTTClientUs != 0 || fl.RTTServerUs != 0) {
			if got := fl.RTTClientUs + fl.RTTServerUs; got != want {
				return fmt.Errorf("stream %s %s:%d > %s:%d: RTT client %d µs + server %d µs = %d, tshark's initial RTT %d µs",
					f[0], src, sport, dst, dport, fl.RTTClientUs, fl.RTTServerUs, got, want)
			}
			return nil
		}
	}
	return fmt.Errorf("stream %s %s:%d > %s:%d: no flow with a handshake RTT (tshark: %d µs)", f[0], src, sport, dst, dport, want)
}
