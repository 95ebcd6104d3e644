package pcapreplay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/ip4defrag"
	"github.com/google/gopacket/layers"

	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/internal/pcapfile"
	"github.com/spanflow/spanflow/internal/testutil"
)

// datagram is one datagram Read handed on, with a copy of its payload.
type datagram struct {
	src, dst netip.AddrPort
	at       time.Time
	payload  []byte
}

func readAll(t *testing.T, read func(string, func(decoders.Datagram, netip.AddrPort) error) (Stats, error), path string) ([]datagram, Stats, error) {
	t.Helper()
	var out []datagram
	st, err := read(path, func(dg decoders.Datagram, dst netip.AddrPort) error {
		out = append(out, datagram{dg.Source, dst, dg.Received, bytes.Clone(dg.Payload)})
		return nil
	})
	return out, st, err
}

// gopacketDiffers are the captures of the shared test data where Read
// differs from gopacket, on purpose, and why. None holds flow exports.
var gopacketDiffers = map[string]string{}

func init() {
	for reason, names := range map[string][]string{
		// gopacket takes the first IPv4 (or IPv6) layer and the first UDP
		// layer wherever they are, mixing a tunnel's outer addresses with
		// its inner datagram (or the reverse); Read takes the UDP payload
		// of the outermost IP packet and does not enter tunnels.
		"tunnel": {"mirror/akvorado/gre-v4-plain.pcap", "mirror/akvorado/vlan-ipv6.pcap", "mirror/ndpi/4in4tunnel.pcap",
			"mirror/ndpi/6in4tunnel.pcap", "mirror/ndpi/6in6tunnel.pcap", "mirror/ndpi/gre.pcapng", "mirror/tcpdump/erspan-type-ii-2.pcap",
			"mirror/tcpdump/gso-ipv6-geneve-ipv4.pcap", "mirror/tcpdump/gso-ipv6-vxlan-ipv4.pcap", "mirror/zeek/erspan.pcap",
			"mirror/zeek/tunnels-4in4.pcap", "mirror/zeek/tunnels-6in4.pcap", "mirror/zeek/tunnels-6in6.pcap", "mirror/zeek/tunnels-6in6in6.pcap",
			"mirror/zeek/tunnels-gre-pptp.pcap", "mirror/zeek/tunnels-gre-sample.pcap", "mirror/zeek/tunnels-gre-within-gre.pcap"},
		// IPv4 packets over 64 KiB (length 0, segmentation offload):
		// gopacket wraps the frame's length at 65536.
		"big TCP": {"mirror/tcpdump/bigtcp-ipv4-geneve-ipv4.pcap", "mirror/tcpdump/bigtcp-ipv4-geneve-ipv6.pcap",
			"mirror/tcpdump/bigtcp-ipv4-vxlan-ipv4.pcap", "mirror/tcpdump/bigtcp-ipv4-vxlan-ipv6.pcap"},
		// gopacket fails on segment routing and mobility extension
		// headers; Read walks over them to the UDP header.
		"IPv6 extension header": {"mirror/tcpdump/ipv6-srh-insert-cksum.pcap", "mirror/zeek/ipv6-mobility-dst-opts.pcap"},
		// The UDP header is cut off: gopacket hands on an empty
		// datagram with ports 0.
		"no UDP header": {"malformed/tcpdump/udp-length-heapoverflow.pcap"},
	} {
		for _, n := range names {
			gopacketDiffers[n] = reason
		}
	}
}

// TestSameAsGopacket: on every capture of the shared test data (flow
// exports, mirrored traffic, malformed frames), Read hands on the same
// datagrams (addresses, ports, times, payloads), in the same order, with
// the same counts, as gopacket's decoding and IPv4 defragmenter did when
// Read used them; but for the captures of gopacketDiffers.
func TestSameAsGopacket(t *testing.T) {
	root := testutil.SharedTestdata(t)
	var captures, datagrams, fragmented int
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".pcap") || strings.HasSuffix(path, ".pcapng") || strings.HasSuffix(path, ".cap")) {
			return err
		}
		name := strings.TrimPrefix(path, root+"/")
		got, gst, gerr := readAll(t, Read, path)
		want, wst, werr := readAll(t, readGopacket, path)
		if (gerr == nil) != (werr == nil) {
			t.Errorf("%s: error %v, gopacket %v", name, gerr, werr)
			return nil
		}
		captures++
		datagrams += len(want)
		if reason, ok := gopacketDiffers[name]; ok {
			t.Logf("%s (%s): %+v, gopacket %+v", name, reason, gst, wst)
			return nil
		}
		if gst != wst {
			t.Errorf("%s: %+v, gopacket %+v", name, gst, wst)
		}
		for i := range min(len(got), len(want)) {
			g, w := got[i], want[i]
			if g.src != w.src || g.dst != w.dst || !g.at.Equal(w.at) || !bytes.Equal(g.payload, w.payload) {
				t.Errorf("%s: datagram %d: %v > %v at %v, %d bytes; gopacket %v > %v at %v, %d bytes", name, i, g.src, g.dst, g.at, len(g.payload), w.src, w.dst, w.at, len(w.payload))
				break
			}
		}
		if n := countFragments(t, path); n > 0 {
			fragmented++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d captures, %d datagrams, %d captures with IPv4 fragments", captures, datagrams, fragmented)
	if captures < 100 || fragmented == 0 {
		t.Errorf("%d captures, %d with fragments: the test data is not all there", captures, fragmented)
	}
}

// countFragments counts the IPv4 fragments of a capture.
func countFragments(t *testing.T, path string) int {
	r, err := pcapfile.Open(path)
	if err != nil {
		return 0
	}
	defer r.Close()
	var fr pcapfile.Frame
	var ip ipPacket
	n := 0
	for r.Next(&fr) == nil {
		if parseFrame(fr.LinkType, fr.Data, &ip) && ip.fragment() {
			n++
		}
	}
	return n
}

// TestDefragment: fragments in any order, repeated or overlapping, give
// the datagram once its last byte came; a fragment beyond 64 KiB is an
// error.
func TestDefragment(t *testing.T) {
	payload := make([]byte, 3000)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	frag := func(off, n int, more bool) *ipPacket {
		return &ipPacket{src: netip.MustParseAddr("192.0.2.1"), dst: netip.MustParseAddr("192.0.2.2"), proto: 17, id: 9,
			fragOffset: uint16(off / 8), moreFrags: more, payload: payload[off : off+n]}
	}
	for _, order := range [][]*ipPacket{
		{frag(0, 1480, true), frag(1480, 1480, true), frag(2960, 40, false)},
		{frag(2960, 40, false), frag(0, 1480, true), frag(1480, 1480, true)},
		{frag(1480, 1480, true), frag(1480, 1480, true), frag(2960, 40, false), frag(0, 1600, true)},
	} {
		var d defragmenter
		for i, f := range order {
			whole, err := d.add(f)
			if err != nil {
				t.Fatal(err)
			}
			if last := i == len(order)-1; (whole != nil) != last || last && !bytes.Equal(whole, payload) {
				t.Fatalf("fragment %d: %d bytes", i, len(whole))
			}
		}
		if len(d.pending) != 0 {
			t.Errorf("%d datagrams still pending", len(d.pending))
		}
	}
	var d defragmenter
	big := &ipPacket{fragOffset: 8183, moreFrags: true, payload: make([]byte, 100)}
	if _, err := d.add(big); err == nil {
		t.Error("a fragment past 64 KiB was taken")
	}
}

// FuzzParseFrame: no frame makes the parser fail or hand on a payload
// that is not inside the frame; on Ethernet frames that gopacket decodes
// without error, it finds the same UDP datagram.
func FuzzParseFrame(f *testing.F) {
	f.Add(uint32(1), []byte("\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x02\x08\x00E\x00\x00\x1c\x00\x01\x00\x00@\x11\x00\x00\xc0\x00\x02\x01\xc0\x00\x02\x02\x04\x00\x08\x07\x00\x08\x00\x00"))
	f.Fuzz(func(t *testing.T, link uint32, data []byte) {
		var ip ipPacket
		if !parseFrame(link%120, data, &ip) {
			return
		}
		if len(ip.payload) > 0 && !inside(ip.payload, data) {
			t.Fatal("payload outside the frame")
		}
		if ip.proto != 17 || ip.fragment() || link%120 != linkEthernet {
			return
		}
		sport, dport, payload, ok := udpDatagram(ip.payload)
		// Not lazily: a lazy packet hands out a layer that failed to decode.
		pkt := gopacket.NewPacket(data, layers.LinkTypeEthernet, gopacket.DecodeOptions{NoCopy: true})
		if pkt.ErrorLayer() != nil {
			return // gopacket keeps a layer that failed to decode
		}
		udp, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if _, isV4 := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); !isV4 {
			if _, isV6 := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6); !isV6 {
				return
			}
		}
		if ok != (udp != nil) {
			t.Fatalf("udp %v, gopacket %v", ok, udp != nil)
		}
		if ok && (uint16(udp.SrcPort) != sport || uint16(udp.DstPort) != dport || !bytes.Equal(udp.Payload, payload)) {
			t.Fatalf("udp %d > %d %x, gopacket %d > %d %x", sport, dport, payload, udp.SrcPort, udp.DstPort, udp.Payload)
		}
	})
}

func inside(s, in []byte) bool {
	if len(in) == 0 {
		return false
	}
	off := cap(in) - cap(s)
	return off >= 0 && off+len(s) <= len(in) && &in[off] == &s[0]
}

// readGopacket is Read as it was with gopacket's layers and IPv4
// defragmenter: the reference of TestSameAsGopacket.
func readGopacket(path string, fn func(dg decoders.Datagram, dst netip.AddrPort) error) (Stats, error) {
	var st Stats
	r, err := pcapfile.Open(path)
	if err != nil {
		return st, err
	}
	defer r.Close()
	defrag := ip4defrag.NewIPv4Defragmenter()
	var fr pcapfile.Frame
	for {
		err := r.Next(&fr)
		if errors.Is(err, io.EOF) {
			return st, nil
		}
		if err != nil {
			return st, fmt.Errorf("read %s: %w", path, err)
		}
		st.Frames++
		first := gopacketFirstLayer(layers.LinkType(fr.LinkType))
		ts := time.Unix(0, fr.Timestamp).UTC()
		pkt := gopacket.NewPacket(fr.Data, first, gopacket.DecodeOptions{NoCopy: true, Lazy: true})
		var srcIP, dstIP netip.Addr
		var udp *layers.UDP
		if ip4, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
			if ip4.Flags&layers.IPv4MoreFragments != 0 || ip4.FragOffset != 0 {
				// The defragmenter keeps the fragments until the last one:
				// they must outlive the reader's buffer.
				pkt = gopacket.NewPacket(slices.Clone(fr.Data), first, gopacket.DecodeOptions{NoCopy: true, Lazy: true})
				ip4, _ = pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				whole, err := defrag.DefragIPv4WithTimestamp(ip4, ts)
				if err != nil || whole == nil {
					if err != nil {
						st.Skipped++
					}
					continue
				}
				p := gopacket.NewPacket(whole.Payload, whole.NextLayerType(), gopacket.DecodeOptions{NoCopy: true})
				udp, _ = p.Layer(layers.LayerTypeUDP).(*layers.UDP)
				ip4 = whole
			} else {
				udp, _ = pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
			}
			srcIP, _ = netip.AddrFromSlice(ip4.SrcIP.To4())
			dstIP, _ = netip.AddrFromSlice(ip4.DstIP.To4())
		} else if ip6, ok := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
			udp, _ = pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
			srcIP, _ = netip.AddrFromSlice(ip6.SrcIP.To16())
			dstIP, _ = netip.AddrFromSlice(ip6.DstIP.To16())
		}
		if udp == nil || !srcIP.IsValid() {
			st.Skipped++
			continue
		}
		st.Datagrams++
		dg := decoders.Datagram{Source: netip.AddrPortFrom(srcIP.Unmap(), uint16(udp.SrcPort)), Payload: udp.Payload, Received: ts}
		if err := fn(dg, netip.AddrPortFrom(dstIP.Unmap(), uint16(udp.DstPort))); err != nil {
			return st, err
		}
	}
}

func gopacketFirstLayer(link layers.LinkType) gopacket.Decoder {
	switch link {
	case 12, 14: // DLT_RAW on some systems
		return layers.LinkTypeRaw
	case 228:
		return layers.LayerTypeIPv4
	case 229:
		return layers.LayerTypeIPv6
	}
	return link
}
