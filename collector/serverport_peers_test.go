package collector_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/spanflow/spanflow/collector/alert"
	"github.com/spanflow/spanflow/collector/pipeline"
	"github.com/spanflow/spanflow/collector/rollup"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// writeHighPortServer writes a connection to a database on port 50000
// (DB2's) from a client on port 1500, with its handshake, data both ways
// and its close, and three unanswered SYNs from port 2000 to port 50001.
// It returns the packets of the handshake's SYN and SYN-ACK, of the rest
// of the connection, and of the unanswered SYNs.
func writeHighPortServer(t *testing.T, path string) (handshake, rest, unanswered uint64, tr truth) {
	t.Helper()
	w := newCaptureWriter(t, path)
	cli, srv, other := net.IPv4(10, 1, 9, 9), net.IPv4(10, 1, 9, 5), net.IPv4(10, 1, 9, 10)
	write := func(src, dst net.IP, sport, dport uint16, tcp layers.TCP, payload int) uint64 {
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, src[15]}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, dst[15]}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, SrcIP: src, DstIP: dst, Protocol: layers.IPProtocolTCP}
		tcp.SrcPort, tcp.DstPort, tcp.Window = layers.TCPPort(sport), layers.TCPPort(dport), 1000
		tcp.SetNetworkLayerForChecksum(ip)
		w.frame(eth, ip, &tcp, gopacket.Payload(make([]byte, payload)))
		return 1
	}
	handshake += write(cli, srv, 1500, 50000, layers.TCP{SYN: true, Seq: 100}, 0)
	handshake += write(srv, cli, 50000, 1500, layers.TCP{SYN: true, ACK: true, Seq: 900, Ack: 101}, 0)
	rest += write(cli, srv, 1500, 50000, layers.TCP{ACK: true, Seq: 101, Ack: 901}, 0)
	for i := range 3 {
		rest += write(cli, srv, 1500, 50000, layers.TCP{ACK: true, PSH: true, Seq: uint32(101 + 100*i), Ack: 901}, 100)
		rest += write(srv, cli, 50000, 1500, layers.TCP{ACK: true, PSH: true, Seq: uint32(901 + 300*i), Ack: uint32(201 + 100*i)}, 300)
	}
	rest += write(cli, srv, 1500, 50000, layers.TCP{ACK: true, FIN: true, Seq: 401, Ack: 1801}, 0)
	rest += write(srv, cli, 50000, 1500, layers.TCP{ACK: true, FIN: true, Seq: 1801, Ack: 402}, 0)
	rest += write(cli, srv, 1500, 50000, layers.TCP{ACK: true, Seq: 402, Ack: 1802}, 0)
	for range 3 {
		unanswered += write(other, srv, 2000, 50001, layers.TCP{SYN: true, Seq: 5000}, 0)
	}
	tr = w.close()
	tr.flows = 3
	return handshake, rest, unanswered, tr
}

// servicePackets sums the packets of each service row over every snapshot.
type servicePackets struct {
	mu sync.Mutex
	m  map[string]float64
}

func (s *servicePackets) Rollup(snap *rollup.Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range snap.Rows {
		if r.Scope == rollup.ScopeService {
			s.m[r.Key] += r.Values.Of(rollup.PacketsPerSecond) // ticks of 1 s
		}
	}
}

// TestServerPortPeers: the capture above, metered by real peers, through
// the collector into the rollups. pmacctd's sfprobe samples every packet
// (sFlow: each record's flags are its packet's): the SYN and the SYN-ACK
// count in tcp/50000, and the unanswered SYNs in tcp/50001; the ports'
// rule put them in tcp/1500 and tcp/2000. The connection's other packets,
// which show neither, still count in tcp/1500. softflowd's IPFIX ORs
// the flags of each direction's packets: only the unanswered SYNs show
// who opened, and they count in tcp/50001.
func TestServerPortPeers(t *testing.T) {
	for i, peer := range []string{"sfprobe", "softflowd"} {
		t.Run(peer, func(t *testing.T) {
			bin := testutil.Command(t, map[string]string{"sfprobe": "pmacctd", "softflowd": "softflowd"}[peer])
			dir := t.TempDir()
			pcap := filepath.Join(dir, "flows.pcap")
			handshake, rest, unanswered, want := writeHighPortServer(t, pcap)
			hostIf, ns, nsIf := veth(t, fmt.Sprint("sp", i))
			cfg := rollup.DefaultConfiguration()
			cfg.EventTime, cfg.Delay = true, 30*time.Second // the records' own time, none late
			e, err := rollup.New(reporter.NewForTest(nil), cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := &servicePackets{m: map[string]float64{}}
			e.Subscribe(got)
			c := startCollector(t, pipeline.Output{Name: "rollups", Sink: e})
			var cmd *exec.Cmd
			if peer == "sfprobe" {
				conf := fmt.Sprintf("daemonize: false\npcap_interface: %s\nplugins: sfprobe\nsfprobe_receiver: %s\nsampling_rate: 1\nsfprobe_agentip: 127.0.0.1\n", hostIf, c.addr)
				cf := filepath.Join(dir, "pmacctd.conf")
				os.WriteFile(cf, []byte(conf), 0o644)
				cmd = exec.Command(bin, "-f", cf)
			} else {
				cmd = exec.Command(bin, "-d", "-i", hostIf, "-n", c.addr, "-v", "10", "-c", filepath.Join(dir, "ctl"),
					"-p", filepath.Join(dir, "pid"), "-t", "maxlife=300", "-T", "full")
			}
			logf, err := os.Create(filepath.Join(dir, "peer.log"))
			if err != nil {
				t.Fatal(err)
			}
			defer logf.Close()
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			cmd.Stderr, cmd.Stdout = logf, logf
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() }()
			log := func() string { b, _ := os.ReadFile(logf.Name()); return string(b) }
			waitCapturing(t, hostIf, log)
			if peer == "softflowd" {
				// As TestSoftflowd: its control socket answers once it reads.
				ctl := testutil.Command(t, "softflowctl")
				for end := time.Now().Add(10 * time.Second); exec.Command(ctl, "-c", filepath.Join(dir, "ctl"), "statistics").Run() != nil; time.Sleep(100 * time.Millisecond) {
					if time.Now().After(end) {
						t.Fatalf("softflowd never answered softflowctl\n%s", log())
					}
				}
				time.Sleep(200 * time.Millisecond)
				replay(t, ns, nsIf, pcap)
				time.Sleep(time.Second)
				if out, err := exec.Command(ctl, "-c", filepath.Join(dir, "ctl"), "expire-all").CombinedOutput(); err != nil {
					t.Fatalf("softflowctl expire-all: %v\n%s\n%s", err, out, log())
				}
			} else {
				replay(t, ns, nsIf, pcap)
			}
			pkts, _, docs, _ := c.waitFor(t, want, 20*time.Second)
			if pkts != want.packets {
				t.Fatalf("documents add up to %d packets (%d documents), capture has %d\n%s", pkts, docs, want.packets, log())
			}
			c.l.Stop()
			e.Stop() // publishes every second up to the last record
			got.mu.Lock()
			defer got.mu.Unlock()
			t.Logf("%s: service packets %v (handshake %d, rest %d, unanswered SYNs %d)", peer, got.m, handshake, rest, unanswered)
			near := func(x float64, n uint64) bool { return x > float64(n)-0.5 && x < float64(n)+0.5 }
			if !near(got.m["tcp/50001"], unanswered) || got.m["tcp/2000"] != 0 {
				t.Errorf("unanswered SYNs: tcp/50001 %v packets, tcp/2000 %v; want %d in tcp/50001", got.m["tcp/50001"], got.m["tcp/2000"], unanswered)
			}
			if peer == "sfprobe" && (!near(got.m["tcp/50000"], handshake) || !near(got.m["tcp/1500"], rest)) {
				t.Errorf("tcp/50000 %v packets, tcp/1500 %v; want the handshake's %d and the rest's %d", got.m["tcp/50000"], got.m["tcp/1500"], handshake, rest)
			}
		})
	}
}

// TestSoftflowdBiflows: softflowd's RFC 5103 biflows (IPFIX, -b) of the
// capture above: a record counts both directions, the reverse in
// reverseOctetDeltaCount and reversePacketDeltaCount (PEN 29305); the
// documents and the rollups add up to the capture's packets and bytes.
// Counted one way, they held 5 of its 15 packets: the connection's
// answers and the unanswered SYNs (softflowd's biflow source is the
// server, so the SYNs were its reverse direction) were lost. The SYNs
// count in tcp/50001: the biflow's reverse flags show who opened it.
func TestSoftflowdBiflows(t *testing.T) {
	dir := t.TempDir()
	pcap := filepath.Join(dir, "flows.pcap")
	_, _, _, want := writeHighPortServer(t, pcap)
	hostIf, ns, nsIf := veth(t, "bi")
	cfg := rollup.DefaultConfiguration()
	cfg.EventTime, cfg.Delay = true, 30*time.Second
	e, err := rollup.New(reporter.NewForTest(nil), cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := &servicePackets{m: map[string]float64{}}
	e.Subscribe(got)
	c := startCollector(t, pipeline.Output{Name: "rollups", Sink: e})
	softflowdBiflows(t, dir, hostIf, ns, nsIf, pcap, c)
	pkts, byts, docs, _ := c.waitFor(t, want, 10*time.Second)
	c.l.Stop()
	e.Stop()
	got.mu.Lock()
	defer got.mu.Unlock()
	t.Logf("%d documents, %d packets, %d bytes (capture: %d packets, %d bytes); rollups: service packets %v",
		docs, pkts, byts, want.packets, want.bytes, got.m)
	if pkts != want.packets || byts != want.bytes {
		t.Errorf("documents add up to %d packets and %d bytes, capture has %d and %d", pkts, byts, want.packets, want.bytes)
	}
	var rolled float64
	for k, n := range got.m {
		if strings.HasPrefix(k, "tcp/") {
			rolled += n
		}
	}
	if rolled < float64(want.packets)-0.5 || rolled > float64(want.packets)+0.5 {
		t.Errorf("rollups: %v TCP packets, capture has %d", rolled, want.packets)
	}
	// The unanswered SYNs are the reverse of a biflow whose source is the
	// server on port 50001: its reverse flags say the client opened it.
	if n := got.m["tcp/50001"]; n < 2.5 || n > 3.5 || got.m["tcp/2000"] != 0 {
		t.Errorf("unanswered SYNs: tcp/50001 %v packets, tcp/2000 %v; want 3 in tcp/50001", n, got.m["tcp/2000"])
	}
}

// softflowdBiflows meters the capture replayed into the veth with
// softflowd's IPFIX biflows (-b) towards c, and has it export them all.
func softflowdBiflows(t *testing.T, dir, hostIf, ns, nsIf, pcap string, c *collectorUnderTest) {
	t.Helper()
	softflowd := testutil.Command(t, "softflowd")
	ctl := testutil.Command(t, "softflowctl")
	sock := filepath.Join(dir, "ctl")
	cmd := exec.Command(softflowd, "-d", "-i", hostIf, "-n", c.addr, "-v", "10", "-b", "-c", sock,
		"-p", filepath.Join(dir, "pid"), "-t", "maxlife=300", "-T", "full")
	logf, err := os.Create(filepath.Join(dir, "peer.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	cmd.Stderr, cmd.Stdout = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	log := func() string { b, _ := os.ReadFile(logf.Name()); return string(b) }
	waitCapturing(t, hostIf, log)
	for end := time.Now().Add(10 * time.Second); exec.Command(ctl, "-c", sock, "statistics").Run() != nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("softflowd never answered softflowctl\n%s", log())
		}
	}
	time.Sleep(200 * time.Millisecond)
	replay(t, ns, nsIf, pcap)
	time.Sleep(time.Second)
	if out, err := exec.Command(ctl, "-c", sock, "expire-all").CombinedOutput(); err != nil {
		t.Fatalf("softflowctl expire-all: %v\n%s\n%s", err, out, log())
	}
}

// TestBiflowPortScan: a SYN scan of 150 ports from 10.1.9.200 to
// 10.1.9.5, each answered with a RST, metered by softflowd as IPFIX
// biflows: softflowd puts the lower address first, so each probe's SYN is
// in the reverse counts (netflow.reverse_tcp_control_bits) and the
// target's RST-ACK in the record's own flags. The port-scan detector,
// behind the real collector, fires once for the scanner; it read the
// records as answers (with ACK) and fired nothing.
func TestBiflowPortScan(t *testing.T) {
	dir := t.TempDir()
	pcap := filepath.Join(dir, "scan.pcap")
	w := newCaptureWriter(t, pcap)
	scanner, target := net.IPv4(10, 1, 9, 200), net.IPv4(10, 1, 9, 5)
	write := func(src, dst net.IP, sport, dport uint16, tcp layers.TCP) {
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, src[15]}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, dst[15]}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, SrcIP: src, DstIP: dst, Protocol: layers.IPProtocolTCP}
		tcp.SrcPort, tcp.DstPort, tcp.Window = layers.TCPPort(sport), layers.TCPPort(dport), 1024
		tcp.SetNetworkLayerForChecksum(ip)
		w.frame(eth, ip, &tcp)
	}
	for port := uint16(1); port <= 150; port++ {
		write(scanner, target, 55555, port, layers.TCP{SYN: true, Seq: 7000})
		write(target, scanner, port, 55555, layers.TCP{RST: true, ACK: true, Ack: 7001})
	}
	want := truth{packets: w.close().packets}
	hostIf, ns, nsIf := veth(t, "bs")
	var mu sync.Mutex
	var alerts []alert.Alert
	d := alert.DefaultDetectors()
	d.PortScan.Enabled = true
	fd := alert.NewFlowDetectors(d, "", "", func(a alert.Alert) { mu.Lock(); alerts = append(alerts, a); mu.Unlock() })
	c := startCollector(t, pipeline.Output{Name: "detectors", Sink: fd})
	softflowdBiflows(t, dir, hostIf, ns, nsIf, pcap, c)
	pkts, _, docs, _ := c.waitFor(t, want, 10*time.Second)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d documents, %d packets (capture %d); alerts %+v", docs, pkts, want.packets, alerts)
	if pkts != want.packets {
		t.Fatalf("documents add up to %d packets, capture has %d", pkts, want.packets)
	}
	if len(alerts) != 1 || alerts[0].Rule != alert.RulePortScan || alerts[0].Key != "10.1.9.200" {
		t.Errorf("alerts %+v, want one port_scan of 10.1.9.200", alerts)
	}
}
