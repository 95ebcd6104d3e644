package decoders_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/testutil"
)

// yafField is a template field of CERT's PEN (6871).
func yafField(id, length uint16) []byte {
	b := binary.BigEndian.AppendUint16(nil, id|0x8000)
	b = binary.BigEndian.AppendUint16(b, length)
	return binary.BigEndian.AppendUint32(b, 6871)
}

// structuredMessage is a flow as YAF exports its DNS data (RFC 6313): a
// subTemplateMultiList (293) holding records of a DNS template (YAF's
// dnsQName 179, dnsQRType 175, dnsTTL 199), and a basicList (291) of
// bgpCommunity (483) values.
func structuredMessage() []byte {
	const tFlow, tDNS = 300, 310
	tpl := binary.BigEndian.AppendUint16(nil, tDNS)
	tpl = binary.BigEndian.AppendUint16(tpl, 3)
	tpl = append(tpl, yafField(179, 0xffff)...)
	tpl = append(tpl, yafField(175, 2)...)
	tpl = append(tpl, yafField(199, 4)...)
	tpl = binary.BigEndian.AppendUint16(tpl, tFlow)
	tpl = binary.BigEndian.AppendUint16(tpl, 4)
	tpl = append(tpl, 0, 8, 0, 4, 0, 12, 0, 4) // source/destinationIPv4Address
	tpl = append(tpl, 0x01, 0x25, 0xff, 0xff)  // subTemplateMultiList, variable length
	tpl = append(tpl, 0x01, 0x23, 0xff, 0xff)  // basicList, variable length

	var dns []byte
	for _, q := range []struct {
		name string
		typ  uint16
		ttl  uint32
	}{{"www.bank.example", 1, 300}, {"api.bank.example", 28, 60}} {
		dns = append(dns, byte(len(q.name)))
		dns = append(dns, q.name...)
		dns = binary.BigEndian.AppendUint16(dns, q.typ)
		dns = binary.BigEndian.AppendUint32(dns, q.ttl)
	}
	stml := []byte{0xff} // semantic: undefined
	stml = binary.BigEndian.AppendUint16(stml, tDNS)
	stml = binary.BigEndian.AppendUint16(stml, uint16(4+len(dns)))
	stml = append(stml, dns...)
	bl := []byte{0x03, 0x01, 0xe3, 0, 4} // allOf, bgpCommunity (483), 4 bytes each
	for _, c := range []uint32{65000<<16 | 100, 65000<<16 | 200} {
		bl = binary.BigEndian.AppendUint32(bl, c)
	}
	rec := []byte{192, 0, 2, 53, 198, 51, 100, 10}
	rec = append(rec, varlen(stml)...)
	rec = append(rec, varlen(bl)...)
	return ipfixMessage(set(2, tpl), set(tFlow, rec))
}

// TestStructuredData decodes YAF-style structured data into nested
// fields; the expected values are those the generated record carries.
func TestStructuredData(t *testing.T) {
	pcap := filepath.Join("testdata", "structured.pcap")
	var buf bytes.Buffer
	if err := synth.WritePcap(&buf, []synth.Packet{{Time: 1764849600e9, Data: flowDatagram(structuredMessage())}}); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(pcap, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if kept, err := os.ReadFile(pcap); err != nil || !bytes.Equal(kept, buf.Bytes()) {
		t.Fatalf("%s is not what structuredMessage makes (%v): run with -update", pcap, err)
	}
	recs := decodeFiles(t, pcap)
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1", len(recs))
	}
	var enc flow.Encoder
	var doc struct {
		Netflow map[string]any `json:"netflow"`
	}
	raw := enc.AppendDocument(nil, &recs[0])
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("document is not JSON: %v\n%s", err, raw)
	}
	want := map[string]any{
		"sub_template_multi_list": []any{
			map[string]any{"yaf_dns_q_name": "www.bank.example", "yaf_dns_qr_type": 1.0, "yaf_dns_ttl": 300.0},
			map[string]any{"yaf_dns_q_name": "api.bank.example", "yaf_dns_qr_type": 28.0, "yaf_dns_ttl": 60.0},
		},
		"basic_list": []any{float64(65000<<16 | 100), float64(65000<<16 | 200)},
	}
	for k, w := range want {
		if d := testutil.Diff(doc.Netflow[k], w); d != "" {
			t.Errorf("netflow.%s: %s\n%s", k, d, raw)
		}
	}
}
