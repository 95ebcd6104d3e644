package decoders_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the generated captures in testdata and their tshark decodes")

// ipfixTemplate is a template record: id, then (element, length) pairs.
func ipfixTemplate(id uint16, fields ...uint16) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = binary.BigEndian.AppendUint16(b, uint16(len(fields)/2))
	for _, f := range fields {
		b = binary.BigEndian.AppendUint16(b, f)
	}
	return b
}

// varlen is a variable-length field value (RFC 7011 §7).
func varlen(v []byte) []byte {
	if len(v) < 255 {
		return append([]byte{byte(len(v))}, v...)
	}
	b := []byte{255}
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

// flowDatagram wraps an IPFIX message into the Ethernet/IPv4/UDP frame of
// an exporter (192.0.2.1) sending to a collector on 4739.
func flowDatagram(msg []byte) []byte {
	udp := synth.UDP(50000, 4739, msg)
	ip := synth.IPv4(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), 17, 0, 1, 0, false, udp)
	return synth.Ethernet(synth.MAC(1), synth.MAC(2), nil, 0x0800, ip)
}

// sectionCapture is a router's IPFIX export of two sampled packets, as
// packet sections: an IPv6 TCP packet as ipHeaderPacketSection (the first
// 64 bytes of the IP packet, as Nokia and Cisco export them), and a QinQ
// IPv4 UDP frame as dataLinkFrameSection with its dataLinkFrameSize (as
// Juniper does); both sampled 1 in 1000 (samplingPacketInterval).
func sectionCapture() []byte {
	var buf bytes.Buffer
	if err := synth.WritePcap(&buf, []synth.Packet{{Time: 1764849600e9, Data: flowDatagram(sectionMessage())}}); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// sectionMessage is the IPFIX message of sectionCapture.
func sectionMessage() []byte {
	a6, b6 := netip.MustParseAddr("2001:db8:10::1"), netip.MustParseAddr("2001:db8:20::2")
	tcp := synth.TCP(443, 51000, 1, 1, 0x12, 1024, 1200)
	ip6 := synth.IPv6(a6, b6, 6, 0, tcp)
	a4, b4 := netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("203.0.113.9")
	udp := synth.UDP(5353, 53, make([]byte, 400))
	ip4 := synth.IPv4(a4, b4, 17, 0x28, 7, 0, false, udp)
	frame := synth.Ethernet(synth.MAC(0x11), synth.MAC(0x22), []synth.Tag{{TPID: 0x88a8, VID: 300}, {TPID: 0x8100, VID: 42}}, 0x0800, ip4)

	const tIP, tL2 = 256, 257
	tpl := set(2, append(
		ipfixTemplate(tIP, 10, 4, 305, 4, 313, 0xffff),
		ipfixTemplate(tL2, 10, 4, 305, 4, 312, 2, 315, 0xffff)...))
	var rec1 []byte
	rec1 = binary.BigEndian.AppendUint32(rec1, 7)
	rec1 = binary.BigEndian.AppendUint32(rec1, 1000)
	rec1 = append(rec1, varlen(ip6[:64])...)
	var rec2 []byte
	rec2 = binary.BigEndian.AppendUint32(rec2, 9)
	rec2 = binary.BigEndian.AppendUint32(rec2, 1000)
	rec2 = binary.BigEndian.AppendUint16(rec2, uint16(len(frame)+4)) // with its FCS
	rec2 = append(rec2, varlen(frame[:96])...)
	return ipfixMessage(tpl, set(tIP, rec1), set(tL2, rec2))
}

// tsharkSectionFields are what the expected decode lists, per record.
var tsharkSectionFields = []string{"cflow.data_link_frame_size", "cflow.sampling_packet_interval",
	"eth.src", "eth.dst", "ieee8021ad.id", "vlan.id", "ip.src", "ip.dst", "udp.srcport", "udp.dstport", "cflow.section_header"}

// tsharkHeaderFields are what tshark makes of the ipHeaderPacketSection
// (cflow.section_header), which tshark 4.0 leaves as bytes: dissected
// apart as a raw IP packet.
var tsharkHeaderFields = []string{"ipv6.src", "ipv6.dst", "ipv6.plen", "tcp.srcport", "tcp.dstport", "tcp.flags"}

// rawIPPcap is a pcap of one raw IP packet (LINKTYPE_RAW).
func rawIPPcap(pkt []byte) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, 0xa1b2c3d4)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = append(b, make([]byte, 8)...)
	b = binary.LittleEndian.AppendUint32(b, 65535)
	b = binary.LittleEndian.AppendUint32(b, 101)
	b = append(b, make([]byte, 8)...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(pkt)))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(pkt)))
	return append(b, pkt...)
}

// TestGeneratedPacketSections decodes the generated capture and compares
// it with tshark's decode, kept beside it (testdata/sections.tshark: the
// sections' values after the datagram's own headers); with tshark
// installed the kept decode is checked to be tshark's.
func TestGeneratedPacketSections(t *testing.T) {
	pcap := filepath.Join("testdata", "sections.pcap")
	expected := filepath.Join("testdata", "sections.tshark")
	data := sectionCapture()
	if *update {
		if err := os.WriteFile(pcap, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	kept, err := os.ReadFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(kept, data) {
		t.Fatalf("%s is not what sectionCapture makes: run go test -run TestGeneratedPacketSections -update", pcap)
	}
	if _, err := exec.LookPath("tshark"); err == nil || testutil.InCI() {
		tshark := testutil.Command(t, "tshark")
		vals := tsharkSections(t, tshark, pcap, tsharkSectionFields)
		var b strings.Builder
		for _, f := range tsharkSectionFields {
			b.WriteString(f + "=" + strings.Join(vals[f], ",") + "\n")
		}
		hdr, err := hex.DecodeString(strings.Join(vals["cflow.section_header"], ""))
		if err != nil || len(hdr) == 0 {
			t.Fatalf("tshark shows no ipHeaderPacketSection: %v", err)
		}
		raw := filepath.Join(t.TempDir(), "header.pcap")
		if err := os.WriteFile(raw, rawIPPcap(hdr), 0o644); err != nil {
			t.Fatal(err)
		}
		vals = tsharkFieldSet(t, tshark, []string{"-r", raw}, tsharkHeaderFields...)
		for _, f := range tsharkHeaderFields {
			b.WriteString("section_header." + f + "=" + strings.Join(vals[f], ",") + "\n")
		}
		if *update {
			if err := os.WriteFile(expected, []byte(b.String()), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(expected)
		if err != nil {
			t.Fatal(err)
		}
		if b.String() != string(want) {
			t.Errorf("tshark's decode of %s changed: %s", pcap, testutil.Diff(b.String(), string(want)))
		}
	}
	want := map[string]string{}
	raw, err := os.ReadFile(expected)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		want[k] = v
	}

	recs := decodeFiles(t, pcap)
	if len(recs) != 2 {
		t.Fatalf("got %d records, want 2", len(recs))
	}
	v6, v4 := &recs[0], &recs[1]
	mac := func(m flow.MAC) string { return strings.ToLower(strings.ReplaceAll(m.String(), "-", ":")) }
	// Record 1: the IPv6 header section; bytes are its IP length (40 +
	// payload length) times the sampling interval.
	// Record 2: the frame section; bytes are the frame size times it.
	checks := []struct{ what, got, want string }{
		{"v6 source", v6.SrcAddr.String(), want["section_header.ipv6.src"]},
		{"v6 destination", v6.DstAddr.String(), want["section_header.ipv6.dst"]},
		{"v6 ports", itoa(uint64(v6.SrcPort)) + "," + itoa(uint64(v6.DstPort)), want["section_header.tcp.srcport"] + "," + want["section_header.tcp.dstport"]},
		{"v6 protocol", itoa(uint64(v6.Proto)), "6"},
		{"v6 bytes", itoa(v6.Bytes), itoa((40 + atoi(want["section_header.ipv6.plen"])) * atoi(want["cflow.sampling_packet_interval"][:4]))},
		{"v6 packets", itoa(v6.Packets), "1000"},
		{"v6 tcp flags", fmt.Sprintf("0x%04x", v6.TCPFlags), want["section_header.tcp.flags"]},
		{"v4 source", v4.SrcAddr.String(), want["ip.src"]},
		{"v4 destination", v4.DstAddr.String(), want["ip.dst"]},
		{"v4 ports", itoa(uint64(v4.SrcPort)) + "," + itoa(uint64(v4.DstPort)), want["udp.srcport"] + "," + want["udp.dstport"]},
		{"v4 macs", mac(v4.SrcMAC) + "," + mac(v4.DstMAC), want["eth.src"] + "," + want["eth.dst"]},
		{"v4 vlans", itoa(uint64(v4.VLAN)) + "," + itoa(uint64(v4.InnerVLAN)), want["ieee8021ad.id"] + "," + want["vlan.id"]},
		{"v4 bytes", itoa(v4.Bytes), itoa(atoi(want["cflow.data_link_frame_size"]) * 1000)},
		{"v4 sampling", itoa(uint64(v4.SamplingRate)), "1000"},
		{"v4 tos", itoa(uint64(v4.TOS)), "40"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %s, tshark %s", c.what, c.got, c.want)
		}
	}
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }

func atoi(s string) uint64 {
	var v uint64
	for _, c := range s {
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + uint64(c-'0')
	}
	return v
}
