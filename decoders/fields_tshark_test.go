package decoders_test

import (
	"encoding/xml"
	"math"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/pcapreplay"
	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/testutil"
)

// pdmlNode is one element of tshark's PDML output: a proto or a field.
type pdmlNode struct {
	XMLName  xml.Name
	Name     string     `xml:"name,attr"`
	Show     string     `xml:"show,attr"`
	Showname string     `xml:"showname,attr"`
	Kids     []pdmlNode `xml:",any"`
}

// pdmlFrames runs tshark -T pdml and returns its packets in order.
func pdmlFrames(t *testing.T, tshark string, args []string) []pdmlNode {
	t.Helper()
	cmd := exec.Command(tshark, append(append([]string(nil), args...), "-T", "pdml")...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var frames []pdmlNode
	dec := xml.NewDecoder(out)
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "packet" {
			var p pdmlNode
			if err := dec.DecodeElement(&p, &se); err != nil {
				t.Fatalf("tshark pdml: %v", err)
			}
			frames = append(frames, p)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tshark %v: %v", args, err)
	}
	return frames
}

// fieldValues collects the show values of the named fields under n, by
// name, in order, leaving out RFC 5103 / YAF reverse elements (spanflow
// keeps the forward ones in the record's fields).
func fieldValues(n *pdmlNode, into map[string][]string) {
	for i := range n.Kids {
		k := &n.Kids[i]
		if k.Name != "" && !strings.Contains(k.Showname, "(Reverse Type") {
			into[k.Name] = append(into[k.Name], k.Show)
		}
		fieldValues(k, into)
	}
}

func (n *pdmlNode) child(name string) *pdmlNode {
	for i := range n.Kids {
		if n.Kids[i].Name == name {
			return &n.Kids[i]
		}
	}
	return nil
}

func (n *pdmlNode) find(name string) *pdmlNode {
	for i := range n.Kids {
		if n.Kids[i].Name == name {
			return &n.Kids[i]
		}
		if f := n.Kids[i].find(name); f != nil {
			return f
		}
	}
	return nil
}

// tsharkRecord is one NetFlow v5 pdu or NetFlow v9/IPFIX data record as
// tshark decoded it: its fields' values by name.
type tsharkRecord struct {
	set    string // the set (template) id
	fields map[string][]string
}

// cflowRecords returns the records of a cflow proto, and adds the ids of the
// options templates it defines to opt.
func cflowRecords(p *pdmlNode, opt map[string]bool) []tsharkRecord {
	var recs []tsharkRecord
	var walk func(n *pdmlNode, set string)
	walk = func(n *pdmlNode, set string) {
		for i := range n.Kids {
			k := &n.Kids[i]
			switch {
			case k.Name == "" && (strings.HasPrefix(k.Show, "Flow ") || strings.HasPrefix(k.Show, "pdu ")):
				r := tsharkRecord{set: set, fields: map[string][]string{}}
				fieldValues(k, r.fields)
				recs = append(recs, r)
			case k.Name == "" && (strings.HasPrefix(k.Show, "FlowSet ") || strings.HasPrefix(k.Show, "Set ")):
				id := ""
				if f := k.child("cflow.flowset_id"); f != nil {
					id = f.Show
				}
				if id == "1" || id == "3" { // options template sets
					var ids map[string][]string = map[string][]string{}
					fieldValues(k, ids)
					for _, tid := range ids["cflow.template_id"] {
						opt[tid] = true
					}
				}
				walk(k, id)
			default:
				walk(k, set)
			}
		}
	}
	walk(p, "")
	return recs
}

type datagramRecords struct {
	length  int
	records []flow.Record
}

// decodeDatagrams decodes a capture and returns each datagram's flow
// records (no counters), in order.
func decodeDatagrams(t *testing.T, path string) ([]datagramRecords, map[uint16]flow.Kind) {
	t.Helper()
	dec, err := decoders.New(decoders.DefaultConfiguration())
	if err != nil {
		t.Fatal(err)
	}
	ports := map[uint16]flow.Kind{}
	var out []datagramRecords
	_, err = pcapreplay.Read(path, func(dg decoders.Datagram, dst netip.AddrPort) error {
		k := decoders.Protocol(dg.Payload)
		if _, seen := ports[dst.Port()]; !seen && k != flow.KindUnknown {
			ports[dst.Port()] = k
		}
		recs, _, _ := dec.Decode(dg, nil)
		recs = slices.DeleteFunc(recs, func(r flow.Record) bool { return r.Counters != nil || r.SFlowCounters != nil })
		out = append(out, datagramRecords{len(dg.Payload), recs})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, ports
}

// fieldCheck compares one value of a record with tshark's.
type fieldCheck struct {
	t       *testing.T
	name    string
	checked map[string]int
	errs    int
}

// eq checks that got is one of want (tshark's occurrences of the field in
// the record: a template may repeat an element, e.g. Huawei's and Cisco's
// SRv6 templates carry the outer and the inner header's addresses, ports,
// protocol and TOS; spanflow keeps one of them, the inner one).
func (c *fieldCheck) eq(field string, got string, want []string) {
	if len(want) == 0 {
		return
	}
	c.checked[field]++
	if slices.Contains(want, got) {
		return
	}
	c.errs++
	if c.errs <= 20 {
		c.t.Errorf("%s: %s = %s, tshark %v", c.name, field, got, want)
	}
}

func hexOrDec(s string) string {
	x, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), map[bool]int{true: 16, false: 10}[strings.HasPrefix(s, "0x")], 64)
	if err != nil {
		return s
	}
	return strconv.FormatUint(x, 10)
}

func mapStrings(in []string, f func(string) string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if v := f(s); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// addrs is tshark's addresses, unmapped, without the unspecified ones (a
// template with both families zeroes the unused one).
func addrs(in ...[]string) []string {
	var out []string
	for _, l := range in {
		out = append(out, mapStrings(l, func(s string) string {
			a, err := netip.ParseAddr(s)
			if err != nil || a.IsUnspecified() {
				return ""
			}
			return a.Unmap().String()
		})...)
	}
	return out
}

func nonZero(in []string) []string {
	return mapStrings(in, func(s string) string {
		if s == "0" || s == "0.0.0.0" || s == "::" || s == "00:00:00:00:00:00" {
			return ""
		}
		return s
	})
}

func extraValue(r *flow.Record, name string) string {
	for _, e := range r.Extra {
		if e.Name == name {
			if e.IsStr {
				return e.Str
			}
			return strconv.FormatUint(e.Num, 10)
		}
	}
	return ""
}

// tsharkTime parses tshark's absolute times ("Oct  9, 2015 09:47:49.599000000 UTC").
func tsharkTime(s string) (time.Time, bool) {
	tm, err := time.Parse("Jan _2, 2006 15:04:05.999999999 MST", s)
	return tm, err == nil
}

func ms(s string) (int64, bool) {
	f, err := strconv.ParseFloat(s, 64)
	return int64(math.Round(f * 1000)), err == nil
}

// compareCflowRecord compares one NetFlow/IPFIX record with tshark's.
func compareCflowRecord(c *fieldCheck, r *flow.Record, w map[string][]string, hdr map[string]string) {
	rate := uint64(max(r.SamplingRate, 1))
	u := func(x uint64) string { return strconv.FormatUint(x, 10) }
	c.eq("source address", r.SrcAddr.String(), addrs(w["cflow.srcaddr"], w["cflow.srcaddrv6"]))
	c.eq("destination address", r.DstAddr.String(), addrs(w["cflow.dstaddr"], w["cflow.dstaddrv6"]))
	c.eq("protocol", u(uint64(r.Proto)), w["cflow.protocol"])
	if r.Proto == 1 || r.Proto == 58 {
		// tshark shows ICMP type and code as the destination port;
		// spanflow has them apart.
		c.eq("icmp type", u(uint64(r.ICMPType)), append(w["cflow.icmp_ipv4_type"], w["cflow.icmp_ipv6_type"]...))
	} else {
		// A template with L4 ports and tcp/udpSourcePort (Cisco NBAR) has
		// the unused ones zero: spanflow keeps the non-zero ones.
		c.eq("source port", u(uint64(r.SrcPort)), w["cflow.srcport"])
		c.eq("destination port", u(uint64(r.DstPort)), w["cflow.dstport"])
	}
	// Counts in octetTotalCount or a biflow's reverse direction are summed
	// by spanflow (network.bytes is both directions): not compared.
	c.eq("octets", u(r.Bytes/rate), append(w["cflow.octets"], w["cflow.octets64"]...))
	c.eq("packets", u(r.Packets/rate), append(w["cflow.packets"], w["cflow.packets64"]...))
	c.eq("input interface", u(uint64(r.InIf)), nonZero(w["cflow.inputint"]))
	c.eq("output interface", u(uint64(r.OutIf)), nonZero(w["cflow.outputint"]))
	if r.Proto == 6 {
		c.eq("tcp flags", u(uint64(r.TCPFlags)), mapStrings(w["cflow.tcpflags"], hexOrDec))
	}
	c.eq("tos", u(uint64(r.TOS)), mapStrings(w["cflow.tos"], hexOrDec))
	c.eq("source mac", macString(r.SrcMAC), nonZero(w["cflow.srcmac"]))
	c.eq("destination mac", macString(r.DstMAC), nonZero(w["cflow.dstmac"]))
	c.eq("vlan", u(uint64(r.VLAN)), nonZero(append(append(w["cflow.vlanid"], w["cflow.dot1q_vlan_id"]...), w["cflow.srcvlan"]...)))
	c.eq("inner vlan", u(uint64(r.InnerVLAN)), nonZero(w["cflow.dot1q_customer_vlan_id"]))
	c.eq("segment id", u(r.SegmentID), nonZero(w["cflow.layer2_segment_id"]))
	c.eq("end reason", u(uint64(r.EndReason)), w["cflow.flow_end_reason"])
	for _, x := range []struct{ field, extra string }{
		{"cflow.srcas", "bgp_source_as_number"},
		{"cflow.dstas", "bgp_destination_as_number"},
		{"cflow.peer_srcas", "bgp_prev_adjacent_as_number"},
		{"cflow.peer_dstas", "bgp_next_adjacent_as_number"},
		{"cflow.nexthop", "ip_next_hop_ipv4_address"},
		{"cflow.nexthopv6", "ip_next_hop_ipv6_address"},
		{"cflow.bgpnexthop", "bgp_next_hop_ipv4_address"},
		// spanflow writes an IPv4-mapped IPv6 next hop as IPv4 (as
		// Elasticsearch's ip type stores it).
		{"cflow.bgpnexthopv6", "bgp_next_hop_ipv6_address"},
		{"cflow.srcmask", "source_ipv4_prefix_length"},
		{"cflow.dstmask", "destination_ipv4_prefix_length"},
		{"cflow.srcmaskv6", "source_ipv6_prefix_length"},
		{"cflow.dstmaskv6", "destination_ipv6_prefix_length"},
		{"cflow.direction", "flow_direction"},
	} {
		want := nonZero(w[x.field])
		if strings.Contains(x.field, "nexthop") {
			want = addrs(want)
		}
		c.eq(x.extra, extraValue(r, x.extra), want)
	}
	// Times. spanflow's are in milliseconds (documents have no finer); a
	// record whose times are missing, zero or after the export time has the
	// receive time (flow.ResolveTimes): tshark shows them as they are.
	start, end := r.Start.UnixMilli(), r.End.UnixMilli()
	resolved := func(got int64) bool { return got == r.Received.UnixMilli() }
	check := func(field string, got int64, want int64) {
		if resolved(got) && got != want {
			return
		}
		c.eq(field, strconv.FormatInt(got, 10), []string{strconv.FormatInt(want, 10)})
	}
	for _, x := range []struct {
		field string
		got   int64
	}{{"cflow.abstimestart", start}, {"cflow.abstimeend", end}} {
		for _, s := range w[x.field] {
			// tshark bug: a NetFlow v9 template with LAST_SWITCHED before
			// FIRST_SWITCHED (nProbe) is shown as absolute times of 0,
			// the second read past the record.
			if tm, ok := tsharkTime(s); ok && tm.Unix() != 0 {
				check(x.field, x.got, tm.UnixMilli())
			}
		}
	}
	// Switched times relative to the uptime: NetFlow v5 and v9 against the
	// header's export time, IPFIX against systemInitTimeMilliseconds.
	var base int64
	var up int64
	haveBase := false
	if secs, ok := hdr["cflow.unix_secs"]; ok && hdr["cflow.sysuptime"] != "" {
		s, _ := strconv.ParseInt(secs, 10, 64)
		ns, _ := strconv.ParseInt(hdr["cflow.unix_nsecs"], 10, 64)
		up, _ = ms(hdr["cflow.sysuptime"])
		base, haveBase = s*1000+ns/1e6-up, true
	} else if init := w["cflow.sys_init_time"]; len(init) > 0 {
		if tm, ok := tsharkTime(init[0]); ok {
			base, haveBase = tm.UnixMilli(), true
		}
	}
	if haveBase {
		for _, x := range []struct {
			field string
			got   int64
		}{{"cflow.timestart", start}, {"cflow.timeend", end}} {
			for _, s := range w[x.field] {
				v, ok := ms(s)
				if !ok {
					continue
				}
				want := base + v
				if up != 0 && x.got == want-1<<32 {
					// tshark does not see the uptime wrap (49.7 days)
					// between a switched time and the header's uptime.
					want -= 1 << 32
				}
				check(x.field, x.got, want)
			}
		}
	}
}

// compareSFlowSample compares one sFlow flow sample with tshark's.
func compareSFlowSample(c *fieldCheck, r *flow.Record, w map[string][]string) {
	u := func(x uint64) string { return strconv.FormatUint(x, 10) }
	first := func(k string) []string {
		if len(w[k]) == 0 {
			return nil
		}
		return w[k][:1]
	}
	rate := uint64(1)
	if s := first("sflow.flow_sample.sampling_rate"); s != nil {
		if x, _ := strconv.ParseUint(s[0], 10, 64); x > 1 {
			rate = x
		}
	}
	c.eq("sampling rate", u(uint64(max(r.SamplingRate, 1))), []string{u(rate)})
	c.eq("packets", u(r.Packets), []string{u(rate)})
	// network.bytes is the sampled packet's IP length times the rate (the
	// frame length without an IP header): docs/collector.md.
	switch {
	case len(w["ip.len"]) > 0 && (len(w["ipv6.plen"]) == 0 || r.SrcAddr.Is4()):
		n, _ := strconv.ParseUint(w["ip.len"][0], 10, 64)
		c.eq("bytes (ip length)", u(r.Bytes), []string{u(n * rate)})
	case len(w["ipv6.plen"]) > 0:
		n, _ := strconv.ParseUint(w["ipv6.plen"][0], 10, 64)
		c.eq("bytes (ipv6 length)", u(r.Bytes), []string{u((n + 40) * rate)})
	}
	// The first (outer) header of the sample: spanflow keeps the outer one.
	if len(w["ip.src"]) > 0 && r.SrcAddr.Is4() {
		c.eq("source address", r.SrcAddr.String(), first("ip.src"))
		c.eq("destination address", r.DstAddr.String(), first("ip.dst"))
		c.eq("protocol", u(uint64(r.Proto)), first("ip.proto"))
		c.eq("tos", u(uint64(r.TOS)), mapStrings(first("ip.dsfield"), hexOrDec))
	} else if len(w["ipv6.src"]) > 0 {
		c.eq("source address", r.SrcAddr.String(), first("ipv6.src"))
		c.eq("destination address", r.DstAddr.String(), first("ipv6.dst"))
	}
	if !r.NoPorts {
		c.eq("source port", u(uint64(r.SrcPort)), append(first("tcp.srcport"), first("udp.srcport")...))
		c.eq("destination port", u(uint64(r.DstPort)), append(first("tcp.dstport"), first("udp.dstport")...))
	}
	if r.Proto == 6 && !r.NoTCPFlags {
		c.eq("tcp flags", u(uint64(r.TCPFlags)), mapStrings(first("tcp.flags"), hexOrDec))
	}
	c.eq("vlan", u(uint64(r.VLAN)), first("vlan.id"))
	c.eq("source mac", macString(r.SrcMAC), first("eth.src"))
	c.eq("destination mac", macString(r.DstMAC), first("eth.dst"))
	if r.InIfSpecial == flow.IfIndex {
		c.eq("input interface", u(uint64(r.InIf)), append(first("sflow.flow_sample.input_interface"), first("sflow.flow_sample.input_interface_value")...))
	}
	// Extended switch record: the outgoing VLAN is post_vlan_id (not
	// written for 0, none, or past 4094: 0xFFFFFFFF is "unknown").
	if out := first("sflow_245.vlan.out"); out != nil {
		want := out[0]
		if n, err := strconv.ParseUint(want, 10, 32); err != nil || n == 0 || n > 4094 {
			want = ""
		}
		c.eq("post_vlan_id", extraValue(r, "post_vlan_id"), []string{want})
	}
	// Extended router and gateway records: tshark names both next hops
	// sflow_245.nexthop; spanflow's must be among them.
	if len(w["sflow_245.nexthop.src_mask"]) > 0 {
		fam := "ipv6"
		if r.SrcAddr.Is4() {
			fam = "ipv4"
		}
		hop := extraValue(r, "ip_next_hop_ipv4_address") + extraValue(r, "ip_next_hop_ipv6_address")
		c.eq("ip_next_hop", hop, addrs(w["sflow_245.nexthop"]))
		c.eq("source_prefix_length", extraValue(r, "source_"+fam+"_prefix_length"), first("sflow_245.nexthop.src_mask"))
		c.eq("destination_prefix_length", extraValue(r, "destination_"+fam+"_prefix_length"), first("sflow_245.nexthop.dst_mask"))
	}
	if hop := extraValue(r, "bgp_next_hop_ipv4_address") + extraValue(r, "bgp_next_hop_ipv6_address"); hop != "" || len(w["sflow_245.as"]) > 0 {
		if want := addrs(w["sflow_245.nexthop"]); len(want) > 0 && !(len(w["sflow_245.nexthop.src_mask"]) > 0 && len(want) == 1) {
			c.eq("bgp_next_hop", hop, want)
		}
	}
}

// TestCaptureFieldsAgainstTshark compares, record by record, the fields
// spanflow decodes from every shared NetFlow v5/v9, IPFIX and sFlow
// capture with tshark's decode of the same record: addresses, ports,
// protocol, counts (over the sampling rate), interfaces, TCP flags, TOS,
// MACs, VLANs, AS numbers, next hops, prefix lengths, direction, end
// reason and times; for sFlow the sampled header's fields, the sampling
// rate and the scaled counts. Frames whose record count differs from
// tshark's are left to TestCapturesAgainstTshark (data sets before their
// template, malformed frames tshark gives up on). Known, justified
// differences are in the compare functions.
func TestCaptureFieldsAgainstTshark(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	root := filepath.Join(testutil.SharedTestdata(t), "flows")
	for _, path := range captures(t) {
		name := strings.TrimPrefix(path, root+"/")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dgs, ports := decodeDatagrams(t, path)
			if len(ports) == 0 {
				t.Skip("no flow datagrams")
			}
			c := &fieldCheck{t: t, name: name, checked: map[string]int{}}
			opt := map[string]bool{}
			j, compared, skipped := 0, 0, 0
			for _, fr := range pdmlFrames(t, tshark, tsharkArgs(path, ports)) {
				var udpLen int
				var proto *pdmlNode
				for i := range fr.Kids {
					p := &fr.Kids[i]
					switch p.Name {
					case "udp":
						if f := p.find("udp.length"); f != nil {
							udpLen, _ = strconv.Atoi(f.Show)
						}
					case "cflow", "sflow":
						proto = p
					}
				}
				if proto == nil {
					continue
				}
				for j < len(dgs) && dgs[j].length != udpLen-8 {
					j++
				}
				if j == len(dgs) {
					t.Fatalf("frame %s: no datagram of %d bytes decoded", fr.Kids[0].find("frame.number").Show, udpLen-8)
				}
				recs := dgs[j].records
				j++
				if proto.Name == "sflow" {
					var samples []*pdmlNode
					for i := range proto.Kids {
						k := &proto.Kids[i]
						if k.Name == "" && (strings.HasPrefix(k.Show, "Flow sample") || strings.HasPrefix(k.Show, "Expanded flow sample")) {
							samples = append(samples, k)
						}
					}
					if len(samples) != len(recs) {
						skipped++
						continue
					}
					for i, s := range samples {
						w := map[string][]string{}
						fieldValues(s, w)
						compareSFlowSample(c, &recs[i], w)
						compared++
					}
					continue
				}
				hdr := map[string]string{}
				for _, k := range []string{"cflow.sysuptime", "cflow.unix_secs", "cflow.unix_nsecs"} {
					if f := proto.find(k); f != nil {
						hdr[k] = f.Show
					}
				}
				data := slices.DeleteFunc(cflowRecords(proto, opt), func(r tsharkRecord) bool { return opt[r.set] })
				if len(data) != len(recs) {
					skipped++
					continue
				}
				for i := range data {
					compareCflowRecord(c, &recs[i], data[i].fields, hdr)
					compared++
				}
			}
			t.Logf("%d records compared, %d frames with another record count left out; fields compared: %v", compared, skipped, c.checked)
		})
	}
}

// macString writes a MAC as tshark does.
func macString(m flow.MAC) string {
	return strings.ToLower(strings.ReplaceAll(m.String(), "-", ":"))
}
