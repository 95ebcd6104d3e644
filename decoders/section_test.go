package decoders_test

import (
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/spanflow/spanflow/collector/pcapreplay"
	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/testutil"
)

// decodeFiles decodes several captures in order with one decoder (a
// template in one file, its data in the next).
func decodeFiles(t *testing.T, paths ...string) []flow.Record {
	t.Helper()
	dec, err := decoders.New(decoders.DefaultConfiguration())
	if err != nil {
		t.Fatal(err)
	}
	var recs []flow.Record
	for _, p := range paths {
		_, err := pcapreplay.Read(p, func(dg decoders.Datagram, _ netip.AddrPort) error {
			var err error
			recs, _, err = dec.Decode(dg, recs)
			if err != nil {
				t.Errorf("%s: %v", filepath.Base(p), err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return recs
}

// TestPacketSectionsAgainstTshark decodes the records of routers that
// export the sampled frame (dataLinkFrameSection) instead of a 5-tuple, and
// compares addresses, ports, MACs, VLANs and frame sizes with what tshark
// dissects inside the same sections. tshark lists every header of a frame
// (the datagram's own first, then each header of each section, tunnels
// included), so spanflow's innermost values must be among the section's.
func TestPacketSectionsAgainstTshark(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	mergecap := testutil.Command(t, "mergecap")
	dir := filepath.Join(testutil.SharedTestdata(t), "flows", "akvorado", "netflow")
	for _, tc := range []struct {
		name    string
		records int
		// tshark's heuristic reads one frame as Ethernet over MPLS without
		// a control word, though its bytes after the bottom label are
		// 00000000 and then an Ethernet header: spanflow reads the control
		// word and finds this flow.
		notInTshark []string
	}{
		{name: "datalink", records: 1},
		{name: "ethernet-over-mpls-with-control-word", records: 10, notInTshark: []string{"198.51.100.1", "198.51.100.2", "443", "55427", "02:00:00:00:00:05", "02:00:00:00:00:06"}},
		{name: "ipfix-srv6", records: 1},
		{name: "juniper-cpid", records: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tpl, data := filepath.Join(dir, tc.name+"-template.pcap"), filepath.Join(dir, tc.name+"-data.pcap")
			merged := filepath.Join(t.TempDir(), "merged.pcap")
			if out, err := exec.Command(mergecap, "-a", "-w", merged, tpl, data).CombinedOutput(); err != nil {
				t.Fatalf("mergecap: %v: %s", err, out)
			}
			recs := decodeFiles(t, tpl, data)
			if len(recs) != tc.records {
				t.Fatalf("got %d records, want %d", len(recs), tc.records)
			}
			fields := []string{"cflow.data_link_frame_size", "eth.src", "eth.dst", "vlan.id", "ip.src", "ip.dst",
				"ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport", "icmp.type"}
			want := tsharkSections(t, tshark, merged, fields)
			var sizes, addrs, ports, macs, vlans []string
			for i := range recs {
				r := &recs[i]
				if !r.SrcAddr.IsValid() || !r.DstAddr.IsValid() || r.Proto == 0 {
					t.Errorf("record %d: no addresses or protocol from its section: %+v", i, r)
					continue
				}
				if r.Packets != 1 || r.SamplingRate > 1 {
					t.Errorf("record %d: %d packets at rate %d, want one unsampled packet", i, r.Packets, r.SamplingRate)
				}
				sizes = append(sizes, fmt.Sprint(r.Bytes))
				addrs = append(addrs, r.SrcAddr.String(), r.DstAddr.String())
				if r.Proto == 6 || r.Proto == 17 {
					ports = append(ports, fmt.Sprint(r.SrcPort), fmt.Sprint(r.DstPort))
				}
				macs = append(macs, strings.ToLower(strings.ReplaceAll(r.SrcMAC.String(), "-", ":")),
					strings.ToLower(strings.ReplaceAll(r.DstMAC.String(), "-", ":")))
				if r.VLAN != 0 {
					vlans = append(vlans, fmt.Sprint(r.VLAN))
				}
			}
			sort.Strings(sizes)
			if !slices.Equal(sizes, want["cflow.data_link_frame_size"]) {
				t.Errorf("bytes (frame sizes): %s", testutil.Diff(sizes, want["cflow.data_link_frame_size"]))
			}
			among := func(what string, got []string, from ...string) {
				var pool []string
				for _, f := range from {
					pool = append(pool, want[f]...)
				}
				for _, g := range got {
					if i := slices.Index(pool, g); i >= 0 {
						pool = slices.Delete(pool, i, i+1)
					} else if !slices.Contains(tc.notInTshark, g) {
						t.Errorf("%s %s is not in tshark's dissection of the sections: %v", what, g, from)
					}
				}
			}
			among("address", addrs, "ip.src", "ip.dst", "ipv6.src", "ipv6.dst")
			among("port", ports, "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport")
			among("mac", macs, "eth.src", "eth.dst")
			among("vlan", vlans, "vlan.id")
			if tc.name == "juniper-cpid" {
				// Juniper's common properties (element 137 of PEN 2636), one
				// value per property, in template order.
				var got []string
				for _, x := range recs[0].Extra {
					if strings.HasPrefix(x.Name, "juniper_") {
						got = append(got, fmt.Sprint(x.Num))
					}
				}
				out, err := exec.Command(tshark, "-r", merged, "-Y", "cflow", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
					"-e", "cflow.pie.juniper.resiliency.cpdesc").Output()
				if err != nil {
					t.Fatal(err)
				}
				if w := strings.TrimSpace(string(out)); strings.Join(got, ",") != w {
					t.Errorf("juniper common properties: got %v, tshark %s", got, w)
				}
			}
		})
	}
}

// tsharkSections returns tshark's values of fields inside the flow
// datagrams' sections: every occurrence but the datagram's own headers
// (the first Ethernet, IP and UDP header of each frame), sorted.
func tsharkSections(t *testing.T, tshark, path string, fields []string) map[string][]string {
	t.Helper()
	args := []string{"-r", path, "-Y", "cflow", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command(tshark, args...).Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	own := map[string]bool{"eth.src": true, "eth.dst": true, "ip.src": true, "ip.dst": true, "udp.srcport": true, "udp.dstport": true}
	vals := map[string][]string{}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		for i, col := range strings.Split(line, "\t") {
			if i >= len(fields) || col == "" {
				continue
			}
			vs := strings.Split(col, "|")
			if own[fields[i]] {
				vs = vs[1:]
			}
			vals[fields[i]] = append(vals[fields[i]], vs...)
		}
	}
	for _, f := range fields {
		sort.Strings(vals[f])
	}
	return vals
}
