package flow

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// fillRandom sets every field reachable from v (pointers allocated, slices of
// one to three elements) to random values, so that a field added to Record
// and forgotten by the wire encoding fails the round trip.
func fillRandom(rng *rand.Rand, v reflect.Value) {
	switch v.Type() {
	case reflect.TypeFor[netip.Addr]():
		var a netip.Addr
		if rng.IntN(2) == 0 {
			a = netip.AddrFrom4([4]byte{byte(rng.Uint32()), byte(rng.Uint32()), 1, 2})
		} else {
			var b [16]byte
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			a = netip.AddrFrom16(b)
		}
		v.Set(reflect.ValueOf(a))
		return
	case reflect.TypeFor[time.Time]():
		// Years far from 1970 too: they must not overflow.
		t := time.Unix(rng.Int64N(1<<40)-1<<39, rng.Int64N(1e9))
		v.Set(reflect.ValueOf(t))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			fillRandom(rng, v.Field(i))
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fillRandom(rng, v.Elem())
	case reflect.Slice:
		n := 1 + rng.IntN(3)
		v.Set(reflect.MakeSlice(v.Type(), n, n))
		for i := range n {
			fillRandom(rng, v.Index(i))
		}
	case reflect.Array:
		for i := range v.Len() {
			fillRandom(rng, v.Index(i))
		}
	case reflect.String:
		b := make([]byte, rng.IntN(20))
		for i := range b {
			b[i] = byte('a' + rng.IntN(26))
		}
		v.SetString(string(b))
	case reflect.Bool:
		v.SetBool(rng.IntN(2) == 1)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(rng.Uint64() >> (64 - v.Type().Bits()) >> rng.IntN(v.Type().Bits()))
	case reflect.Int64:
		v.SetInt(rng.Int64() - rng.Int64())
	case reflect.Float64:
		v.SetFloat(rng.NormFloat64() * 1e6)
	default:
		panic("fillRandom: no case for " + v.Type().String())
	}
}

var wireCmp = []cmp.Option{
	cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) }),
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
}

func TestWireRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		recs := make([]Record, 1+rng.IntN(4))
		for i := range recs {
			if round%5 != 0 { // every fifth round: empty records
				fillRandom(rng, reflect.ValueOf(&recs[i]).Elem())
			}
			// The counter and extra kinds decode as given; keep them in range.
			if r := &recs[i]; r.SFlowCounters != nil {
				for j := range r.SFlowCounters.Values {
					r.SFlowCounters.Values[j].Kind %= 3
				}
			}
		}
		msg := AppendWire(nil, recs)
		got, err := DecodeWire(msg, nil)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if diff := cmp.Diff(got, recs, wireCmp...); diff != "" {
			t.Fatalf("round %d: (-got, +want)\n%s", round, diff)
		}
		// The ids the indexer gives are the ids the collector would have.
		for i := range recs {
			if a, b := string(new(Encoder).AppendDocument(nil, &got[i])), string(new(Encoder).AppendDocument(nil, &recs[i])); a != b {
				t.Fatalf("round %d record %d: documents differ after the wire:\n%s\n%s", round, i, a, b)
			}
		}
	}
}

func TestWireRefusesBadMessages(t *testing.T) {
	good := AppendWire(nil, []Record{{Kind: KindIPFIX, SrcAddr: netip.MustParseAddr("10.0.0.1"), Bytes: 100,
		Extra: []Extra{{Name: "x", Raw: []byte("1")}}}})
	cases := map[string][]byte{
		"empty":         nil,
		"other magic":   []byte("XX\x01\x00"),
		"next version":  append([]byte{'S', 'F', WireVersion + 1}, good[3:]...),
		"cut":           good[:len(good)-3],
		"trailing":      append(append([]byte{}, good...), 0),
		"huge count":    {'S', 'F', WireVersion, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"bad addr size": append(append([]byte{}, good[:5]...), 7),
	}
	for name, msg := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := DecodeWire(msg, nil)
			if !errors.Is(err, ErrWire) || len(got) != 0 {
				t.Fatalf("got %d records, err %v; want ErrWire and none", len(got), err)
			}
		})
	}
}

func FuzzDecodeWire(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	var r Record
	fillRandom(rng, reflect.ValueOf(&r).Elem())
	f.Add(AppendWire(nil, []Record{r}))
	f.Add(AppendWire(nil, []Record{{}, {Kind: KindSFlow}}))
	f.Fuzz(func(t *testing.T, msg []byte) {
		recs, err := DecodeWire(msg, nil)
		if err != nil {
			return
		}
		// What decodes re-encodes to a message that decodes the same.
		again, err := DecodeWire(AppendWire(nil, recs), nil)
		if err != nil {
			t.Fatalf("re-encoded message refused: %v", err)
		}
		if diff := cmp.Diff(again, recs, append(wireCmp, cmpopts.EquateEmpty())...); diff != "" {
			t.Fatalf("(-again, +first)\n%s", diff)
		}
	})
}

func BenchmarkWire(b *testing.B) {
	recs := make([]Record, 30) // a typical IPFIX datagram's flows
	for i := range recs {
		recs[i] = Record{Kind: KindIPFIX, ObserverIP: netip.MustParseAddr("10.1.0.1"), ObservationDomain: 1,
			Received: time.Now(), Start: time.Now().Add(-time.Minute), End: time.Now(),
			SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"), SrcPort: 40000 + uint16(i), DstPort: 443,
			Proto: 6, Bytes: 123456, Packets: 100, InIf: 3, OutIf: 4, TCPFlags: 0x1b, Locality: "internal", Direction: "east-west"}
	}
	var buf []byte
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			buf = AppendWire(buf[:0], recs)
		}
		b.ReportMetric(float64(len(buf))/float64(len(recs)), "bytes/record")
		b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
	})
	msg := AppendWire(nil, recs)
	out := make([]Record, 0, len(recs))
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			var err error
			if out, err = DecodeWire(msg, out[:0]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
	})
}
