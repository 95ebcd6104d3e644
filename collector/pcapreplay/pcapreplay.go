// Package pcapreplay reads the flow datagrams (UDP payloads) out of a pcap
// or pcapng capture, so a capture can run through the collector's pipeline
// exactly as if its datagrams had arrived on the listeners.
package pcapreplay

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/ip4defrag"
	"github.com/google/gopacket/layers"

	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/internal/pcapfile"
)

// Stats says what the capture held besides flow datagrams.
type Stats struct {
	Frames    int // frames read
	Datagrams int // UDP datagrams handed on
	Skipped   int // frames that are not UDP over IP (or that did not decode)
}

// Read calls fn with every UDP datagram of the capture, in capture order,
// with the capture's timestamps as receive times. IPv4 fragments are
// reassembled. The payload passed to fn is only valid during the call. fn
// returning an error stops the read.
func Read(path string, fn func(dg decoders.Datagram, dst netip.AddrPort) error) (Stats, error) {
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
		first := firstLayer(layers.LinkType(fr.LinkType))
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

func firstLayer(link layers.LinkType) gopacket.Decoder {
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
