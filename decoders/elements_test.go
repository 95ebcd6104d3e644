package decoders_test

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/testutil"
)

// typedElement is one element of the generated elements capture: its
// template field, its value, the tshark field that shows it and the
// netflow.* field spanflow writes it as.
type typedElement struct {
	pen    uint32
	id     uint16
	value  []byte
	tshark string
	field  string
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// typedElements are elements of each type, IANA's and vendors' that tshark
// also decodes.
var typedElements = []typedElement{
	{0, 8, []byte{192, 0, 2, 10}, "cflow.srcaddr", ""},
	{0, 311, be64(math.Float64bits(0.001)), "cflow.sampling_probability", "sampling_probability"},
	{0, 258, be64(1764849600123), "cflow.collection_time_milliseconds", "collection_time_milliseconds"},
	{0, 276, []byte{1}, "cflow.data_records_reliability", "data_records_reliability"},
	{0, 365, []byte{0x02, 0, 0, 0, 0, 0x33}, "cflow.sta_mac_address", "sta_mac_address"},
	{0, 434, be32(uint32(0xfffffff6)), "cflow.mib_object_value_integer", "mib_object_value_integer"},
	{9, 12236, []byte{10, 1, 2, 3}, "cflow.pie.cisco.connection_client_ipv4_address", "cisco_client_ipv4_address"},
	{9, 12235, append([]byte{0x0d, 0, 0, 0x50, 0, 0}, "intranet.bank.example"...), "cflow.pie.cisco.application_http_host", "cisco_app_http_host"},
	{5951, 128, be32(1234), "cflow.pie.netscaler.round-trip-time", "netscaler_round_trip_time"},
	{35632, 80, be16(7), "cflow.pie.ntop.src_fragments", "ntop_src_fragments"},
	{3054, 110, be32(4242), "cflow.pie.ixia.l7-application-id", "ixia_l7_application_id"},
	{10704, 8, []byte{198, 51, 100, 1}, "cflow.pie.barracuda.bindipv4address", "barracuda_bind_ipv4_address"},
}

// elementsMessage is one IPFIX message: a template of typedElements and
// one data record.
func elementsMessage() []byte {
	tpl := binary.BigEndian.AppendUint16(nil, 300)
	tpl = binary.BigEndian.AppendUint16(tpl, uint16(len(typedElements)))
	var rec []byte
	for _, e := range typedElements {
		if e.pen == 0 {
			tpl = binary.BigEndian.AppendUint16(tpl, e.id)
		} else {
			tpl = binary.BigEndian.AppendUint16(tpl, e.id|0x8000)
		}
		tpl = binary.BigEndian.AppendUint16(tpl, uint16(len(e.value)))
		if e.pen != 0 {
			tpl = binary.BigEndian.AppendUint32(tpl, e.pen)
		}
		rec = append(rec, e.value...)
	}
	return ipfixMessage(set(2, tpl), set(300, rec))
}

// TestElementsAgainstTshark decodes a generated record of typed IANA and
// vendor elements and compares every value with tshark's decode of the
// same capture, kept beside it (testdata/elements.tshark).
func TestElementsAgainstTshark(t *testing.T) {
	pcap := filepath.Join("testdata", "elements.pcap")
	expected := filepath.Join("testdata", "elements.tshark")
	var buf bytes.Buffer
	if err := synth.WritePcap(&buf, []synth.Packet{{Time: 1764849600e9, Data: flowDatagram(elementsMessage())}}); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(pcap, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	kept, err := os.ReadFile(pcap)
	if err != nil || !bytes.Equal(kept, buf.Bytes()) {
		t.Fatalf("%s is not what elementsMessage makes (%v): run with -update", pcap, err)
	}
	var names []string
	for _, e := range typedElements {
		names = append(names, e.tshark)
	}
	if _, err := os.Stat("/usr/bin/tshark"); err == nil || testutil.InCI() {
		tshark := testutil.Command(t, "tshark")
		vals := tsharkFieldSet(t, tshark, []string{"-r", pcap}, names...)
		var b strings.Builder
		for _, n := range names {
			b.WriteString(n + "=" + strings.Join(vals[n], ",") + "\n")
		}
		if *update {
			if err := os.WriteFile(expected, []byte(b.String()), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, _ := os.ReadFile(expected)
		if b.String() != string(want) {
			t.Errorf("tshark's decode changed: %s", testutil.Diff(b.String(), string(want)))
		}
	}
	raw, err := os.ReadFile(expected)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		want[k] = v
	}
	recs := decodeFiles(t, pcap)
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1", len(recs))
	}
	var enc flow.Encoder
	doc := string(enc.AppendDocument(nil, &recs[0]))
	got := map[string]flow.Extra{}
	for _, x := range recs[0].Extra {
		got[x.Name] = x
	}
	for _, e := range typedElements {
		if e.field == "" {
			continue
		}
		x, ok := got[e.field]
		if !ok {
			t.Errorf("%s: no netflow.%s in %s", e.tshark, e.field, doc)
			continue
		}
		w := want[e.tshark]
		var g string
		switch {
		case x.Raw != nil:
			g = string(x.Raw)
		case x.IsStr:
			g = x.Str
		default:
			g = itoa(x.Num)
		}
		switch e.tshark {
		case "cflow.collection_time_milliseconds":
			// tshark shows the date in its own format: compare the instants.
			tw, err1 := time.Parse("Jan  2, 2006 15:04:05.000000000 MST", w)
			tg, err2 := time.Parse(time.RFC3339Nano, g)
			if err1 != nil || err2 != nil || !tw.Equal(tg) {
				t.Errorf("%s: got %s, tshark %s (%v %v)", e.field, g, w, err1, err2)
			}
			continue
		case "cflow.data_records_reliability":
			w = map[string]string{"1": "true", "0": "false", "True": "true", "False": "false"}[w]
		case "cflow.sta_mac_address":
			g = strings.ToLower(strings.ReplaceAll(g, "-", ":"))
		}
		if g != w {
			t.Errorf("netflow.%s: got %s, tshark %s", e.field, g, w)
		}
	}
}
