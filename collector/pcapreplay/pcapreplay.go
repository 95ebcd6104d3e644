// Package pcapreplay reads the flow datagrams (UDP payloads) out of a pcap
// or pcapng capture, so a capture can run through the collector's pipeline
// exactly as if its datagrams had arrived on the listeners.
package pcapreplay

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

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
	var defrag defragmenter
	var fr pcapfile.Frame
	var ip ipPacket
	for {
		err := r.Next(&fr)
		if errors.Is(err, io.EOF) {
			return st, nil
		}
		if err != nil {
			return st, fmt.Errorf("read %s: %w", path, err)
		}
		st.Frames++
		if !parseFrame(fr.LinkType, fr.Data, &ip) {
			st.Skipped++
			continue
		}
		payload := ip.payload
		if ip.fragment() {
			if ip.dontFrag {
				// A fragment marked "don't fragment" is not one to
				// trust (gopacket skipped it too).
				st.Skipped++
				continue
			}
			whole, err := defrag.add(&ip)
			if err != nil {
				st.Skipped++
				continue
			}
			if whole == nil {
				continue // until its last fragment
			}
			payload = whole
		}
		if ip.proto != 17 {
			st.Skipped++
			continue
		}
		sport, dport, data, ok := udpDatagram(payload)
		if !ok {
			st.Skipped++
			continue
		}
		st.Datagrams++
		dg := decoders.Datagram{Source: netip.AddrPortFrom(ip.src.Unmap(), sport), Payload: data, Received: time.Unix(0, fr.Timestamp).UTC()}
		if err := fn(dg, netip.AddrPortFrom(ip.dst.Unmap(), dport)); err != nil {
			return st, err
		}
	}
}
