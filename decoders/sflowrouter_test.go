package decoders_test

import (
	"net/netip"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/testutil"
)

// extraStr returns the string value of a record's extra field.
func extraStr(r *flow.Record, name string) (string, bool) {
	for _, e := range r.Extra {
		if e.Name == name && e.IsStr {
			return e.Str, true
		}
	}
	return "", false
}

// TestSFlowRouterGatewayNextHops checks what the extended router (1002)
// and extended gateway (1003) records of the shared sFlow captures give,
// against tshark: the router's next hop and the source and destination
// prefix lengths, the gateway's (BGP) next hop, under the names NetFlow
// and IPFIX give them (ip_next_hop_ipv4_address, bgp_next_hop_...,
// source_ipv4_prefix_length, ...).
func TestSFlowRouterGatewayNextHops(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	checked := 0
	for _, name := range []string{"akvorado/sflow/data-1140.pcap", "tcpdump/sflow_expanded.pcap"} {
		path := filepath.Join(testutil.SharedTestdata(t), "flows", name)
		got := decodeCapture(t, path)
		var recs []*flow.Record
		for i := range got.records {
			if r := &got.records[i]; r.Kind == flow.KindSFlow && r.Counters == nil && r.SFlowCounters == nil {
				recs = append(recs, r)
			}
		}
		w := tsharkColumns(t, tshark, tsharkArgs(path, got.ports), []string{"sflow.flow_sample.flow_record",
			"sflow_245.flow_record_format", "sflow_245.nexthop", "sflow_245.nexthop.src_mask", "sflow_245.nexthop.dst_mask"})
		counts, formats := w["sflow.flow_sample.flow_record"], w["sflow_245.flow_record_format"]
		hops, srcMasks, dstMasks := w["sflow_245.nexthop"], w["sflow_245.nexthop.src_mask"], w["sflow_245.nexthop.dst_mask"]
		if len(counts) != len(recs) {
			t.Fatalf("%s: %d flow samples, tshark %d", name, len(recs), len(counts))
		}
		for i, r := range recs {
			n, _ := strconv.Atoi(counts[i])
			want := map[string]string{}
			for range n {
				switch formats[0] {
				case "1002":
					a := netip.MustParseAddr(hops[0])
					fam := "ipv6"
					if r.SrcAddr.Is4() {
						fam = "ipv4"
					}
					if a.Is4() {
						want["ip_next_hop_ipv4_address"] = a.String()
					} else {
						want["ip_next_hop_ipv6_address"] = a.String()
					}
					want["source_"+fam+"_prefix_length"] = srcMasks[0]
					want["destination_"+fam+"_prefix_length"] = dstMasks[0]
					hops, srcMasks, dstMasks = hops[1:], srcMasks[1:], dstMasks[1:]
				case "1003":
					if a := netip.MustParseAddr(hops[0]); !a.IsUnspecified() {
						if a.Is4() {
							want["bgp_next_hop_ipv4_address"] = a.String()
						} else {
							want["bgp_next_hop_ipv6_address"] = a.String()
						}
					}
					hops = hops[1:]
				}
				formats = formats[1:]
			}
			for k, v := range want {
				checked++
				s, ok := extraStr(r, k)
				if !ok {
					var x uint64
					x, ok = extra(r, k)
					s = strconv.FormatUint(x, 10)
				}
				if !ok || s != v {
					t.Errorf("%s sample %d (%v > %v): %s = %q (present %v), tshark %s", name, i, r.SrcAddr, r.DstAddr, k, s, ok, v)
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no extended router or gateway record: not the captures this test expects")
	}
}
