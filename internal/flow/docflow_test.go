package flow

import (
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// recordFiller fills a Record's every exported field, found by reflection
// (so a field added to Record later is filled too), from a stream of bytes:
// random ones in the test, the fuzzer's in the fuzz target. Zero values,
// absent pointers and empty strings come often, as in real records.
type recordFiller struct {
	src []byte
	rng *rand.Rand // when src runs out (or in the test), nil: zeros
}

func (f *recordFiller) byte() byte {
	if len(f.src) > 0 {
		c := f.src[0]
		f.src = f.src[1:]
		return c
	}
	if f.rng != nil {
		return byte(f.rng.Uint32())
	}
	return 0
}

func (f *recordFiller) uint64() uint64 {
	// Zero in a quarter of the cases, small numbers often, full width
	// sometimes.
	switch c := f.byte(); c & 3 {
	case 0:
		return 0
	case 1:
		return uint64(c >> 2)
	case 2:
		return uint64(f.byte())<<8 | uint64(f.byte())
	}
	var v uint64
	for range 8 {
		v = v<<8 | uint64(f.byte())
	}
	return v
}

var fillerStrings = []string{"", "", "", "a", "web-1 \"prod\"", "tab\there", "\xff\xfe", "€uro", "x\\y\n\x01\x7f",
	"ip_ttl", "observation_domain_id", "tcp_control_bits", "mpls_top_label_ttl", "internal", "east-west"}

func (f *recordFiller) string() string {
	c := f.byte()
	if c < 200 {
		return fillerStrings[int(c)%len(fillerStrings)]
	}
	n := int(f.byte() % 12)
	b := make([]byte, n)
	for i := range b {
		b[i] = f.byte()
	}
	return string(b)
}

var (
	addrType = reflect.TypeFor[netip.Addr]()
	timeType = reflect.TypeFor[time.Time]()
)

func (f *recordFiller) addr() netip.Addr {
	var a [16]byte
	for i := range a {
		if f.byte()&1 == 1 {
			a[i] = f.byte()
		}
	}
	switch f.byte() % 6 {
	case 0:
		return netip.Addr{}
	case 1, 2:
		return netip.AddrFrom4([4]byte(a[:4]))
	case 3:
		return netip.AddrFrom16(netip.AddrFrom4([4]byte(a[:4])).As16()) // IPv4-mapped
	case 4:
		return netip.AddrFrom16(a)
	}
	return netip.AddrFrom16(a).WithZone("eth0")
}

func (f *recordFiller) time(base time.Time) time.Time {
	switch f.byte() % 8 {
	case 0:
		return time.Time{}
	case 1:
		return base // the same instant as the end, as exporters often send
	case 2:
		// Far from now: before 1970, after 9999.
		return time.Unix(int64(f.uint64()), int64(f.byte())*1e6)
	case 3:
		return time.Unix(1764000000+int64(f.byte())*3600, int64(f.byte())*1e7).In(time.FixedZone("x", 3600))
	}
	return time.Unix(1764000000+int64(f.byte())*3600*int64(f.byte()%3), int64(f.byte())*1e7)
}

// fill sets v, any value of a Record.
func (f *recordFiller) fill(v reflect.Value) {
	switch v.Type() {
	case addrType:
		v.Set(reflect.ValueOf(f.addr()))
		return
	case timeType:
		v.Set(reflect.ValueOf(f.time(time.Time{})))
		return
	}
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(f.byte()&3 == 0)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(f.uint64())
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(f.uint64()))
	case reflect.Float64:
		v.SetFloat(float64(int64(f.uint64())) / 3)
	case reflect.String:
		v.SetString(f.string())
	case reflect.Array:
		if f.byte()&1 == 0 {
			return // a MAC unknown
		}
		for i := range v.Len() {
			f.fill(v.Index(i))
		}
	case reflect.Pointer:
		// Present in a quarter of the records: the flow shape must be
		// common and the others tried too.
		if f.byte()%4 != 0 {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		f.fill(v.Elem())
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 { // Extra.Raw: JSON as it is
			if c := f.byte(); c&3 == 0 {
				v.SetBytes([]byte(`-1.5`))
			} else if c&3 == 1 {
				v.SetBytes([]byte{})
			}
			return
		}
		n := int(f.byte() % 5)
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			f.fill(s.Index(i))
		}
		v.Set(s)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				f.fill(v.Field(i))
			}
		}
	default:
		panic("recordFiller: no rule for " + v.Type().String())
	}
}

func (f *recordFiller) record() Record {
	var r Record
	f.fill(reflect.ValueOf(&r).Elem())
	// Times that relate as they do in records: start at or before the end
	// (or anything), receive time near both.
	r.End = f.time(time.Time{})
	r.Start = f.time(r.End)
	r.Received = f.time(r.End)
	switch f.byte() % 4 { // the transports the document treats apart
	case 0:
		r.Proto = 6
	case 1:
		r.Proto = 17
	case 2:
		r.Proto = 1
	case 3:
		r.Proto = 58
	}
	return r
}

// checkFlowDocument fails when the flow-shape writer and the generic one
// disagree on r.
func checkFlowDocument(t *testing.T, e *Encoder, r *Record) {
	t.Helper()
	if !isFlowShape(r) {
		return
	}
	fast := string(e.AppendDocument(nil, r))
	generic := string(e.appendGeneric(nil, r))
	if fast != generic {
		t.Fatalf("flow document differs from the generic one for %+v\n got: %s\nwant: %s", *r, fast, generic)
	}
}

// TestFlowDocumentMatchesGeneric compares the two writers byte for byte on
// many varied records.
func TestFlowDocumentMatchesGeneric(t *testing.T) {
	f := recordFiller{rng: rand.New(rand.NewPCG(22, 1))}
	var e Encoder
	flows, n := 0, 200000
	if testing.Short() {
		n = 20000
	}
	for range n {
		r := f.record()
		if isFlowShape(&r) {
			flows++
		}
		checkFlowDocument(t, &e, &r)
	}
	if flows < n/4 {
		t.Errorf("only %d of %d records had the flow shape", flows, n)
	}
}

func FuzzFlowDocument(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a"))
	rng := rand.New(rand.NewPCG(7, 7))
	for range 8 {
		b := make([]byte, 256)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fl := recordFiller{src: data}
		r := fl.record()
		checkFlowDocument(t, new(Encoder), &r)
	})
}

// TestEncoderTimeCache checks the encoder's caches of days and seconds
// against the time package's formatting, days alternating as a stream's
// start and receive times do.
func TestEncoderTimeCache(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var e Encoder
	days := []int64{-800000, -1, 0, 1, 20000, 20427, 20428, 2932896, 2932897}
	for range 100000 {
		d := days[rng.IntN(len(days))]
		if rng.IntN(4) == 0 {
			d = rng.Int64N(400*365) - 100*365
		}
		tm := time.Unix(d*86400+rng.Int64N(86400), rng.Int64N(1e9))
		// Then the same second again (cached), and the next (not).
		for _, tm := range []time.Time{tm, tm.Add(time.Millisecond), tm.Add(time.Second)} {
			if got, want := string(e.appendTime(nil, tm)), tm.UTC().Format(timeLayout); got != want {
				t.Fatalf("%v: %s, want %s", tm, got, want)
			}
		}
	}
}

// TestEncoderCommunityID compares the encoder's community ids, read from
// the digest's state and through the fallback, with AppendCommunityID.
func TestEncoderCommunityID(t *testing.T) {
	f := recordFiller{rng: rand.New(rand.NewPCG(8, 8))}
	var state, fallback Encoder
	fallback.noSHA1State = true
	for range 20000 {
		r := f.record()
		want := string(AppendCommunityID(nil, &r))
		if got := string(state.appendCommunityID(nil, &r)); got != want {
			t.Fatalf("community id of %+v: %s, want %s", r, got, want)
		}
		if got := string(fallback.appendCommunityID(nil, &r)); got != want {
			t.Fatalf("community id of %+v without the state: %s, want %s", r, got, want)
		}
	}
	if state.sha1 == nil || fallback.sha1 != nil {
		t.Errorf("the digest's state was not read, or read when it should not be")
	}
}

// TestPlainNames: the names appendPlainString writes unscanned (every
// record kind, every transport) need no JSON escape.
func TestPlainNames(t *testing.T) {
	var names []string
	for k := range 256 {
		names = append(names, Kind(k).String(), TransportName(uint8(k)))
	}
	for _, n := range names {
		if got, want := string(appendPlainString(nil, n)), string(AppendJSONString(nil, n)); got != want {
			t.Errorf("%q written %s, needs %s", n, got, want)
		}
	}
}
