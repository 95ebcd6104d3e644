package ipfixgen

import (
	"net/netip"
	"testing"
	"time"

	"github.com/spanflow/spanflow/decoders/sflow"
	"github.com/spanflow/spanflow/internal/flow"
)

// The datagrams decode, with spanflow's sFlow decoder, into the flows the
// generator says it sent: one per sample, its addresses and ports, and
// bytes and packets scaled by the rate adding up to Bytes.
func TestSFlowGeneratorDecodes(t *testing.T) {
	agent := netip.MustParseAddr("127.9.0.7")
	g := NewSFlow(agent, 7, 5, 512)
	var recs []flow.Record
	var bytes uint64
	for d := range 3 {
		var err error
		var info sflow.Info
		n := len(recs)
		recs, info, err = sflow.Decode(g.AppendData(nil), netip.MustParseAddr("192.0.2.1"), time.Unix(1764000000, 0), recs)
		if err != nil {
			t.Fatal(err)
		}
		if info.Agent != agent || info.SubAgent != 7 || info.Sequence != uint32(d+1) || info.FlowRecords != 5 || info.BadHeaders != 0 {
			t.Fatalf("datagram %d: %+v", d, info)
		}
		for i, r := range recs[n:] {
			j := uint64(n + i)
			if want := netip.AddrFrom4([4]byte{10, 0, 0, byte(j)}); r.SrcAddr != want || r.DstAddr != netip.MustParseAddr("10.255.0.1") ||
				r.SrcPort != uint16(1024+j) || r.DstPort != 443 || r.Proto != 6 || r.ObserverIP != agent || r.ObservationDomain != 7 {
				t.Errorf("flow %d: %+v", j, r)
			}
			if r.Bytes != (100+j)*512 || r.Packets != 512 || r.SamplingRate != 512 {
				t.Errorf("flow %d: %d bytes, %d packets, rate %d; want %d, 512, 512", j, r.Bytes, r.Packets, r.SamplingRate, (100+j)*512)
			}
			bytes += r.Bytes
		}
	}
	if len(recs) != 15 || g.Flows() != 15 || g.Bytes() != bytes {
		t.Errorf("%d records, generator says %d flows; %d bytes decoded, generator says %d", len(recs), g.Flows(), bytes, g.Bytes())
	}
	if g.Template() != nil {
		t.Error("sFlow has no template")
	}
}
