package exporter

import (
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/internal/verify"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/testutil"
)

// writeHighPorts writes a connection from a client on port 50000 to a
// server on port 40000 (handshake, data both ways, close) and one whose
// handshake came before the capture (port 45000 to 40001, data only).
func writeHighPorts(t *testing.T) string {
	t.Helper()
	cli, srv := netip.MustParseAddr("10.1.9.9"), netip.MustParseAddr("10.1.9.5")
	var pkts []synth.Packet
	at := base.UnixNano()
	send := func(fromCli bool, sport, dport uint16, seq, ack uint32, flags uint8, n int) {
		s, d, sm, dm := cli, srv, synth.MAC(9), synth.MAC(5)
		if !fromCli {
			s, d, sm, dm = srv, cli, synth.MAC(5), synth.MAC(9)
		}
		ip := synth.IPv4(s, d, 6, 0, uint16(len(pkts)), 0, false, synth.TCP(sport, dport, seq, ack, flags, 65535, n))
		pkts = append(pkts, synth.Packet{Time: at, Data: synth.Ethernet(sm, dm, nil, 0x0800, ip)})
		at += 1e6
	}
	const syn, ack, psh, fin = 0x02, 0x10, 0x08, 0x01
	send(true, 50000, 40000, 100, 0, syn, 0)
	send(false, 40000, 50000, 900, 101, syn|ack, 0)
	send(true, 50000, 40000, 101, 901, ack, 0)
	for i := range uint32(3) {
		send(true, 50000, 40000, 101+100*i, 901+300*i, ack|psh, 100)
		send(false, 40000, 50000, 901+300*i, 201+100*i, ack|psh, 300)
	}
	send(true, 50000, 40000, 401, 1801, ack|fin, 0)
	send(false, 40000, 50000, 1801, 402, ack|fin, 0)
	send(true, 50000, 40000, 402, 1802, ack, 0)
	for i := range uint32(2) {
		send(true, 45000, 40001, 7000+50*i, 3000+80*i, ack|psh, 50)
		send(false, 40001, 45000, 3000+80*i, 7050+50*i, ack|psh, 80)
	}
	path := filepath.Join(t.TempDir(), "high-ports.pcap")
	if err := synth.WritePcapFile(path, pkts); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBiflowDirectionTruth: each TCP record's biflowDirection, as tshark
// decodes the IPFIX and as nfdump reads it from nfcapd's files, is who opened the connection as tshark reads it in
// the capture itself: 1 for the direction that sent a SYN without ACK, 2
// for the one that sent the SYN-ACK, 0 (arbitrary) for a direction that
// sent neither (its handshake is not in the capture). On a connection
// from port 50000 to a server on port 40000, captures of the shared
// testdata with handshakes (tunnelled, ERSPAN, reordered, unanswered,
// fast open) and one without any.
func TestBiflowDirectionTruth(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	nfcapd := testutil.Command(t, "nfcapd")
	nfdump := testutil.Command(t, "nfdump")
	mirror := filepath.Join(testutil.SharedTestdata(t), "mirror")
	paths := []string{writeHighPorts(t)}
	for _, p := range []string{
		"zeek/cisco-fabric-path.pcap", "zeek/erspan.pcap", "zeek/tcp-handshake-reorder.pcap",
		"zeek/tcp-syn-synack.pcap", "zeek/tcp-tcp-fast-open.pcap", "zeek/communityid-ipv6.pcap",
		"tcpdump/dns_tcp.pcap", "tcpdump/tcp-handshake-nano.pcap", "ndpi/6in4tunnel.pcap", "ndpi/vxlan.pcap",
		"ipfixprobe/http.pcap",
	} {
		paths = append(paths, filepath.Join(mirror, p))
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			want := handshakeTruth(t, tshark, path)
			// An idle timeout frees the flow's entry, and what it knew of
			// the handshake with it (erspan.pcap's HTTP connection pauses
			// for 53 s): an hour keeps every connection in its entry.
			cfg := testConfiguration(path)
			cfg.IdleTimeout = Duration(time.Hour)
			_, msgs := runFile(t, cfg)
			res := tsharkOf(t, tshark, msgs)
			counts := map[uint8]int{}
			for _, f := range res.Flows {
				if f.Proto != 6 {
					continue
				}
				k := fmt.Sprintf("%s:%d > %s:%d", f.Src, f.SrcPort, f.Dst, f.DstPort)
				w, ok := want[k]
				if !ok {
					t.Errorf("%s: a record of a direction tshark saw no TCP segment of", k)
					continue
				}
				if f.Initiator != w {
					t.Errorf("%s: biflowDirection %d, want %d", k, f.Initiator, w)
				}
				counts[f.Initiator]++
			}
			t.Logf("TCP records by biflowDirection: %v", counts)
			if len(counts) == 0 {
				t.Fatal("no TCP record")
			}
			if filepath.Base(path) == "high-ports.pcap" && (counts[1] != 1 || counts[2] != 1 || counts[0] != 2) {
				t.Errorf("records by biflowDirection %v, want one each of 1 and 2 (the handshake's connection) and two of 0", counts)
			}

			// nfdump reads the same from what nfcapd stored.
			dir := t.TempDir()
			n, err := verify.StartNfcapd(nfcapd, dir)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Collectors = []string{"127.0.0.1:" + itoa(n.Port)}
			sendFile(t, path, cfg)
			log := n.Stop()
			cmd := exec.Command(nfdump, "-R", dir, "-q", "-N", "-6", "-o", "fmt:%pr %sa %sp %da %dp %bfd")
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("nfdump: %v\nnfcapd: %s", err, log)
			}
			nf := 0
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				f := strings.Fields(l)
				if len(f) != 6 {
					t.Fatalf("nfdump line %q", l)
				}
				if f[0] != "6" { // -N: numbers
					continue
				}
				nf++
				k := fmt.Sprintf("%s:%s > %s:%s", f[1], f[2], f[3], f[4])
				if w, ok := want[k]; !ok || f[5] != strconv.Itoa(int(w)) {
					t.Errorf("nfdump: %s: biflowDirection %s, want %d (known: %v)", k, f[5], w, ok)
				}
			}
			if nf != counts[0]+counts[1]+counts[2] {
				t.Errorf("nfdump shows %d TCP records, tshark %v", nf, counts)
			}
		})
	}
}

// handshakeTruth reads path's TCP segments with tshark and returns, for
// each direction (its innermost addresses and ports), the biflowDirection
// its records must carry: 1 when it sent a SYN without ACK and no SYN-ACK,
// 2 when it sent a SYN-ACK and no SYN, else 0.
func handshakeTruth(t *testing.T, tshark, path string) map[string]uint8 {
	t.Helper()
	out, err := exec.Command(tshark, "-r", path, "-Y", "tcp", "-T", "fields", "-E", "occurrence=l",
		"-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.dstport",
		"-e", "tcp.flags.syn", "-e", "tcp.flags.ack").Output()
	if err != nil {
		t.Fatalf("tshark %s: %v", path, err)
	}
	type seen struct{ syn, synack bool }
	dirs := map[string]*seen{}
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		f := strings.Split(l, "\t")
		if len(f) != 8 {
			t.Fatalf("tshark line %q", l)
		}
		src, dst := f[0], f[3]
		if f[1] != "" && f[4] != "" { // IPv6 innermost when IPv4 carries it, or alone
			src, dst = f[1], f[4]
		}
		// tshark shows IPv6 addresses in their short form, as netip does.
		k := fmt.Sprintf("%s:%s > %s:%s", src, f[2], dst, f[5])
		s := dirs[k]
		if s == nil {
			s = &seen{}
			dirs[k] = s
		}
		syn, ack := f[6] == "1" || f[6] == "True", f[7] == "1" || f[7] == "True"
		s.syn = s.syn || syn && !ack
		s.synack = s.synack || syn && ack
	}
	want := map[string]uint8{}
	for k, s := range dirs {
		switch {
		case s.syn && !s.synack:
			want[k] = 1
		case s.synack && !s.syn:
			want[k] = 2
		default:
			want[k] = 0
		}
	}
	return want
}
