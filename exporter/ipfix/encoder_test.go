package ipfix

import (
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/exporter/internal/verify"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files")

type capture struct{ msgs [][]byte }

func (c *capture) Send(m []byte) error {
	c.msgs = append(c.msgs, append([]byte(nil), m...))
	return nil
}

var exportTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func sampleRecords() []flow.Record {
	start := time.Date(2026, 1, 2, 3, 0, 0, 123e6, time.UTC)
	return []flow.Record{
		{
			SrcAddr: netip.MustParseAddr("10.1.0.1"), DstAddr: netip.MustParseAddr("10.2.0.1"),
			SrcPort: 40001, DstPort: 443, Proto: 6, TOS: 0x28, TCPFlags: 0x1b,
			Bytes: 123456, Packets: 100, Start: start, End: start.Add(1500 * time.Millisecond),
			EndReason: 3, VLAN: 100, InnerVLAN: 300,
			SrcMAC: flow.MAC{2, 0, 0, 0, 0, 0x0a}, DstMAC: flow.MAC{2, 0, 0, 0, 0, 0x0b},
			InIf: 42, SegmentID: 5001, ObservationPoint: 7,
			TCP:   flow.TCPPerf{RTTClient: 1500 * time.Microsecond, RTTServer: 250 * time.Microsecond, Retransmissions: 3, ZeroWindows: 1},
			Extra: []flow.Extra{{Name: flow.ExtraBiflowDirection, Num: 1}}, // the source opened it
		},
		{
			SrcAddr: netip.MustParseAddr("2001:db8::1"), DstAddr: netip.MustParseAddr("2001:db8::2"),
			Proto: 58, ICMPType: 128, ICMPCode: 0, Bytes: 312, Packets: 3,
			Start: start, End: start.Add(2 * time.Second), EndReason: 1,
		},
	}
}

// TestGolden: the bytes of a message with the six data templates, the
// options template, a statistics record, one IPv4 flow (full template: it
// has VLANs) and one IPv6 flow (plain: ICMPv6) stay what they were (a change shows as a diff), and goflow2's decoder reads them back as
// the records encoded.
func TestGolden(t *testing.T) {
	c := &capture{}
	e, err := New(reporter.NewForTest(nil), Configuration{ObservationDomain: 7, MTU: 1400, TemplateRefreshInterval: time.Minute, TemplateRefreshMessages: 10}, c)
	if err != nil {
		t.Fatal(err)
	}
	e.SetStatistics(Statistics{Packets: 1000, Octets: 500000, Ignored: 2})
	recs := sampleRecords()
	if err := e.Write(exportTime, recs); err != nil {
		t.Fatal(err)
	}
	if err := e.Flush(exportTime); err != nil {
		t.Fatal(err)
	}
	if len(c.msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(c.msgs))
	}
	got := hexDump(c.msgs[0])
	golden := filepath.Join("testdata", "golden-message.hex")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("message bytes changed (-got, +want):\n%s\n%s", got, want)
	}

	flows, infos, options, err := verify.Goflow2(c.msgs)
	if err != nil {
		t.Fatal(err)
	}
	var wantFlows []synth.Flow
	for i := range recs {
		wantFlows = append(wantFlows, synth.FromRecord(&recs[i]))
	}
	if diff := testutil.FlowsDiff(flows, wantFlows); diff != "" {
		t.Errorf("goflow2 decoded (-got, +want):\n%s", diff)
	}
	if m := infos[0]; m.Templates != 6 || m.OptionsTemplates != 1 || m.Domain != 7 || m.Sequence != 0 || m.ExportTime != uint32(exportTime.Unix()) || int(m.Length) != len(c.msgs[0]) {
		t.Errorf("message header/sets: %+v", m)
	}
	wantOpts := map[uint16]uint64{149: 7, 86: 1000, 85: 500000, 164: 2, 42: 0, 41: 0}
	if len(options) != 1 || len(options[0]) != len(wantOpts) {
		t.Fatalf("options records %v, want one like %v", options, wantOpts)
	}
	for k, v := range wantOpts {
		if options[0][k] != v {
			t.Errorf("options element %d = %d, want %d", k, options[0][k], v)
		}
	}
}

func hexDump(b []byte) string {
	var sb strings.Builder
	for len(b) > 0 {
		n := min(16, len(b))
		sb.WriteString(hex.EncodeToString(b[:n]))
		sb.WriteByte('\n')
		b = b[n:]
	}
	return sb.String()
}

// TestMTUAndSequence: with a small MTU every message fits, sequence numbers
// count the data records before each message, and templates come again
// every TemplateRefreshMessages messages.
func TestMTUAndSequence(t *testing.T) {
	c := &capture{}
	cfg := Configuration{ObservationDomain: 1, MTU: 576, TemplateRefreshInterval: time.Hour, TemplateRefreshMessages: 5}
	e, err := New(nil, cfg, c)
	if err != nil {
		t.Fatal(err)
	}
	recs := sampleRecords()
	var want []synth.Flow
	for i := 0; i < 300; i++ {
		r := recs[i%2]
		r.Packets = uint64(i + 1)
		if err := e.Encode(exportTime, &r); err != nil {
			t.Fatal(err)
		}
		want = append(want, synth.FromRecord(&r))
	}
	if err := e.Flush(exportTime); err != nil {
		t.Fatal(err)
	}
	for i, m := range c.msgs {
		if len(m) > cfg.MTU-headroom {
			t.Errorf("message %d: %d bytes, more than %d", i, len(m), cfg.MTU-headroom)
		}
	}
	flows, infos, _, err := verify.Goflow2(c.msgs)
	if err != nil {
		t.Fatal(err)
	}
	if diff := testutil.FlowsDiff(flows, want); diff != "" {
		t.Errorf("goflow2 decoded (-got, +want):\n%s", diff)
	}
	if err := verify.CheckSequence(infos); err != nil {
		t.Error(err)
	}
	for i, m := range infos {
		if withTemplates := m.Templates > 0; withTemplates != (i%5 == 0) {
			t.Errorf("message %d: %d templates; want them every 5 messages", i, m.Templates)
		}
	}
	if got := e.Counters(); got.Records != 300 || got.Messages != uint64(len(c.msgs)) {
		t.Errorf("counters %+v", got)
	}
}

func TestConfigurationErrors(t *testing.T) {
	if err := (Configuration{MTU: 100, TemplateRefreshInterval: time.Minute, TemplateRefreshMessages: 1}).Validate(); err == nil {
		t.Error("MTU 100 accepted")
	}
}

// TestTemplateRefreshByTime: templates come again once the refresh
// interval of export time has passed, even within the message count.
func TestTemplateRefreshByTime(t *testing.T) {
	c := &capture{}
	now := exportTime
	cfg := Configuration{ObservationDomain: 1, MTU: 1400, TemplateRefreshInterval: time.Minute, TemplateRefreshMessages: 1000}
	e, err := New(nil, cfg, c)
	if err != nil {
		t.Fatal(err)
	}
	r := sampleRecords()[0]
	for _, step := range []time.Duration{0, 30 * time.Second, 31 * time.Second, time.Second} {
		now = now.Add(step)
		if err := e.Encode(now, &r); err != nil {
			t.Fatal(err)
		}
		if err := e.Flush(now); err != nil {
			t.Fatal(err)
		}
	}
	_, infos, _, err := verify.Goflow2(c.msgs)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, m := range infos {
		got = append(got, m.Templates)
	}
	if want := []int{6, 0, 6, 0}; len(got) != 4 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
		t.Errorf("templates per message %v, want %v (at 0 s and after 61 s)", got, want)
	}
}

// TestIdentity: with a probe name and packets URL the templates carry the
// identity options template and each template refresh an identity record,
// which tshark decodes (observationDomainName, spanflow's element as an
// enterprise field) without a malformed frame; without them the messages
// have neither. Names too long for the MTU are refused.
func TestIdentity(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	for _, tc := range []struct{ name, url string }{
		{"esx-a03", "https://esx-a03.example.net:9109"},
		{"esx-" + strings.Repeat("b", 250), "https://" + strings.Repeat("p", 240) + ":9109"}, // 255 bytes: three-byte lengths
		{"", ""},
	} {
		cfg := DefaultConfiguration()
		cfg.ObservationDomain, cfg.ProbeName, cfg.PacketsURL = 7, tc.name, tc.url
		var c capture
		e, err := New(nil, cfg, &c)
		if err != nil {
			t.Fatal(err)
		}
		e.Write(exportTime, sampleRecords())
		e.Flush(exportTime)
		path := filepath.Join(t.TempDir(), "identity.pcap")
		if err := verify.Datagrams(path, c.msgs, 4739, exportTime); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(tshark, "-r", path, "-d", "udp.port==4739,cflow", "-T", "fields", "-E", "separator=|",
			"-e", "cflow.observation_domain_name", "-e", "cflow.od_id", "-e", "_ws.malformed", "-e", "_ws.expert").Output()
		if err != nil {
			t.Fatal(err)
		}
		got := strings.TrimSpace(string(out))
		want := "|7||"
		if tc.name != "" {
			want = tc.name + "|7,7||" // the message header's domain, then the record's scope
		}
		if got != want {
			t.Errorf("%q: tshark shows %q, want %q", tc.name, got, want)
		}
		if tc.url != "" && !strings.Contains(string(c.msgs[0]), tc.url) {
			t.Errorf("%q: the URL is not in the message", tc.name)
		}
		// Template 259 with 3 fields, 1 of them scope.
		if has := strings.Contains(string(c.msgs[0]), "\x01\x03\x00\x03\x00\x01"); has != (tc.name != "") {
			t.Errorf("%q: identity template in the message: %v", tc.name, has)
		}
		res, err := verify.Tshark(tshark, path, 4739)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Flows) != 2 || len(res.Problems) > 0 {
			t.Errorf("%q: tshark read %d flows, problems %v", tc.name, len(res.Flows), res.Problems)
		}
	}
	cfg := DefaultConfiguration()
	cfg.MTU, cfg.ProbeName, cfg.PacketsURL = 576, strings.Repeat("n", 255), strings.Repeat("u", 255)
	if _, err := New(nil, cfg, &capture{}); err == nil || !strings.Contains(err.Error(), "raise the mtu") {
		t.Errorf("a 576 mtu with 510 bytes of identity: %v", err)
	}
	cfg.ProbeName = strings.Repeat("n", 256)
	if err := cfg.Validate(); err == nil {
		t.Error("a 256-byte probe name was accepted")
	}
}

// TestInterfaces: a live capture's interfaces are named, with each
// template refresh, in interface options records (ingressInterface,
// interfaceName), which tshark decodes without a malformed frame; without
// interfaces the messages have neither template nor record. More than
// MaxInterfaces, or an interface without index or name, are refused.
func TestInterfaces(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	for _, ifs := range [][]Interface{
		{{Index: 3, Name: "ens224"}},
		{{Index: 3, Name: "ens224"}, {Index: 17, Name: "mirror-vmnic0"}, {Index: 1024, Name: "e"}},
		nil,
	} {
		cfg := DefaultConfiguration()
		cfg.ObservationDomain, cfg.Interfaces = 7, ifs
		var c capture
		e, err := New(nil, cfg, &c)
		if err != nil {
			t.Fatal(err)
		}
		recs := sampleRecords()
		if len(ifs) > 0 {
			recs[0].InIf, recs[1].InIf = ifs[0].Index, ifs[len(ifs)-1].Index
		}
		for range 40 { // several messages: the sequence numbers count the options records
			e.Write(exportTime, recs)
		}
		e.Flush(exportTime)
		path := filepath.Join(t.TempDir(), "interfaces.pcap")
		if err := verify.Datagrams(path, c.msgs, 4739, exportTime); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(tshark, "-r", path, "-d", "udp.port==4739,cflow", "-T", "fields", "-E", "separator=|",
			"-e", "cflow.if_name", "-e", "_ws.malformed", "-e", "_ws.expert").Output()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		// The first message names them, the others have neither names
		// nor problems.
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		for i, got := range lines {
			want := "||"
			if i == 0 {
				want = strings.Join(names, ",") + "||"
			}
			if got != want {
				t.Errorf("%v: message %d: tshark shows %q, want %q", ifs, i, got, want)
			}
		}
		// Template 260 with 2 fields, 1 of them scope: ingressInterface
		// (10) and interfaceName (82), variable length.
		has := strings.Contains(string(c.msgs[0]), "\x01\x04\x00\x02\x00\x01\x00\x0a\x00\x04\x00\x52\xff\xff")
		if has != (len(ifs) > 0) {
			t.Errorf("%v: interface template in the message: %v", ifs, has)
		}
		res, err := verify.Tshark(tshark, path, 4739)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Flows) != 80 || len(res.Problems) > 0 {
			t.Errorf("%v: tshark read %d flows, problems %v", ifs, len(res.Flows), res.Problems)
		}
		_, infos, options, err := verify.Goflow2(c.msgs)
		if err != nil {
			t.Fatal(err)
		}
		if len(infos) < 2 {
			t.Fatalf("%d messages, want several", len(infos))
		}
		if err := verify.CheckSequence(infos); err != nil {
			t.Errorf("%v: %v", ifs, err)
		}
		var indexes []uint64
		for _, o := range options {
			if i, ok := o[10]; ok {
				indexes = append(indexes, i)
			}
		}
		var want []uint64
		for _, i := range ifs {
			want = append(want, uint64(i.Index))
		}
		if fmt.Sprint(indexes) != fmt.Sprint(want) {
			t.Errorf("goflow2 read interface options records for %v, want %v", indexes, want)
		}
		// spanflow's collector names each record's ingress interface.
		dec, err := decoders.New(decoders.DefaultConfiguration())
		if err != nil {
			t.Fatal(err)
		}
		named := map[uint32]string{}
		for _, i := range ifs {
			named[i.Index] = i.Name
		}
		var got []flow.Record
		for _, m := range c.msgs {
			if got, _, err = dec.Decode(decoders.Datagram{Source: netip.MustParseAddrPort("192.0.2.1:4739"), Payload: m, Received: exportTime}, got); err != nil {
				t.Fatal(err)
			}
		}
		if len(got) != 80 {
			t.Errorf("%v: the collector decoded %d records, want 80", ifs, len(got))
		}
		for _, r := range got {
			if r.InIfName != named[r.InIf] {
				t.Errorf("%v: a record of interface %d named %q, want %q", ifs, r.InIf, r.InIfName, named[r.InIf])
				break
			}
		}
	}
	cfg := DefaultConfiguration()
	for i := range MaxInterfaces + 1 {
		cfg.Interfaces = append(cfg.Interfaces, Interface{Index: uint32(i + 1), Name: fmt.Sprint("eth", i)})
	}
	if err := cfg.Validate(); err == nil {
		t.Errorf("%d interfaces were accepted", len(cfg.Interfaces))
	}
	for _, bad := range []Interface{{0, "eth0"}, {2, ""}, {2, strings.Repeat("x", 65)}} {
		cfg.Interfaces = []Interface{bad}
		if err := cfg.Validate(); err == nil {
			t.Errorf("interface %+v was accepted", bad)
		}
	}
}

// TestShapes: each record goes in the smallest template that holds what it
// has (full with a tunnel field, TCP for the other TCP flows, plain for the
// rest), records of one template go together whatever their order in the
// batch, and goflow2 and tshark read every one back as encoded. With an MTU
// too small for the six templates, every record goes in the full ones.
// With ObservationPoints (a live capture: every record has its
// interface's), the TCP and plain templates keep observationPointId and
// take the records whose only tunnel field it is.
func TestShapes(t *testing.T) {
	for _, points := range []bool{false, true} {
		t.Run(fmt.Sprintf("points=%v", points), func(t *testing.T) { testShapes(t, points) })
	}
}

func testShapes(t *testing.T, points bool) {
	tshark := testutil.Command(t, "tshark")
	start := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	base := func(i int, v6 bool, proto uint8) flow.Record {
		r := flow.Record{SrcAddr: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), DstAddr: netip.MustParseAddr("10.9.9.9"),
			SrcPort: uint16(1000 + i), DstPort: 53, Proto: proto, Bytes: uint64(100 + i), Packets: 2,
			Start: start, End: start.Add(time.Second), EndReason: 1, SrcMAC: flow.MAC{2, 0, 0, 0, 0, byte(i)}, InIf: 3}
		if v6 {
			r.SrcAddr, r.DstAddr = netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, 15: byte(i)}), netip.MustParseAddr("2001:db8::99")
		}
		if proto == 6 {
			r.TCPFlags, r.TCP = 0x1b, flow.TCPPerf{RTTClient: time.Duration(i+1) * time.Millisecond, Retransmissions: uint32(i)}
			// biflowDirection 0 (unknown, no element), 1 and 2.
			if d := uint64(i % 3); d != 0 {
				r.Extra = []flow.Extra{{Name: flow.ExtraBiflowDirection, Num: d}}
			}
		}
		if points {
			r.ObservationPoint = 1024 // the capture interface's
		}
		return r
	}
	// Every shape and family, interleaved.
	var recs []flow.Record
	type kind struct {
		shape Shape
		v6    bool
	}
	var kinds []kind
	for i := range 48 {
		v6, proto := i%2 == 1, []uint8{6, 17, 1}[i/2%3]
		r := base(i, v6, proto)
		shape := ShapePlain
		if proto == 6 {
			shape = ShapeTCP
		}
		switch i / 6 % 4 {
		case 1:
			r.VLAN, shape = 100, ShapeFull
		case 2:
			r.SegmentID, shape = 5001, ShapeFull
		case 3:
			r.ObservationPoint = 7 // an ERSPAN session
			if !points {
				shape = ShapeFull
			}
		}
		if proto == 1 {
			r.SrcPort, r.DstPort, r.ICMPType = 0, 0, 8
			if v6 {
				r.Proto, r.ICMPType = 58, 128
			}
		}
		recs = append(recs, r)
		kinds = append(kinds, kind{shape, v6})
	}
	// More IPv4 records than IPv6 in the full shape, so that the counts
	// per template tell the versions apart.
	for i := range 8 {
		r := base(100+i, false, 17)
		r.VLAN = 7
		recs = append(recs, r)
		kinds = append(kinds, kind{ShapeFull, false})
	}
	for _, mtu := range []int{1400, 576} {
		c := &capture{}
		e, err := New(nil, Configuration{ObservationDomain: 1, MTU: mtu, TemplateRefreshInterval: time.Minute, TemplateRefreshMessages: 100, ObservationPoints: points}, c)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Write(exportTime, recs); err != nil {
			t.Fatal(err)
		}
		if err := e.Flush(exportTime); err != nil {
			t.Fatal(err)
		}
		// The data sets of each message: template id and record count.
		perID := map[uint16]int{}
		for _, m := range c.msgs {
			seen := map[uint16]bool{}
			for b := m[16:]; len(b) >= 4; {
				id, n := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
				if id >= 256 && id != TemplateOptions {
					if seen[id] {
						t.Errorf("mtu %d: two sets of template %d in one message", mtu, id)
					}
					seen[id] = true
					perID[id] += (n - 4) / recordSizeOf(id, points && mtu != 576)
				}
				b = b[n:]
			}
		}
		want := map[uint16]int{}
		for _, k := range kinds {
			if mtu == 576 {
				k.shape = ShapeFull
			}
			want[TemplateID(k.shape, k.v6)]++
		}
		if fmt.Sprint(perID) != fmt.Sprint(want) {
			t.Errorf("mtu %d: records per template %v, want %v", mtu, perID, want)
		}
		var wantFlows []synth.Flow
		for i := range recs {
			wantFlows = append(wantFlows, synth.FromRecord(&recs[i]))
		}
		synth.Sort(wantFlows) // grouped by template, the records left their order
		flows, _, _, err := verify.Goflow2(c.msgs)
		if err != nil {
			t.Fatal(err)
		}
		synth.Sort(flows)
		if diff := testutil.FlowsDiff(flows, wantFlows); diff != "" {
			t.Errorf("mtu %d: goflow2 decoded (-got, +want):\n%s", mtu, diff)
		}
		path := filepath.Join(t.TempDir(), "shapes.pcap")
		if err := verify.Datagrams(path, c.msgs, 4739, exportTime); err != nil {
			t.Fatal(err)
		}
		res, err := verify.Tshark(tshark, path, 4739)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Problems) > 0 {
			t.Errorf("mtu %d: tshark: %v", mtu, res.Problems)
		}
		synth.Sort(res.Flows)
		if diff := testutil.FlowsDiff(res.Flows, wantFlows); diff != "" {
			t.Errorf("mtu %d: tshark decoded (-got, +want):\n%s", mtu, diff)
		}
	}
}

// recordSizeOf is the record length of data template id (with
// observationPointId in every template when points).
func recordSizeOf(id uint16, points bool) int {
	for s := range shapes {
		for v, v6 := range []bool{false, true} {
			if TemplateID(s, v6) == id {
				return recordSizes(points)[s][v]
			}
		}
	}
	panic(fmt.Sprint("no data template ", id))
}
