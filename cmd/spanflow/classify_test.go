package main

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// The real command line classifies flows to multicast groups and on the
// link as their own locality and direction: a capture of one UDP packet
// to each kind of address goes through `spanflow exporter run --pcap` to a
// `spanflow collector run` process with a networks file that lists a part
// of 169.254.0.0/16 (which wins there).
func TestCollectorClassifiesLinkLocalAndMulticast(t *testing.T) {
	if testing.Short() {
		t.Skip("starts spanflow processes: skipped under -short")
	}
	dir := t.TempDir()
	want := map[string]string{ // destination → flow.direction
		"224.0.0.251": "multicast", "239.255.255.250": "multicast", "ff02::fb": "multicast", "ff05::1:3": "multicast",
		"255.255.255.255": "link-local", "169.254.1.1": "link-local", "fe80::1": "link-local",
		"169.254.169.254": "east-west", // listed in the networks file
		"10.0.0.2":        "east-west", "198.51.100.7": "north-south",
	}
	pcap := filepath.Join(dir, "special.pcap")
	f, err := os.Create(pcap)
	if err != nil {
		t.Fatal(err)
	}
	w := pcapgo.NewWriter(f)
	w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	ts := time.Unix(1700000000, 0)
	for dst := range want {
		d := net.ParseIP(dst)
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}}
		udp := &layers.UDP{SrcPort: 5353, DstPort: 5353}
		var ip gopacket.SerializableLayer
		if d.To4() != nil {
			eth.EthernetType = layers.EthernetTypeIPv4
			ip4 := &layers.IPv4{Version: 4, TTL: 1, Protocol: layers.IPProtocolUDP, SrcIP: net.ParseIP("10.0.0.1"), DstIP: d}
			udp.SetNetworkLayerForChecksum(ip4)
			ip = ip4
		} else {
			eth.EthernetType = layers.EthernetTypeIPv6
			src := "fe80::2"
			if dst == "ff05::1:3" {
				src = "fd00::1"
			}
			ip6 := &layers.IPv6{Version: 6, HopLimit: 1, NextHeader: layers.IPProtocolUDP, SrcIP: net.ParseIP(src), DstIP: d}
			udp.SetNetworkLayerForChecksum(ip6)
			ip = ip6
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload("hello")); err != nil {
			t.Fatal(err)
		}
		w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(buf.Bytes()), Length: len(buf.Bytes())}, buf.Bytes())
		ts = ts.Add(time.Millisecond)
	}
	f.Close()
	nets := filepath.Join(dir, "networks.yaml")
	os.WriteFile(nets, []byte("10.0.0.0/8: {name: dc}\nfd00::/8: {name: dc6}\n169.254.169.0/24: {name: metadata}\n"), 0o644)

	port := func() string {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	}()
	out := filepath.Join(dir, "flows.ndjson")
	col := startCollector(t, "--ipfix-listen", port, "--networks", nets, "--output", "file:"+out)
	if b, err := spanflowProcess(t, "exporter", "run", "--pcap", pcap, "--collector", port).CombinedOutput(); err != nil {
		t.Fatalf("exporter run: %v\n%s", err, b)
	}
	got := map[string]string{}
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		f, err := os.Open(out)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var doc struct {
				Destination struct{ IP string }
				Flow        struct{ Locality, Direction string }
			}
			if json.Unmarshal(sc.Bytes(), &doc) == nil && doc.Destination.IP != "" {
				got[doc.Destination.IP] = doc.Flow.Locality + " " + doc.Flow.Direction
			}
		}
		f.Close()
	}
	col.Process.Signal(os.Interrupt)
	for dst, dir := range want {
		locality := map[string]string{"east-west": "internal", "north-south": "external"}[dir]
		if locality == "" {
			locality = dir
		}
		if got[dst] != locality+" "+dir {
			t.Errorf("flow to %s: %q, want %q", dst, got[dst], locality+" "+dir)
		}
	}
	if t.Failed() {
		t.Logf("every flow: %v", got)
	}
}
