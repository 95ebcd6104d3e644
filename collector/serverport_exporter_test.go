package collector_test

import (
	"net"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/spanflow/spanflow/collector/pipeline"
	"github.com/spanflow/spanflow/collector/rollup"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// writeConnection writes a TCP connection from a client on port cliPort
// to a server on port srvPort: handshake, data both ways, close. It
// returns the packets each side sent.
func writeConnection(t *testing.T, path string, cliPort, srvPort uint16) (fromCli, fromSrv uint64, tr truth) {
	t.Helper()
	w := newCaptureWriter(t, path)
	cli, srv := net.IPv4(10, 1, 9, 9), net.IPv4(10, 1, 9, 5)
	write := func(fromClient bool, tcp layers.TCP, payload int) {
		src, dst, sport, dport := cli, srv, cliPort, srvPort
		if !fromClient {
			src, dst, sport, dport = srv, cli, srvPort, cliPort
			fromSrv++
		} else {
			fromCli++
		}
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, src[15]}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, dst[15]}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, SrcIP: src, DstIP: dst, Protocol: layers.IPProtocolTCP}
		tcp.SrcPort, tcp.DstPort, tcp.Window = layers.TCPPort(sport), layers.TCPPort(dport), 1000
		tcp.SetNetworkLayerForChecksum(ip)
		w.frame(eth, ip, &tcp, gopacket.Payload(make([]byte, payload)))
	}
	write(true, layers.TCP{SYN: true, Seq: 100}, 0)
	write(false, layers.TCP{SYN: true, ACK: true, Seq: 900, Ack: 101}, 0)
	write(true, layers.TCP{ACK: true, Seq: 101, Ack: 901}, 0)
	for i := range 3 {
		write(true, layers.TCP{ACK: true, PSH: true, Seq: uint32(101 + 100*i), Ack: 901}, 100)
		write(false, layers.TCP{ACK: true, PSH: true, Seq: uint32(901 + 300*i), Ack: uint32(201 + 100*i)}, 300)
	}
	write(true, layers.TCP{ACK: true, FIN: true, Seq: 401, Ack: 1801}, 0)
	write(false, layers.TCP{ACK: true, FIN: true, Seq: 1801, Ack: 402}, 0)
	write(true, layers.TCP{ACK: true, Seq: 402, Ack: 1802}, 0)
	tr = w.close()
	tr.flows = 2
	return fromCli, fromSrv, tr
}

// serviceSums sums the packets and the handshakes of each service row
// over every snapshot (ticks of 1 s).
type serviceSums struct {
	mu                  sync.Mutex
	packets, handshakes map[string]float64
}

func (s *serviceSums) Rollup(snap *rollup.Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range snap.Rows {
		if r.Scope == rollup.ScopeService {
			s.packets[r.Key] += r.Values.Of(rollup.PacketsPerSecond)
			s.handshakes[r.Key] += r.Values.Of(rollup.HandshakesPerSecond)
		}
	}
}

// TestServerPortSpanflowExporter: a connection from a client on port
// 50000 to a server on port 40000, read by `spanflow exporter run --pcap`
// and sent as IPFIX to the collector, counts in the rollups' service row
// tcp/40000, both directions. Neither port is below 32768 and each
// direction's flags, ORed over the connection, show SYN and ACK: only the
// exporter's biflowDirection tells the server, and without it the
// server's direction counted in tcp/50000 (its destination port). Its
// handshake counts once: each direction's record has its RTT and a SYN,
// and only the one towards the server port counts it; with two server
// ports both did.
func TestServerPortSpanflowExporter(t *testing.T) {
	goBin := testutil.Command(t, "go")
	dir := t.TempDir()
	bin := filepath.Join(dir, "spanflow")
	build := exec.Command(goBin, "build", "-o", bin, "./cmd/spanflow")
	build.Dir = testutil.ModuleRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build spanflow: %v\n%s", err, out)
	}
	pcap := filepath.Join(dir, "high-ports.pcap")
	fromCli, fromSrv, want := writeConnection(t, pcap, 50000, 40000)
	cfg := rollup.DefaultConfiguration()
	cfg.EventTime, cfg.Delay = true, 30*time.Second // the records' own time, none late
	e, err := rollup.New(reporter.NewForTest(nil), cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := &serviceSums{packets: map[string]float64{}, handshakes: map[string]float64{}}
	e.Subscribe(got)
	c := startCollector(t, pipeline.Output{Name: "rollups", Sink: e})
	if out, err := exec.Command(bin, "exporter", "run", "--pcap", pcap, "--collector", c.addr).CombinedOutput(); err != nil {
		t.Fatalf("exporter: %v\n%s", err, out)
	}
	pkts, _, docs, _ := c.waitFor(t, want, 10*time.Second)
	if pkts != want.packets {
		t.Fatalf("documents add up to %d packets (%d documents), capture has %d", pkts, docs, want.packets)
	}
	c.l.Stop()
	e.Stop() // publishes every second up to the last record
	got.mu.Lock()
	defer got.mu.Unlock()
	t.Logf("service packets %v, handshakes %v (client sent %d packets, server %d)", got.packets, got.handshakes, fromCli, fromSrv)
	total := float64(fromCli + fromSrv)
	if n := got.packets["tcp/40000"]; n < total-0.5 || n > total+0.5 || len(got.packets) != 1 {
		t.Errorf("service rows %v; want the connection's %v packets in tcp/40000 alone", got.packets, total)
	}
	var handshakes float64
	for _, n := range got.handshakes {
		handshakes += n
	}
	if n := got.handshakes["tcp/40000"]; n < 0.5 || n > 1.5 || handshakes > 1.5 {
		t.Errorf("handshakes by service %v; want the connection's one in tcp/40000", got.handshakes)
	}
}
