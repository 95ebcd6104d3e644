package decoders_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/bench/ipfixgen"
	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/decoders/netflow"
	"github.com/spanflow/spanflow/decoders/reason"
	"github.com/spanflow/spanflow/internal/flow"
)

// The tests here send what a host that can reach the collector's ports
// can send, and check that the decoder's memory stays within its limits
// and that every refusal is counted.

// ipfixIn wraps sets into an IPFIX message of one observation domain.
func ipfixIn(domain uint32, sets ...[]byte) []byte {
	b := make([]byte, 16)
	for _, s := range sets {
		b = append(b, s...)
	}
	binary.BigEndian.PutUint16(b, 10)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint32(b[12:], domain)
	return b
}

// zeroLengthTemplates is a template set of n templates from id on, each
// of one zero-length field: templates that cannot describe data.
func zeroLengthTemplates(id uint16, n int) []byte {
	var body []byte
	for i := range n {
		body = binary.BigEndian.AppendUint16(body, id+uint16(i))
		body = append(body, 0, 1, 0, 8, 0, 0) // one field: sourceIPv4Address, length 0
	}
	return set(2, body)
}

// wideTemplate is a template set holding one template of n one-byte fields.
func wideTemplate(id uint16, n int) []byte {
	body := binary.BigEndian.AppendUint16(nil, id)
	body = binary.BigEndian.AppendUint16(body, uint16(n))
	for range n {
		body = append(body, 0, 210, 0, 1) // paddingOctets, 1 byte
	}
	return set(2, body)
}

// heapInuse is the heap in use after a collection.
func heapInuse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

const mib = 1 << 20

// TestZeroLengthTemplateFlood: templates of zero-length fields (kept so
// that their data is counted as bad_template) count against the template
// limit; a flood of them from one exporter keeps memory bounded.
func TestZeroLengthTemplateFlood(t *testing.T) {
	cfg := decoders.DefaultConfiguration()
	dec, _ := decoders.New(cfg)
	const perMsg, msgs = 172, 6000 // 1,396-byte datagrams, 8 MB in all
	before := heapInuse()
	now := time.Now()
	var refused reason.Tally
	for i := range msgs {
		// Every template key (domain, id) is new.
		_, res, err := dec.Decode(dg("192.0.2.1:1", ipfixIn(uint32(i), zeroLengthTemplates(256, perMsg)), now), nil)
		if res.Refused.Total() > 0 && reason.Of(err) != reason.TemplateLimit {
			t.Fatalf("datagram %d: %d templates refused, error %v", i, res.Refused.Total(), err)
		}
		refused.Merge(res.Refused)
	}
	grown := heapInuse() - before
	u, _ := dec.Usage(netip.MustParseAddr("192.0.2.1"))
	t.Logf("%d zero-length templates in %d datagrams (%.1f MB): heap grew %.1f MiB; kept %d (%d bytes counted), refused %v",
		perMsg*msgs, msgs, float64(msgs*1396)/1e6, float64(grown)/mib, u.InvalidTemplates, u.Bytes, refused)
	if grown > 16*mib {
		t.Errorf("heap grew %.1f MiB for templates that cannot describe data", float64(grown)/mib)
	}
	if u.Templates+u.InvalidTemplates > cfg.MaxTemplatesPerExporter {
		t.Errorf("%d templates kept, limit %d", u.Templates+u.InvalidTemplates, cfg.MaxTemplatesPerExporter)
	}
	// Each template not kept is counted once, under the template limit.
	if n := perMsg*msgs - u.InvalidTemplates; refused.Count(reason.TemplateLimit) != n || refused.Total() != n {
		t.Errorf("refusals %s, want %d template_limit and nothing else", refused, n)
	}
	runtime.KeepAlive(dec)
}

// TestHugeTemplatesBounded: templates of 16,370 fields (the most a
// datagram holds), many per exporter from several exporters, stay within
// the per-exporter bytes.
func TestHugeTemplatesBounded(t *testing.T) {
	const exporters, fields = 8, 16370
	for _, tc := range []struct {
		name                  string
		perExporter, maxTotal int
		templates             int // sent per exporter
		want                  []string
	}{
		{"per exporter", 4 * mib, 256 * mib, 100, []string{reason.ExporterMemoryLimit}},
		{"total", 1 * mib, 3 * mib, 20, []string{reason.ExporterMemoryLimit, reason.MemoryLimit}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := decoders.DefaultConfiguration()
			cfg.MaxBytesPerExporter, cfg.MaxBytes = tc.perExporter, tc.maxTotal
			dec, err := decoders.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			before := heapInuse()
			now := time.Now()
			msg := ipfixIn(1, wideTemplate(256, fields))
			var refused reason.Tally
			for e := range exporters {
				for i := range tc.templates {
					binary.BigEndian.PutUint16(msg[20:], uint16(256+i)) // template id
					_, res, _ := dec.Decode(dg(fmt.Sprintf("192.0.2.%d:1", e+1), msg, now), nil)
					refused.Merge(res.Refused)
				}
			}
			grown := heapInuse() - before
			kept := 0
			for e := range exporters {
				u, _ := dec.Usage(netip.AddrFrom4([4]byte{192, 0, 2, byte(e + 1)}))
				kept += u.Templates
				if u.Bytes > tc.perExporter {
					t.Errorf("exporter %d: %d bytes, limit %d", e+1, u.Bytes, tc.perExporter)
				}
			}
			t.Logf("%d exporters × %d templates of %d fields (%.0f MB sent): %d kept, %.1f MiB counted, heap grew %.1f MiB; refused %v",
				exporters, tc.templates, fields, float64(exporters*tc.templates*len(msg))/1e6, kept,
				float64(dec.Bytes())/mib, float64(grown)/mib, refused)
			if dec.Bytes() > tc.maxTotal {
				t.Errorf("%d bytes counted, limit %d", dec.Bytes(), tc.maxTotal)
			}
			// The estimate follows the heap: what it counts is what is kept.
			if grown > int64(dec.Bytes())*5/4+2*mib {
				t.Errorf("heap grew %.1f MiB, %.1f MiB counted", float64(grown)/mib, float64(dec.Bytes())/mib)
			}
			if n := exporters*tc.templates - kept; refused.Total() != n {
				t.Errorf("%d refusals counted %v, %d templates not kept", refused.Total(), refused, n)
			}
			for _, why := range tc.want {
				if refused.Count(why) == 0 {
					t.Errorf("no %s refusal: %v", why, refused)
				}
			}
			runtime.KeepAlive(dec)
		})
	}
}

// optionsNames returns the options template (scope ingressInterface,
// option interfaceName of variable length) and data sets naming the
// interfaces given, at most per records a set.
func optionsNames(names map[uint32]string, order []uint32, per int) (tpl []byte, sets [][]byte) {
	body := binary.BigEndian.AppendUint16(nil, 300)
	body = binary.BigEndian.AppendUint16(body, 2) // field count
	body = binary.BigEndian.AppendUint16(body, 1) // scope field count
	body = append(body, 0, 10, 0, 4, 0, 82, 0xff, 0xff)
	tpl = set(3, body)
	var data []byte
	for i, idx := range order {
		data = binary.BigEndian.AppendUint32(data, idx)
		n := names[idx]
		if len(n) < 255 {
			data = append(data, byte(len(n)))
		} else {
			data = append(data, 0xff)
			data = binary.BigEndian.AppendUint16(data, uint16(len(n)))
		}
		data = append(data, n...)
		if (i+1)%per == 0 || i == len(order)-1 {
			sets = append(sets, set(300, data))
			data = nil
		}
	}
	return tpl, sets
}

// TestInterfaceNamesBounded: interface names from options records are
// truncated, and an exporter's names are bounded in number.
func TestInterfaceNamesBounded(t *testing.T) {
	cfg := decoders.DefaultConfiguration()
	dec, _ := decoders.New(cfg)
	long := strings.Repeat("x", 300)
	names := map[uint32]string{3: long, 4: "vmnic1"}
	order := []uint32{3}
	const others = 20000
	for i := range uint32(others) {
		names[1000+i] = fmt.Sprintf("Ethernet%d/%d", i/48, i%48)
		order = append(order, 1000+i)
	}
	order = append(order, 4) // past the limit: not kept
	tpl, sets := optionsNames(names, order, 50)
	now := time.Now()
	if _, _, err := dec.Decode(dg("192.0.2.1:1", ipfixIn(1, tpl), now), nil); err != nil {
		t.Fatal(err)
	}
	var refused reason.Tally
	for _, s := range sets {
		_, res, _ := dec.Decode(dg("192.0.2.1:1", ipfixIn(1, s), now), nil)
		refused.Merge(res.Refused)
	}
	u, _ := dec.Usage(netip.MustParseAddr("192.0.2.1"))
	t.Logf("%d interface names sent, %d kept (%d bytes counted), refused %v", len(order), u.InterfaceNames, u.Bytes, refused)
	if u.InterfaceNames != cfg.MaxInterfaceNamesPerExporter {
		t.Errorf("%d interface names kept, want the limit, %d", u.InterfaceNames, cfg.MaxInterfaceNamesPerExporter)
	}
	if n := len(order) - u.InterfaceNames; refused.Count(reason.OptionsLimit) != n || refused.Total() != n {
		t.Errorf("refusals %s, want %d options_limit and nothing else", refused, n)
	}
	g := ipfixgen.New(1, 3) // records with ingress 3, egress 4
	dec.Decode(dg("192.0.2.1:1", g.Template(), now), nil)
	recs, _, err := dec.Decode(dg("192.0.2.1:1", g.AppendData(nil), now), nil)
	if err != nil || len(recs) != 3 {
		t.Fatalf("%d records, err %v", len(recs), err)
	}
	if r := recs[0]; r.InIfName != long[:64] || r.OutIfName != "" {
		t.Errorf("interface 3 named %d bytes (want 64), interface 4 named %q (want none: past the limit)", len(r.InIfName), r.OutIfName)
	}
	// Withdrawing the templates forgets the domain and gives back every byte.
	withdraw := ipfixIn(1, set(2, []byte{1, 0, 0, 0}), set(3, []byte{1, 44, 0, 0, 0, 0}))
	if _, _, err := dec.Decode(dg("192.0.2.1:1", withdraw, now), nil); err != nil {
		t.Fatal(err)
	}
	if u, _ := dec.Usage(netip.MustParseAddr("192.0.2.1")); u != (netflow.Usage{}) || dec.Bytes() != 0 {
		t.Errorf("after withdrawing every template: %+v, %d bytes counted in all", u, dec.Bytes())
	}
}

// TestNoBufferPerExporter: an exporter's state does not keep a copy of
// the biggest datagram it sent; 1,000 exporters of one 50 kB datagram each
// cost a few kB each.
func TestNoBufferPerExporter(t *testing.T) {
	dec, _ := decoders.New(decoders.DefaultConfiguration())
	g := ipfixgen.New(1, 700)
	msg := append(g.Template(), g.AppendData(nil)[16:]...) // template and data sets, one message
	binary.BigEndian.PutUint16(msg[2:], uint16(len(msg)))
	now := time.Now()
	var out []flow.Record
	before := heapInuse()
	for i := range 1000 {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 1)
		var err error
		if out, _, err = dec.Decode(decoders.Datagram{Source: src, Payload: msg, Received: now}, out[:0]); err != nil || len(out) != 700 {
			t.Fatalf("%d records: %v", len(out), err)
		}
	}
	out = nil
	per := (heapInuse() - before) / 1000
	t.Logf("1,000 exporters of one %d-byte datagram: %d bytes each", len(msg), per)
	if per > 8<<10 {
		t.Errorf("%d bytes kept per exporter", per)
	}
	runtime.KeepAlive(dec)
}

// TestTemplateFieldCountChecked: a template whose field count is more than
// its set holds is refused before goflow2 allocates for that count.
func TestTemplateFieldCountChecked(t *testing.T) {
	dec, _ := decoders.New(decoders.DefaultConfiguration())
	for _, msg := range [][]byte{
		ipfixIn(1, set(2, []byte{1, 0, 0xff, 0xff, 0, 8, 0, 4})),              // template of 65,535 fields, 1 given
		ipfixIn(1, set(3, []byte{1, 0, 0xff, 0xff, 0xff, 0xff, 0, 10, 0, 4})), // options template
	} {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		var err error
		for range 100 {
			_, _, err = dec.Decode(dg("192.0.2.1:1", msg, time.Now()), nil)
		}
		runtime.ReadMemStats(&m1)
		per := (m1.TotalAlloc - m0.TotalAlloc) / 100
		t.Logf("%d-byte datagram: %d bytes allocated per decode: %v", len(msg), per, err)
		if reason.Of(err) != reason.Template || per > 4096 {
			t.Errorf("%d bytes allocated per decode, error %v: want bad_template, a few hundred bytes", per, err)
		}
	}
}

// TestObservationDomainsBounded: an exporter cannot spread its templates
// over more observation domains than the limit.
func TestObservationDomainsBounded(t *testing.T) {
	dec, _ := decoders.New(decoders.DefaultConfiguration())
	a := netip.MustParseAddr("192.0.2.1")
	now := time.Now()
	const sent = 2000
	var refused reason.Tally
	for d := range uint32(sent) {
		_, res, err := dec.Decode(dg("192.0.2.1:1", ipfixgen.New(d, 1).Template(), now), nil)
		if res.Refused.Total() > 0 && reason.Of(err) != reason.DomainLimit {
			t.Fatalf("domain %d: refused %v, error %v", d, res.Refused, err)
		}
		refused.Merge(res.Refused)
	}
	if n := sent - 256; refused.Count(reason.DomainLimit) != n || refused.Total() != n {
		t.Errorf("refusals %s, want %d domain_limit and nothing else", refused, n)
	}
	kept := 0
	for d := range uint32(sent) {
		if dec.DomainTemplates(a, flow.KindIPFIX, d) > 0 {
			kept++
		}
	}
	if kept > 256 {
		t.Errorf("templates kept in %d observation domains, want at most 256", kept)
	}
	// A domain that got in still decodes.
	recs, _, err := dec.Decode(dg("192.0.2.1:1", ipfixgen.New(0, 5).AppendData(nil), now), nil)
	if err != nil || len(recs) != 5 {
		t.Errorf("domain 0: %d records, err %v", len(recs), err)
	}
}

// TestSpoofedSourcesExpire: 10,000 spoofed sources of one datagram each
// fill the exporter table. A real exporter gets in at once, in the place of
// a source that delivered no record, and 10,000 more spoofed sources do
// not take its place; once every source has been silent for the idle time
// all are forgotten, their held sets counted, and the real exporter, back,
// is decoded afresh.
func TestSpoofedSourcesExpire(t *testing.T) {
	cfg := decoders.DefaultConfiguration()
	cfg.MaxBytes = 32 * mib // of held data here: the test's heap stays small
	dec, _ := decoders.New(cfg)
	now := time.Unix(1_800_000_000, 0)
	g := ipfixgen.New(1, 10)
	tpl, big := g.Template(), ipfixgen.New(1, 700).AppendData(nil) // 50 kB
	before := heapInuse()
	var refused reason.Tally
	held := 0
	for i := range 10000 {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 1)
		p := tpl
		if i%2 == 1 {
			p = big // held, waiting for its template
		}
		_, res, _ := dec.Decode(decoders.Datagram{Source: src, Payload: p, Received: now}, nil)
		refused.Merge(res.Refused)
		held += res.Held
	}
	grown := heapInuse() - before
	t.Logf("10,000 spoofed sources: heap grew %.1f MiB (%.1f MiB counted, %.0f bytes per source beyond it); refused %v",
		float64(grown)/mib, float64(dec.Bytes())/mib, float64(grown-int64(dec.Bytes()))/10000, refused)
	// Held data takes half of the total at most: every template got in.
	if dec.Bytes() > cfg.MaxBytes || refused.Count(reason.MemoryLimit) != 5000-held || refused.Total() != 5000-held {
		t.Errorf("%d bytes counted (limit %d), %d sets held, refused %v: want the held data bounded by half the total, and nothing else refused",
			dec.Bytes(), cfg.MaxBytes, held, refused)
	}
	if perSource := (grown - int64(dec.Bytes())) / 10000; perSource > 4096 {
		t.Errorf("%d bytes per spoofed source beyond what is counted", perSource)
	}
	real := "198.51.100.7:4739"
	decodeAll := func(at time.Time, withTemplate bool) int {
		t.Helper()
		if withTemplate {
			if _, _, err := dec.Decode(dg(real, tpl, at), nil); err != nil {
				t.Fatalf("template of the real exporter: %v", err)
			}
		}
		var recs []flow.Record
		for range 10 {
			var err error
			if recs, _, err = dec.Decode(dg(real, g.AppendData(nil), at), recs); err != nil {
				t.Fatalf("data of the real exporter: %v", err)
			}
		}
		return len(recs)
	}
	if n := decodeAll(now.Add(time.Second), true); n != 100 {
		t.Errorf("during the flood: %d flows decoded, the exporter sent 100", n)
	}
	if n := dec.EvictedExporters(); n != 1 {
		t.Errorf("%d exporters evicted for the real one, want 1", n)
	}
	for i := range 10000 {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)}), 1)
		if _, _, err := dec.Decode(decoders.Datagram{Source: src, Payload: []byte("garbage"), Received: now.Add(2 * time.Second)}, nil); reason.Of(err) == reason.ExporterLimit {
			t.Fatalf("spoofed source %d refused: the table holds unproven sources to evict", i)
		}
	}
	// The real exporter kept its place and its template: data alone decodes.
	if n := decodeAll(now.Add(3*time.Second), false); n != 100 {
		t.Errorf("after 10,000 more spoofed sources: %d flows decoded without the template again, want 100", n)
	}
	if n := dec.EvictedExporters(); n != 10001 || dec.Exporters() != cfg.MaxExporters {
		t.Errorf("%d evicted, %d kept: want 10,001 evicted, the table full", n, dec.Exporters())
	}
	later := now.Add(16 * time.Minute)
	dropped := 0
	for _, n := range dec.Expire(later) {
		dropped += n
	}
	if dropped != held {
		t.Errorf("eviction and expiry dropped %d held sets, %d were held", dropped, held)
	}
	if n := dec.ExpiredExporters(); n != 10000 {
		t.Errorf("%d exporters expired, want 10000", n)
	}
	if dec.Bytes() != 0 {
		t.Errorf("%d bytes still counted for forgotten exporters", dec.Bytes())
	}
	if n := decodeAll(later, true); n != 100 {
		t.Errorf("back after the idle time: %d flows decoded, the exporter sent 100", n)
	}
	if n := dec.Exporters(); n != 1 {
		t.Errorf("%d exporters kept, want the real one", n)
	}
	if u, _ := dec.Usage(netip.MustParseAddr("198.51.100.7")); u.Bytes != dec.Bytes() || u.Templates != 1 {
		t.Errorf("the real exporter counts %d bytes (%d templates), all exporters %d", u.Bytes, u.Templates, dec.Bytes())
	}
}
