package flow

import (
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/spanflow/spanflow/internal/testutil"
)

func TestCommunityID(t *testing.T) {
	// Vectors from the Community ID specification's README and baseline.
	cases := []struct {
		name     string
		src, dst string
		proto    uint8
		sp, dp   uint16
		typ      uint8
		want     string
	}{
		{name: "tcp", src: "128.232.110.120", dst: "66.35.250.204", proto: 6, sp: 34855, dp: 80, want: "1:LQU9qZlK+B5F3KDmev6m5PMibrg="},
		{name: "tcp reversed", src: "66.35.250.204", dst: "128.232.110.120", proto: 6, sp: 80, dp: 34855, want: "1:LQU9qZlK+B5F3KDmev6m5PMibrg="},
		{name: "icmp echo", src: "192.168.0.89", dst: "192.168.0.1", proto: 1, typ: 8, want: "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="},
		{name: "icmp echo reply", src: "192.168.0.1", dst: "192.168.0.89", proto: 1, typ: 0, want: "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Record{SrcAddr: netip.MustParseAddr(c.src), DstAddr: netip.MustParseAddr(c.dst),
				Proto: c.proto, SrcPort: c.sp, DstPort: c.dp, ICMPType: c.typ}
			if got := string(AppendCommunityID(nil, &r)); got != c.want {
				t.Errorf("community id = %s, want %s", got, c.want)
			}
		})
	}
}

// TestBase64Digest compares the community id's base64 with encoding/base64's.
func TestBase64Digest(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 10000 {
		var sum [20]byte
		for i := range sum {
			sum[i] = byte(rng.Uint32())
		}
		if got, want := string(appendBase64Digest(nil, &sum)), base64.StdEncoding.EncodeToString(sum[:]); got != want {
			t.Fatalf("%x: %s, want %s", sum, got, want)
		}
	}
}

func TestDocumentNesting(t *testing.T) {
	start := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	r := Record{
		Kind: KindIPFIX, ObserverIP: netip.MustParseAddr("192.0.2.1"), ObservationDomain: 7,
		Start: start, End: start.Add(1500 * time.Millisecond),
		SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"),
		SrcPort: 40000, DstPort: 443, Proto: 6, TCPFlags: 0x1b, Bytes: 1200, Packets: 10,
		SrcMAC: MAC{0, 0x50, 0x56, 0xaa, 0xbb, 0xcc}, VLAN: 100, InIf: 3,
		Src:   Endpoint{VSphere: &VSphere{VMName: "web-1 \"prod\"", Project: "portal"}},
		Extra: []Extra{{Name: "bgp_next_hop_ipv4_address", Str: "192.0.2.254", IsStr: true}, {Name: "mpls_top_label_ttl", Num: 64}},
		TCP:   TCPPerf{RTTServer: 250 * time.Microsecond},
	}
	var e Encoder
	doc := e.AppendDocument(nil, &r)
	var got map[string]any
	if err := json.Unmarshal(doc, &got); err != nil {
		t.Fatalf("document is not JSON: %v\n%s", err, doc)
	}
	want := map[string]any{
		"@timestamp": "2026-11-25T10:00:01.500Z",
		"event": map[string]any{"kind": "event", "category": "network", "action": "network_flow",
			"start": "2026-11-25T10:00:00.000Z", "end": "2026-11-25T10:00:01.500Z", "duration": 1.5e9},
		"flow": map[string]any{"protocol": "ipfix"},
		"netflow": map[string]any{"observation_domain_id": 7.0, "tcp_control_bits": 27.0,
			"bgp_next_hop_ipv4_address": "192.0.2.254", "mpls_top_label_ttl": 64.0},
		"network": map[string]any{"transport": "tcp", "iana_number": "6", "type": "ipv4", "bytes": 1200.0,
			"packets": 10.0, "vlan": map[string]any{"id": "100"}, "community_id": string(AppendCommunityID(nil, &r))},
		"observer":    map[string]any{"ip": "192.0.2.1", "ingress": map[string]any{"interface": map[string]any{"id": "3"}}},
		"source":      map[string]any{"ip": "10.0.0.1", "port": 40000.0, "mac": "00-50-56-AA-BB-CC", "vsphere": map[string]any{"vm": map[string]any{"name": "web-1 \"prod\""}, "project": "portal"}},
		"destination": map[string]any{"ip": "10.0.0.2", "port": 443.0},
		"spanflow":    map[string]any{"tcp": map[string]any{"rtt_server_us": 250.0, "retransmissions": 0.0, "zero_windows": 0.0}},
	}
	if d := cmp.Diff(got, want); d != "" {
		t.Errorf("document (-got, +want):\n%s\n%s", d, doc)
	}
	// A second record through the same encoder must not inherit state.
	doc2 := e.AppendDocument(nil, &Record{SrcAddr: netip.MustParseAddr("2001:db8::1"), DstAddr: netip.MustParseAddr("2001:db8::2"), Proto: 58, ICMPType: 128})
	var got2 map[string]any
	if err := json.Unmarshal(doc2, &got2); err != nil {
		t.Fatalf("second document is not JSON: %v\n%s", err, doc2)
	}
	if got2["netflow"].(map[string]any)["icmp_type_ipv6"] != 128.0 {
		t.Errorf("icmpv6 type missing: %s", doc2)
	}
}

func TestFieldsSortedAndUnique(t *testing.T) {
	seen := map[string]bool{}
	fs := Fields()
	for i, f := range fs {
		if seen[f.Name] {
			t.Errorf("field %s twice", f.Name)
		}
		seen[f.Name] = true
		if f.Description == "" || f.Type == "" {
			t.Errorf("field %s lacks a type or description", f.Name)
		}
		if i > 0 && compareNames(fs[i-1].Name, f.Name) >= 0 {
			t.Errorf("fields out of order: %s before %s", fs[i-1].Name, f.Name)
		}
	}
}

func TestJSONStringEscapes(t *testing.T) {
	in := "a\"b\\c\n\x01\xff€"
	var out string
	if err := json.Unmarshal(AppendJSONString(nil, in), &out); err != nil {
		t.Fatal(err)
	}
	if want := "a\"b\\c\n\x01\ufffd€"; out != want {
		t.Errorf("round trip = %q, want %q", out, want)
	}
}

func BenchmarkAppendDocument(b *testing.B) {
	start := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	r := Record{Kind: KindIPFIX, ObserverIP: netip.MustParseAddr("192.0.2.1"), Start: start, End: start.Add(time.Second),
		SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"), SrcPort: 40000, DstPort: 443,
		Proto: 6, Bytes: 1200, Packets: 10, InIf: 3, OutIf: 4}
	var e Encoder
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	cpu0 := testutil.CPUTime()
	for b.Loop() {
		buf = e.AppendDocument(buf[:0], &r)
	}
	// CPU time per document: the benchmark machine is often shared.
	cpu := testutil.CPUTime() - cpu0
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/doc")
}

func TestExtrasNeverDuplicateKeys(t *testing.T) {
	r := Record{Kind: KindIPFIX, ObservationDomain: 3, Extra: []Extra{
		{Name: "observation_domain_id", Num: 9}, {Name: "ip_ttl", Num: 64}, {Name: "ip_ttl", Num: 65}}}
	doc := string(new(Encoder).AppendDocument(nil, &r))
	if strings.Count(doc, `"observation_domain_id"`) != 1 || strings.Count(doc, `"ip_ttl"`) != 1 ||
		!strings.Contains(doc, `"observation_domain_id":3`) || !strings.Contains(doc, `"ip_ttl":64`) {
		t.Errorf("duplicate or wrong keys: %s", doc)
	}
}

// TestAppendTime checks the date arithmetic against the time package's
// formatting, across leap years, centuries and the ends of the range.
func TestAppendTime(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	times := []time.Time{time.Unix(0, 0), time.Unix(-1, 0), time.Date(2000, 2, 29, 23, 59, 59, 999e6, time.UTC),
		time.Date(2100, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(1900, 2, 28, 12, 0, 0, 0, time.FixedZone("x", 3600)),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(0, 3, 1, 0, 0, 0, 0, time.UTC)}
	for range 100000 {
		times = append(times, time.Unix(rng.Int64N(400*365*86400)-100*365*86400, rng.Int64N(1e9)))
	}
	for _, tm := range times {
		// Then the same day again, and the next: the cached date is used
		// and left.
		for _, tm := range []time.Time{tm, tm.Add(time.Millisecond), tm.Add(90 * time.Minute), tm.Add(25 * time.Hour)} {
			if got, want := string(appendTime(nil, tm)), tm.UTC().Format(timeLayout); got != want {
				t.Fatalf("%v: %s, want %s", tm, got, want)
			}
		}
	}
}

// appendJSONStringByByte is AppendJSONString as it was, byte by byte: the
// reference for its copy of plain runs.
func appendJSONStringByByte(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, "\ufffd"...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

func TestJSONStringMatchesByByte(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	pieces := []string{"a", "east-west", " ", "\"", "\\", "\n", "\x00", "\x1f", "\x7f", "\x80", "\xff", "é", "€", "😀", "\xe2\x82", "~"}
	for range 100000 {
		var s string
		for range rng.IntN(8) {
			if rng.IntN(3) == 0 {
				s += string(rune(rng.IntN(0x300)))
			} else {
				s += pieces[rng.IntN(len(pieces))]
			}
		}
		if got, want := string(AppendJSONString([]byte("x"), s)), string(appendJSONStringByByte([]byte("x"), s)); got != want {
			t.Fatalf("%q: %s, want %s", s, got, want)
		}
	}
	for c := range 256 {
		s := string([]byte{'a', byte(c), 'b'})
		if got, want := string(AppendJSONString(nil, s)), string(appendJSONStringByByte(nil, s)); got != want {
			t.Fatalf("%q: %s, want %s", s, got, want)
		}
	}
}
