package decoders_test

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/pcapreplay"
	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/decoders/reason"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/testutil"
)

var fuzzSource = netip.MustParseAddrPort("192.0.2.1:50000")

// seedFromCaptures adds the datagrams of the shared captures of one protocol
// to the fuzz corpus (when the captures are there; testdata/fuzz has more).
func seedFromCaptures(f *testing.F, kind flow.Kind) {
	dir := os.Getenv("SPANFLOW_SHARED_TESTDATA")
	if dir == "" {
		dir = filepath.Join(testutil.ModuleRoot(), "..", "shared", "testdata")
	}
	n := 0
	filepath.WalkDir(filepath.Join(dir, "flows"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.Contains(p, ".pcap") || n > 200 {
			return nil
		}
		pcapreplay.Read(p, func(dg decoders.Datagram, _ netip.AddrPort) error {
			if decoders.Protocol(dg.Payload) == kind && n < 200 {
				f.Add(append([]byte(nil), dg.Payload...))
				n++
			}
			return nil
		})
		return nil
	})
}

// fuzzDecode feeds the payload twice (so template state built by the first
// is used by the second) and checks that only counted errors come out.
func fuzzDecode(t *testing.T, payload []byte) {
	dec, err := decoders.New(decoders.DefaultConfiguration())
	if err != nil {
		t.Fatal(err)
	}
	var out []flow.Record
	var enc flow.Encoder
	for range 2 {
		out, _, err = dec.Decode(decoders.Datagram{Source: fuzzSource, Payload: payload, Received: time.Unix(1e9, 0)}, out[:0])
		if err != nil && reason.Of(err) == "other" {
			t.Fatalf("error without a reason: %v", err)
		}
		for i := range out {
			enc.AppendDocument(nil, &out[i])
		}
	}
	dec.Flush()
	// One exporter: its state is all the state there is, within its limit.
	if u, ok := dec.Usage(fuzzSource.Addr()); !ok || u.Bytes != dec.Bytes() || u.Bytes > decoders.DefaultConfiguration().MaxBytesPerExporter || u.Pending != 0 {
		t.Fatalf("state %+v, %d bytes counted in all", u, dec.Bytes())
	}
}

func FuzzNetFlowV5(f *testing.F) {
	seedFromCaptures(f, flow.KindNetFlowV5)
	f.Add([]byte{0, 5, 0, 1})
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) >= 2 {
			binary.BigEndian.PutUint16(p, 5)
		}
		fuzzDecode(t, p)
	})
}

func FuzzNetFlowV9(f *testing.F) {
	seedFromCaptures(f, flow.KindNetFlowV9)
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) >= 2 {
			binary.BigEndian.PutUint16(p, 9)
		}
		fuzzDecode(t, p)
	})
}

func FuzzIPFIX(f *testing.F) {
	seedFromCaptures(f, flow.KindIPFIX)
	f.Add(sectionMessage())    // packet sections, parsed by the exporter's frame decoder
	f.Add(elementsMessage())   // typed IANA and vendor elements
	f.Add(structuredMessage()) // RFC 6313 lists, nested
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) >= 4 {
			binary.BigEndian.PutUint16(p, 10)
			binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
		}
		fuzzDecode(t, p)
	})
}

func FuzzSFlow(f *testing.F) {
	seedFromCaptures(f, flow.KindSFlow)
	// The generated captures: raw IP headers, drops, counter structures.
	files, _ := filepath.Glob(filepath.Join("sflow", "testdata", "*.pcap"))
	for _, p := range files {
		pcapreplay.Read(p, func(dg decoders.Datagram, _ netip.AddrPort) error {
			f.Add(append([]byte(nil), dg.Payload...))
			return nil
		})
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) >= 4 {
			binary.BigEndian.PutUint32(p, 5)
		}
		fuzzDecode(t, p)
	})
}

// TestMalformedCaptures runs every shared malformed capture (flow or not)
// through the decoder: no panic, and every failure is a counted reason.
func TestMalformedCaptures(t *testing.T) {
	dir := filepath.Join(testutil.SharedTestdata(t), "malformed")
	files := 0
	errs := map[string]int{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(p, ".pcap") || strings.HasSuffix(p, ".pcapng")) {
			return nil
		}
		files++
		dec, _ := decoders.New(decoders.DefaultConfiguration())
		var out []flow.Record
		pcapreplay.Read(p, func(dg decoders.Datagram, _ netip.AddrPort) error {
			var err error
			out, _, err = dec.Decode(dg, out[:0])
			if err != nil {
				why := reason.Of(err)
				if why == "other" {
					t.Errorf("%s: error without a reason: %v", p, err)
				}
				errs[why]++
			}
			return nil
		})
		return nil
	})
	if files == 0 {
		t.Fatal("no malformed captures found")
	}
	t.Logf("%d captures, errors by reason: %v", files, errs)
	// The three logstash-derived NetFlow captures are invalid on purpose.
	if errs[reason.Short]+errs[reason.Header]+errs[reason.Set] < 3 {
		t.Errorf("the invalid NetFlow captures were not all counted as errors: %v", errs)
	}
}

// TestRandomGarbage: random datagrams with each protocol's version in front.
func TestRandomGarbage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dec, _ := decoders.New(decoders.DefaultConfiguration())
	var out []flow.Record
	counted := 0
	for i := range 20000 {
		p := make([]byte, rng.IntN(1500))
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		if len(p) >= 4 {
			switch i % 5 {
			case 0:
				binary.BigEndian.PutUint16(p, 5)
			case 1:
				binary.BigEndian.PutUint16(p, 9)
			case 2:
				binary.BigEndian.PutUint16(p, 10)
				binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
			case 3:
				binary.BigEndian.PutUint32(p, 5)
			}
		}
		var err error
		out, _, err = dec.Decode(decoders.Datagram{Source: fuzzSource, Payload: p, Received: time.Now()}, out[:0])
		if err != nil {
			if reason.Of(err) == "other" {
				t.Fatalf("error without a reason: %v", err)
			}
			counted++
		}
	}
	if counted == 0 {
		t.Error("20000 random datagrams and not one error")
	}
}
