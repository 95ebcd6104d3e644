package elasticsearch

import (
	"crypto/sha256"
	"encoding/base64"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/flow"
)

// BenchmarkDocumentID is the id of one flow report, IPv4 and IPv6 (the
// SHA-256 input of the IPv4 one fits in one block, the IPv6 one in two).
func BenchmarkDocumentID(b *testing.B) {
	end := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for _, fam := range []struct{ name, obs, src, dst string }{
		{"ipv4", "192.0.2.1", "10.0.0.1", "10.0.0.2"},
		{"ipv6", "2001:db8::1", "2001:db8:1::10", "2001:db8:2::20"},
	} {
		r := flow.Record{Kind: flow.KindIPFIX, ObserverIP: netip.MustParseAddr(fam.obs), ObservationDomain: 7,
			Start: end.Add(-time.Second), End: end, Received: end.Add(time.Second),
			SrcAddr: netip.MustParseAddr(fam.src), DstAddr: netip.MustParseAddr(fam.dst),
			SrcPort: 1234, DstPort: 443, Proto: 6, Bytes: 1500, Packets: 3, InIf: 3, OutIf: 4, TCPFlags: 0x1b}
		// As Write computes them: one hasher, into a buffer.
		b.Run(fam.name, func(b *testing.B) {
			var h idHasher
			buf := make([]byte, 0, idLen)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				r.Bytes = uint64(i)
				buf = h.appendID(buf[:0], &r)
			}
		})
	}
}

// TestIdentityInjective: pairs of records that differ in one to three
// fields, drawn from small value sets (so that zero and non-zero values,
// short and long varints, IPv4 and IPv6 mix), have the same identity bytes
// exactly when the fields DocumentID names are the same.
func TestIdentityInjective(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(n int) int { return rng.IntN(n) }
	addrs := []netip.Addr{{}, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"),
		netip.MustParseAddr("::ffff:10.0.0.3"), netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("2001:db8::1"),
		netip.MustParseAddr("::"), netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("6.0.0.1")}
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	times := []time.Time{{}, t0, t0.Add(time.Millisecond), t0.Add(-time.Hour), t0.Add(300 * time.Second)}
	macs := []flow.MAC{{}, {1, 2, 3, 4, 5, 6}, {0, 0, 0, 0, 0, 1}}
	small := func() uint64 { return []uint64{0, 1, 2, 127, 128, 300, 1 << 40}[pick(7)] }
	// Each setter draws one field anew.
	setters := []func(r *flow.Record){
		func(r *flow.Record) { r.Kind = flow.Kind(pick(3)) },
		func(r *flow.Record) { r.ObserverIP = addrs[pick(len(addrs))] },
		func(r *flow.Record) { r.ObservationDomain = uint32(small()) },
		func(r *flow.Record) { r.ObservationPoint = small() },
		func(r *flow.Record) { r.Start = times[pick(len(times))] },
		func(r *flow.Record) { r.End = times[pick(len(times))] },
		func(r *flow.Record) { r.Received = times[pick(len(times))] },
		func(r *flow.Record) { r.SrcAddr = addrs[pick(len(addrs))] },
		func(r *flow.Record) { r.DstAddr = addrs[pick(len(addrs))] },
		func(r *flow.Record) { r.SrcPort = uint16(small()) },
		func(r *flow.Record) { r.DstPort = uint16(small()) },
		func(r *flow.Record) { r.Proto = uint8(small()) },
		func(r *flow.Record) { r.TOS = uint8(pick(2)) },
		func(r *flow.Record) { r.ICMPType = uint8(pick(2)) },
		func(r *flow.Record) { r.ICMPCode = uint8(pick(2)) },
		func(r *flow.Record) { r.EndReason = uint8(pick(2)) },
		func(r *flow.Record) { r.SrcMAC = macs[pick(len(macs))] },
		func(r *flow.Record) { r.DstMAC = macs[pick(len(macs))] },
		func(r *flow.Record) { r.VLAN = uint16(small()) },
		func(r *flow.Record) { r.InnerVLAN = uint16(pick(2)) },
		func(r *flow.Record) { r.SegmentID = small() },
		func(r *flow.Record) { r.TCPFlags = uint16(small()) },
		func(r *flow.Record) { r.Bytes = small() },
		func(r *flow.Record) { r.Packets = small() },
		func(r *flow.Record) { r.SamplingRate = uint32(pick(2)) },
		func(r *flow.Record) { r.InIf = uint32(small()) },
		func(r *flow.Record) { r.OutIf = uint32(small()) },
		func(r *flow.Record) {
			if pick(2) == 0 {
				r.Counters = nil
			} else {
				r.Counters = &flow.IfCounters{Index: uint32(pick(2)), InOctets: small(), Status: uint32(pick(2))}
			}
		},
		func(r *flow.Record) {
			// The direction an exporter saw the flow in is part of the
			// identity; other elements are not.
			r.Extra = [][]flow.Extra{nil, {{Name: "flow_direction", Num: 0}}, {{Name: "flow_direction", Num: 1}},
				{{Name: "ip_next_hop_ipv4_address", Str: "10.0.0.1", IsStr: true}, {Name: "flow_direction", Num: 1}},
				{{Name: "vmware_flow_direction", Num: 1}}, {{Name: "ingress_vrfid", Num: 1}}}[pick(6)]
		},
		func(r *flow.Record) {
			if pick(2) == 0 {
				r.Exporter = nil
			} else {
				r.Exporter = &flow.ExporterStats{Datagrams: small(), Templates: small()}
			}
		},
	}
	same, differ := 0, 0
	for range 300_000 {
		var a flow.Record
		for _, set := range setters {
			set(&a)
		}
		b := a
		for range 1 + pick(3) {
			setters[pick(len(setters))](&b)
		}
		equal := identityFields(&a) == identityFields(&b)
		if equal != (string(identityOf(nil, &a)) == string(identityOf(nil, &b))) {
			t.Fatalf("identity bytes equal: %t, fields equal: %t:\n%+v\n%+v", !equal, equal, identityFields(&a), identityFields(&b))
		}
		if equal {
			same++
		} else {
			differ++
		}
	}
	if same < 10_000 || differ < 200_000 {
		t.Errorf("%d pairs the same, %d different: the draw is too narrow to test both ways", same, differ)
	}
}

// idFields is what DocumentID identifies a flow report by, as documented
// in docs/elasticsearch.md, comparable.
type idFields struct {
	kind                              flow.Kind
	obs, src, dst                     netip.Addr
	domain                            uint32
	point, segment, bytes, packets    uint64
	start, end                        int64
	sport, dport, vlan, inner, tflags uint16
	proto, tos, it, ic, reason        uint8
	smac, dmac                        flow.MAC
	sampling, in, out                 uint32
	counters                          flow.IfCounters
	hasCounters                       bool
	exporter                          flow.ExporterStats
	hasExporter                       bool
	direction                         [3]int64 // flow_direction, biflow_direction, vmware_flow_direction; -1 = absent
}

func identityFields(r *flow.Record) idFields {
	ns := func(t time.Time) int64 {
		if t.IsZero() {
			return -1
		}
		return t.UnixNano()
	}
	end := r.End
	if end.IsZero() {
		end = r.Received // the documented exception: no end time
	}
	f := idFields{kind: r.Kind, obs: r.ObserverIP.Unmap(), src: r.SrcAddr.Unmap(), dst: r.DstAddr.Unmap(),
		domain: r.ObservationDomain, point: r.ObservationPoint, segment: r.SegmentID, bytes: r.Bytes,
		packets: r.Packets, start: ns(r.Start), end: ns(end), sport: r.SrcPort, dport: r.DstPort, vlan: r.VLAN,
		inner: r.InnerVLAN, tflags: r.TCPFlags, proto: r.Proto, tos: r.TOS, it: r.ICMPType, ic: r.ICMPCode,
		reason: r.EndReason, smac: r.SrcMAC, dmac: r.DstMAC, sampling: r.SamplingRate, in: r.InIf, out: r.OutIf}
	if r.Counters != nil {
		f.counters, f.hasCounters = *r.Counters, true
	}
	if r.Exporter != nil {
		f.exporter, f.hasExporter = *r.Exporter, true
	}
	f.direction = [3]int64{-1, -1, -1}
	for _, e := range r.Extra {
		for j, name := range []string{"flow_direction", "biflow_direction", "vmware_flow_direction"} {
			if e.Name == name {
				f.direction[j] = int64(e.Num)
			}
		}
	}
	return f
}

// TestIDHasherIsSHA256: the ids the hasher pads and sums itself are the
// first 128 bits of crypto/sha256's sum of the identity, in base64url, for
// identities of every length from one block to three (every remainder
// modulo the block size, the padding's edge cases 55 and 56 among them),
// through one hasher as a Write call uses it and through a fresh one.
func TestIDHasherIsSHA256(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 7))
	big := func() uint64 { return rng.Uint64() >> rng.IntN(64) }
	t0 := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	var h idHasher
	lens := map[int]bool{}
	for range 200_000 {
		r := flow.Record{Kind: flow.Kind(rng.IntN(3)), Start: t0.Add(-time.Duration(rng.IntN(1e9))), End: t0,
			SrcPort: uint16(rng.Uint32()), DstPort: uint16(rng.Uint32()), Proto: uint8(rng.Uint32()),
			Bytes: big(), Packets: big(), InIf: uint32(big()), OutIf: uint32(big())}
		addr := func() netip.Addr {
			var v [16]byte
			for i := range v {
				v[i] = byte(rng.Uint32())
			}
			if rng.IntN(2) == 0 {
				return netip.AddrFrom4([4]byte(v[:4]))
			}
			return netip.AddrFrom16(v)
		}
		r.ObserverIP, r.SrcAddr, r.DstAddr = addr(), addr(), addr()
		if rng.IntN(2) == 0 {
			r.ObservationDomain, r.ObservationPoint, r.SegmentID = uint32(big()), big(), big()
		}
		if rng.IntN(2) == 0 {
			r.SrcMAC, r.DstMAC = flow.MAC{1, 2, 3, 4, 5, byte(rng.Uint32())}, flow.MAC{6, 5, 4, 3, 2, 1}
		}
		if rng.IntN(4) == 0 {
			r.Counters = &flow.IfCounters{Index: uint32(big()), InOctets: big(), OutOctets: big(), InErrors: big()}
		}
		if rng.IntN(4) == 0 {
			r.Exporter = &flow.ExporterStats{Datagrams: big(), Records: big(), Templates: big()}
		}
		in := identityOf(nil, &r)
		lens[len(in)] = true
		sum := sha256.Sum256(in)
		want := base64.RawURLEncoding.EncodeToString(sum[:16])
		if got := string(h.appendID([]byte("x"), &r)[1:]); got != want {
			t.Fatalf("identity of %d bytes: id %q, want %q", len(in), got, want)
		}
		if got := DocumentID(&r); got != want {
			t.Fatalf("identity of %d bytes: DocumentID %q, want %q", len(in), got, want)
		}
	}
	// Every length from 43 to 180 bytes: one block to three, every
	// remainder modulo the block size twice.
	for n := 43; n <= 180; n++ {
		if !lens[n] {
			t.Errorf("no identity of %d bytes drawn", n)
		}
	}
}
