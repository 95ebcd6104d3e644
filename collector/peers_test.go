package collector_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/spanflow/spanflow/collector/listen"
	"github.com/spanflow/spanflow/collector/output/ndjson"
	"github.com/spanflow/spanflow/collector/pipeline"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// truth is what the generated capture holds.
type truth struct {
	packets, bytes uint64 // IP packets and their IP total lengths
	flows          int
}

// writeCapture writes TCP and UDP flows between 10.1.0.0/16 hosts, each
// packet with a distinct size, and returns the totals.
func writeCapture(t *testing.T, path string) truth {
	t.Helper()
	w := newCaptureWriter(t, path)
	for fl := range 24 {
		w.tr.flows++
		src := net.IPv4(10, 1, byte(fl), 1)
		dst := net.IPv4(10, 1, 200, byte(fl+1))
		for p := range 5 + fl%7 {
			eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, byte(fl)}, DstMAC: net.HardwareAddr{0x02, 0, 0, 0, 1, 1}, EthernetType: layers.EthernetTypeIPv4}
			ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, SrcIP: src, DstIP: dst}
			payload := gopacket.Payload(bytes.Repeat([]byte{'x'}, 40+fl*3+p))
			var l4 gopacket.SerializableLayer
			if fl%2 == 0 {
				ip.Protocol = layers.IPProtocolTCP
				tcp := &layers.TCP{SrcPort: layers.TCPPort(20000 + fl), DstPort: 443, Seq: uint32(1000 + p*100), ACK: p > 0, SYN: p == 0, PSH: p > 0, Window: 1000}
				tcp.SetNetworkLayerForChecksum(ip)
				l4 = tcp
			} else {
				ip.Protocol = layers.IPProtocolUDP
				udp := &layers.UDP{SrcPort: layers.UDPPort(30000 + fl), DstPort: 53}
				udp.SetNetworkLayerForChecksum(ip)
				l4 = udp
			}
			w.frame(eth, ip, l4, payload)
		}
	}
	return w.close()
}

// collectorUnderTest is the real listener, pipeline and NDJSON output
// (and the outputs a test adds).
type collectorUnderTest struct {
	out  testutil.SyncBuffer
	nd   *ndjson.Output
	p    *pipeline.Pipeline
	l    *listen.Listener
	addr string
	// srcPrefix keeps documents whose source address starts with it ("*": all).
	srcPrefix string
}

func startCollector(t *testing.T, more ...pipeline.Output) *collectorUnderTest {
	t.Helper()
	r := reporter.NewForTest(nil)
	c := &collectorUnderTest{}
	var err error
	if c.nd, err = ndjson.New(r, ndjson.DefaultConfiguration(), &c.out); err != nil {
		t.Fatal(err)
	}
	if err := c.nd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.nd.Stop() }) // after the listener's stop, registered later
	c.p, c.l = listenInto(t, r, append([]pipeline.Output{{Name: "stdout", Sink: c.nd}}, more...)...)
	c.addr = c.l.Addrs()[0].String()
	return c
}

// listenInto starts a pipeline into outputs and its listener on a UDP
// port of loopback; the listener stops at the test's end.
func listenInto(t *testing.T, r *reporter.Reporter, outputs ...pipeline.Output) (*pipeline.Pipeline, *listen.Listener) {
	t.Helper()
	p, err := pipeline.New(r, pipeline.DefaultConfiguration(), pipeline.Dependencies{Outputs: outputs})
	if err != nil {
		t.Fatal(err)
	}
	lc := listen.DefaultConfiguration()
	lc.UDP, lc.TCP, lc.Sockets = []string{"127.0.0.1:0"}, nil, 1
	l, err := listen.New(r, lc, listen.Dependencies{NewHandler: func() listen.Handler { return p.NewWorker() }})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	return p, l
}

// totals sums network.packets and network.bytes of the flow documents.
func (c *collectorUnderTest) totals(t *testing.T) (pkts, byts uint64, docs int, kinds map[string]int) {
	if c.srcPrefix == "" {
		c.srcPrefix = "10.1." // the generated capture's hosts; the veth also sees the host's own packets
	}
	kinds = map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(c.out.String()), "\n") {
		if line == "" {
			continue
		}
		var d struct {
			Event   struct{ Action string }
			Flow    struct{ Protocol string }
			Network struct{ Packets, Bytes uint64 }
			Source  struct{ IP string }
		}
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("bad document %v: %s", err, line)
		}
		if d.Event.Action != "network_flow" || (c.srcPrefix != "*" && !strings.HasPrefix(d.Source.IP, c.srcPrefix)) {
			continue
		}
		docs++
		kinds[d.Flow.Protocol]++
		pkts += d.Network.Packets
		byts += d.Network.Bytes
	}
	return
}

// waitFor polls the collector until the packets add up or time runs out.
func (c *collectorUnderTest) waitFor(t *testing.T, want truth, timeout time.Duration) (uint64, uint64, int, map[string]int) {
	deadline := time.Now().Add(timeout)
	for {
		time.Sleep(300 * time.Millisecond)
		p, b, d, k := c.totals(t)
		if p >= want.packets || time.Now().After(deadline) {
			return p, b, d, k
		}
	}
}

// veth makes a veth pair with one end in a new network namespace; frames
// tcpreplay sends from inside the namespace arrive on the host end.
func veth(t *testing.T, name string) (hostIf, ns, nsIf string) {
	t.Helper()
	testutil.Root(t)
	testutil.Command(t, "ip")
	ns, hostIf, nsIf = "sf"+name, "sfh"+name, "sfn"+name
	run := func(args ...string) {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	exec.Command("ip", "netns", "del", ns).Run()
	exec.Command("ip", "link", "del", hostIf).Run()
	run("ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run(); exec.Command("ip", "link", "del", hostIf).Run() })
	run("ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	run("ip", "link", "set", nsIf, "netns", ns)
	run("ip", "link", "set", hostIf, "up")
	run("ip", "netns", "exec", ns, "ip", "link", "set", nsIf, "up")
	// IPv6 router solicitations etc. would add flows of their own.
	run("sysctl", "-qw", "net.ipv6.conf."+hostIf+".disable_ipv6=1")
	return hostIf, ns, nsIf
}

// waitCapturing waits (up to 20 s) until a packet socket is bound to the
// interface (/proc/net/packet; nothing else captures a fresh veth), then
// half a second more for the probe to set its ring and filter up: a
// probe that says nothing when it is ready is not replayed to too early.
func waitCapturing(t *testing.T, ifname string, log func() string) {
	t.Helper()
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint(iface.Index)
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		data, err := os.ReadFile("/proc/net/packet")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			if f := strings.Fields(line); len(f) > 4 && f[4] == want {
				time.Sleep(500 * time.Millisecond)
				return
			}
		}
		if time.Now().After(end) {
			t.Fatalf("no capture on %s after 20 s\n%s", ifname, log())
		}
	}
}

// replay sends the capture, then 4 MB of non-IP frames (local experimental
// ethertype, ignored by the probes): libpcap's TPACKET_V3 ring hands packets
// to the probe a block at a time, and the filler pushes the last block out.
func replay(t *testing.T, ns, nsIf, pcap string) {
	t.Helper()
	tcpreplay := testutil.Command(t, "tcpreplay")
	out, err := exec.Command("ip", "netns", "exec", ns, tcpreplay, "-q", "--pps", "2000", "-i", nsIf, pcap).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpreplay: %v\n%s", err, out)
	}
	filler := filepath.Join(filepath.Dir(pcap), "filler.pcap")
	writeFiller(t, filler)
	out, err = exec.Command("ip", "netns", "exec", ns, tcpreplay, "-q", "--mbps", "200", "-i", nsIf, filler).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpreplay filler: %v\n%s", err, out)
	}
}

func writeFiller(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	frame := make([]byte, 1400)
	copy(frame, []byte{0x02, 0, 0, 0, 9, 9, 0x02, 0, 0, 0, 9, 8, 0x88, 0xb5})
	ts := time.Now()
	for range 3000 {
		w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(frame), Length: len(frame)}, frame)
	}
}

// TestSoftflowd: softflowd meters the replayed capture on the host end of
// the veth and exports NetFlow v5, v9 and IPFIX to the collector; the
// documents add up to the capture's packets and bytes. With three flows
// (v9-few), softflowd's one NetFlow v9 datagram holds its templates and
// the data sets, and its header counts the templates only: the data sets
// past the count were dropped, and the collector had no document at all.
func TestSoftflowd(t *testing.T) {
	softflowd := testutil.Command(t, "softflowd")
	softflowctl := testutil.Command(t, "softflowctl")
	for i, version := range []string{"5", "9", "10", "9-few"} {
		t.Run("v"+version, func(t *testing.T) {
			dir := t.TempDir()
			pcap := filepath.Join(dir, "flows.pcap")
			var want truth
			if version == "9-few" {
				_, _, _, want = writeHighPortServer(t, pcap)
				version = "9"
			} else {
				want = writeCapture(t, pcap)
			}
			hostIf, ns, nsIf := veth(t, fmt.Sprint("sf", i))
			c := startCollector(t)
			ctl := filepath.Join(dir, "ctl")
			cmd := exec.Command(softflowd, "-d", "-i", hostIf, "-n", c.addr, "-v", version, "-c", ctl, "-p", filepath.Join(dir, "pid"),
				"-t", "maxlife=300", "-T", "full")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			// softflowctl answers once softflowd has opened the interface
			// and its control socket; then every replayed packet must be
			// processed before the flows are expired (a loaded machine
			// may take a while).
			processed := func() (uint64, error) {
				out, err := exec.Command(softflowctl, "-c", ctl, "statistics").CombinedOutput()
				if err != nil {
					return 0, fmt.Errorf("%v: %s", err, out)
				}
				m := regexp.MustCompile(`[Pp]ackets processed: *([0-9]+)`).FindSubmatch(out)
				if m == nil {
					return 0, fmt.Errorf("no packet count in %q", out)
				}
				return strconv.ParseUint(string(m[1]), 10, 64)
			}
			for end := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				_, err := processed()
				if err == nil {
					break
				}
				if time.Now().After(end) {
					t.Fatalf("softflowd never answered softflowctl: %v\n%s", err, stderr.String())
				}
			}
			time.Sleep(200 * time.Millisecond) // pcap is open before the control socket; a little margin
			replay(t, ns, nsIf, pcap)
			for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				n, err := processed()
				if err == nil && n >= want.packets || time.Now().After(end) {
					break
				}
			}
			if out, err := exec.Command(softflowctl, "-c", ctl, "expire-all").CombinedOutput(); err != nil {
				t.Fatalf("softflowctl expire-all: %v\n%s\n%s", err, out, stderr.String())
			}
			pkts, byts, docs, kinds := c.waitFor(t, want, 10*time.Second)
			t.Logf("softflowd v%s: %d documents %v, %d packets, %d bytes (capture: %d flows, %d packets, %d bytes)",
				version, docs, kinds, pkts, byts, want.flows, want.packets, want.bytes)
			if pkts != want.packets || byts != want.bytes {
				t.Errorf("documents add up to %d packets and %d bytes, capture has %d and %d", pkts, byts, want.packets, want.bytes)
			}
			if docs < want.flows {
				t.Errorf("%d flow documents, capture has %d flows", docs, want.flows)
			}
		})
	}
}

// TestPmacctd: pmacctd's nfprobe (IPFIX) and sfprobe (sFlow, 1 in 1) plugins
// meter the replayed capture; the documents add up to the capture.
func TestPmacctd(t *testing.T) {
	pmacctd := testutil.Command(t, "pmacctd")
	for i, plugin := range []string{"nfprobe", "sfprobe"} {
		t.Run(plugin, func(t *testing.T) {
			dir := t.TempDir()
			pcap := filepath.Join(dir, "flows.pcap")
			want := writeCapture(t, pcap)
			hostIf, ns, nsIf := veth(t, fmt.Sprint("pm", i))
			c := startCollector(t)
			conf := fmt.Sprintf("daemonize: false\npcap_interface: %s\nplugins: %s\naggregate: src_host, dst_host, src_port, dst_port, proto, tos\n", hostIf, plugin)
			if plugin == "nfprobe" {
				conf += fmt.Sprintf("nfprobe_receiver: %s\nnfprobe_version: 10\nnfprobe_timeouts: tcp=2:tcp.rst=2:tcp.fin=2:udp=2:icmp=2:general=2:maxlife=2:expint=1\n", c.addr)
			} else {
				conf += fmt.Sprintf("sfprobe_receiver: %s\nsampling_rate: 1\nsfprobe_agentip: 127.0.0.1\n", c.addr)
			}
			cf := filepath.Join(dir, "pmacctd.conf")
			os.WriteFile(cf, []byte(conf), 0o644)
			logf, err := os.Create(filepath.Join(dir, "pmacctd.log"))
			if err != nil {
				t.Fatal(err)
			}
			defer logf.Close()
			cmd := exec.Command(pmacctd, "-f", cf)
			// pmacctd forks a process per plugin: run them in their own group
			// and end the group.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			cmd.Stderr, cmd.Stdout = logf, logf
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() }()
			stderr := func() string { b, _ := os.ReadFile(logf.Name()); return string(b) }
			waitCapturing(t, hostIf, stderr)
			replay(t, ns, nsIf, pcap)
			pkts, byts, docs, kinds := c.waitFor(t, want, 20*time.Second)
			t.Logf("pmacctd %s: %d documents %v, %d packets, %d bytes (capture: %d flows, %d packets, %d bytes)",
				plugin, docs, kinds, pkts, byts, want.flows, want.packets, want.bytes)
			if pkts != want.packets || byts != want.bytes {
				t.Errorf("documents add up to %d packets and %d bytes, capture has %d and %d\npmacctd: %s", pkts, byts, want.packets, want.bytes, stderr())
			}
		})
	}
}

// TestSoftflowdMACs: softflowd tracking Ethernet addresses (-T ether)
// sends the source MAC as sourceMacAddress (56) and the destination MAC as
// postDestinationMacAddress (57, NetFlow v9's OUT_DST_MAC), with no
// destinationMacAddress (80), as Cisco's NetFlow v9 does: every document
// has both MACs of the capture, in NetFlow v9 and IPFIX. softflowd reads
// the capture file itself (-r).
func TestSoftflowdMACs(t *testing.T) {
	softflowd := testutil.Command(t, "softflowd")
	for _, version := range []string{"9", "10"} {
		t.Run("v"+version, func(t *testing.T) {
			dir := t.TempDir()
			pcap := filepath.Join(dir, "flows.pcap")
			want := writeCapture(t, pcap)
			c := startCollector(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, softflowd, "-d", "-r", pcap, "-n", c.addr, "-v", version, "-T", "ether").CombinedOutput()
			if err != nil {
				t.Fatalf("softflowd -r: %v\n%s", err, out)
			}
			if pkts, _, _, _ := c.waitFor(t, want, 10*time.Second); pkts != want.packets {
				t.Fatalf("documents add up to %d packets, capture has %d\nsoftflowd: %s", pkts, want.packets, out)
			}
			docs := 0
			for _, line := range strings.Split(strings.TrimSpace(c.out.String()), "\n") {
				var d struct {
					Event       struct{ Action string }
					Source      struct{ IP, MAC string }
					Destination struct{ MAC string }
				}
				if err := json.Unmarshal([]byte(line), &d); err != nil {
					t.Fatalf("bad document %v: %s", err, line)
				}
				if d.Event.Action != "network_flow" {
					continue
				}
				docs++
				// writeCapture: 10.1.FL.1, MAC 02:00:00:00:00:FL, to 02:00:00:00:01:01.
				ip := net.ParseIP(d.Source.IP).To4()
				if ip == nil {
					t.Fatalf("source %q", d.Source.IP)
				}
				if wantSrc := fmt.Sprintf("02-00-00-00-00-%02X", ip[2]); d.Source.MAC != wantSrc || d.Destination.MAC != "02-00-00-00-01-01" {
					t.Errorf("flow from %s: source.mac %q, destination.mac %q; want %s and 02-00-00-00-01-01", d.Source.IP, d.Source.MAC, d.Destination.MAC, wantSrc)
				}
			}
			if docs < want.flows {
				t.Errorf("%d documents, capture has %d flows", docs, want.flows)
			}
		})
	}
}

// TestFprobeICMP: fprobe (NetFlow v5) puts an ICMP flow's type in the
// source port and its code in the destination port, where routers put
// type × 256 + code in the destination port: each type and code of the
// capture reaches the document, whichever way.
func TestFprobeICMP(t *testing.T) {
	fprobe := testutil.Command(t, "fprobe")
	dir := t.TempDir()
	pcap := filepath.Join(dir, "icmp.pcap")
	w := newCaptureWriter(t, pcap)
	// Source 10.1.N.1 sends type and code kinds[N], twice.
	kinds := [][2]uint8{{8, 0}, {0, 0}, {3, 3}, {11, 1}, {5, 2}, {3, 13}}
	for range kinds {
		w.tr.flows++
	}
	for n, k := range kinds {
		for range 2 {
			eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, byte(n)}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 1, 1}, EthernetType: layers.EthernetTypeIPv4}
			ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: net.IPv4(10, 1, byte(n), 1), DstIP: net.IPv4(10, 1, 200, 1)}
			icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(k[0], k[1])}
			w.frame(eth, ip, icmp, gopacket.Payload(make([]byte, 32)))
		}
	}
	want := w.close()
	hostIf, ns, nsIf := veth(t, "fp")
	c := startCollector(t)
	// -l 2: log to stdout, in the foreground; SIGTERM exports every flow.
	cmd := exec.Command(fprobe, "-l", "2:"+hostIf, "-i", hostIf, "-f", "icmp", c.addr)
	var log testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	waitCapturing(t, hostIf, log.String)
	replay(t, ns, nsIf, pcap)
	time.Sleep(500 * time.Millisecond) // the filler has pushed the last frames to fprobe
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if pkts, _, _, _ := c.waitFor(t, want, 10*time.Second); pkts != want.packets {
		t.Fatalf("documents add up to %d packets, capture has %d\nfprobe: %s", pkts, want.packets, log.String())
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(c.out.String()), "\n") {
		var d struct {
			Event   struct{ Action string }
			Source  struct{ IP string }
			Netflow struct {
				Type *uint8 `json:"icmp_type_ipv4"`
				Code *uint8 `json:"icmp_code_ipv4"`
			}
		}
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("bad document %v: %s", err, line)
		}
		ip := net.ParseIP(d.Source.IP).To4()
		if d.Event.Action != "network_flow" || ip == nil || ip[0] != 10 || ip[1] != 1 || int(ip[2]) >= len(kinds) {
			continue
		}
		seen++
		k := kinds[ip[2]]
		if d.Netflow.Type == nil || d.Netflow.Code == nil || *d.Netflow.Type != k[0] || *d.Netflow.Code != k[1] {
			t.Errorf("flow from %s: icmp type/code %v/%v, want %d/%d\n%s", d.Source.IP, deref(d.Netflow.Type), deref(d.Netflow.Code), k[0], k[1], line)
		}
	}
	if seen != len(kinds) {
		t.Errorf("%d ICMP documents, capture has %d flows", seen, len(kinds))
	}
}

func deref(p *uint8) any {
	if p == nil {
		return nil
	}
	return *p
}

// captureWriter writes frames to a pcap file, a millisecond apart, and
// keeps the truth of their IP packets.
type captureWriter struct {
	t  *testing.T
	f  *os.File
	w  *pcapgo.Writer
	ts time.Time
	tr truth
}

func newCaptureWriter(t *testing.T, path string) *captureWriter {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	c := &captureWriter{t: t, f: f, w: pcapgo.NewWriter(f), ts: time.Now()}
	if err := c.w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	return c
}

// frame writes the layers (lengths and checksums computed) as the next
// frame, an Ethernet frame, and counts its IP packet.
func (c *captureWriter) frame(ls ...gopacket.SerializableLayer) {
	c.t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		c.t.Fatal(err)
	}
	data := buf.Bytes()
	c.ts = c.ts.Add(time.Millisecond)
	if err := c.w.WritePacket(gopacket.CaptureInfo{Timestamp: c.ts, CaptureLength: len(data), Length: len(data)}, data); err != nil {
		c.t.Fatal(err)
	}
	c.tr.packets++
	c.tr.bytes += uint64(len(data) - 14)
}

// close ends the file and returns the truth of its packets.
func (c *captureWriter) close() truth {
	if err := c.f.Close(); err != nil {
		c.t.Fatal(err)
	}
	return c.tr
}
