package main

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/spanflow/spanflow/internal/testutil"
)

// flowDocs counts the flow documents (those with a destination) in an
// NDJSON file.
func flowDocs(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var doc struct{ Destination struct{ IP string } }
		if json.Unmarshal(sc.Bytes(), &doc) == nil && doc.Destination.IP != "" {
			n++
		}
	}
	return n
}

// TestExporterPcapRateStopsOnSignal: `exporter run --pcap FILE --pcap-rate
// 5` replays a capture of 40,000 one-packet flows (some 2,000 IPFIX
// messages: 400 s at that rate) to a real collector process, and gets
// SIGTERM once the collector has its first flows. The exporter must stop
// reading the capture and send what its meter holds at once, unpaced:
// every flow its summary counts as exported is in the collector's output,
// and fewer than the capture's packets were read. Before, it went on at
// 5 messages a second, and the guard below ran out.
func TestExporterPcapRateStopsOnSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts spanflow processes: skipped under -short")
	}
	dir := t.TempDir()
	const packets = 40000
	frames := make([][]byte, packets)
	for i := range frames {
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
			EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
			SrcIP: net.IPv4(10, 1, byte(i>>8), byte(i)), DstIP: net.IPv4(10, 2, 0, 1)}
		udp := &layers.UDP{SrcPort: layers.UDPPort(1024 + i%60000), DstPort: 53}
		udp.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			eth, ip, udp, gopacket.Payload("query")); err != nil {
			t.Fatal(err)
		}
		frames[i] = buf.Bytes()
	}
	pcap := filepath.Join(dir, "flows.pcap")
	testutil.WritePcap(t, pcap, 1, time.Unix(1700000000, 0), frames) // a packet a second: flows end as it is read

	addr := testutil.FreeAddr(t, "udp")
	out := filepath.Join(dir, "flows.ndjson")
	col := startCollector(t, "--ipfix-listen", addr, "--output", "file:"+out)
	x := spanflowProcess(t, "exporter", "run", "--pcap", pcap, "--pcap-rate", "5", "--collector", addr, "--metrics-listen", "")
	var xout testutil.SyncBuffer
	x.Stdout, x.Stderr = &xout, &xout
	if err := x.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- x.Wait() }()
	t.Cleanup(func() { x.Process.Kill() })
	for deadline := time.Now().Add(60 * time.Second); flowDocs(t, out) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no flow at the collector within 60s; exporter:\n%s", xout.String())
		}
	}
	if err := x.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exporter after SIGTERM: %v\n%s", err, xout.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the exporter still replays at its paced rate 60s after SIGTERM (%d flows at the collector)", flowDocs(t, out))
	}
	m := regexp.MustCompile(`spanflow exporter: ([\d,]+) packets?, .*?([\d,]+) flows? exported`).FindStringSubmatch(xout.String())
	if m == nil {
		t.Fatalf("no summary in the exporter's output:\n%s", xout.String())
	}
	read, _ := strconv.Atoi(strings.ReplaceAll(m[1], ",", ""))
	exported, _ := strconv.Atoi(strings.ReplaceAll(m[2], ",", ""))
	if read == 0 || read >= packets {
		t.Errorf("the exporter read %d of the capture's %d packets after SIGTERM; want it to stop reading", read, packets)
	}
	got := 0
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if got = flowDocs(t, out); got >= exported || time.Now().After(deadline) {
			break
		}
	}
	col.Process.Signal(os.Interrupt)
	col.Wait()
	got = flowDocs(t, out)
	t.Logf("%s; the collector has %d flows", m[0], got)
	if got != exported || exported == 0 {
		t.Errorf("the collector has %d flows; the exporter says it exported %d (summary %q)", got, exported, m[0])
	}
}
