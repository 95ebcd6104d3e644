package sflow_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/spanflow/spanflow/decoders/reason"
	"github.com/spanflow/spanflow/decoders/sflow"
)

// enterprise is an sFlow data format of an enterprise (top 20 bits).
func enterprise(pen, format uint32) uint32 { return pen<<12 | format }

// TestUnknownStructuresSkipped builds a datagram with a sample of a format
// spanflow does not read (enterprise 4413, format 1) between known ones,
// and records of unknown formats inside known samples. sFlow v5 has them
// skipped by their length: every known sample after them is decoded, and
// the unknown sample is counted. tshark stops decoding the datagram at the
// unknown sample, so the expected values are the ones written here.
func TestUnknownStructuresSkipped(t *testing.T) {
	hdr := func(n int) xdr {
		src, dst := netip.AddrFrom4([4]byte{198, 51, 100, byte(n)}), netip.AddrFrom4([4]byte{203, 0, 113, byte(n)})
		p := packet(t, ip4(src.String(), dst.String(), layers.IPProtocolUDP), &layers.UDP{SrcPort: layers.UDPPort(1000 + n), DstPort: 53}, payload(20))
		return sampledHeader(11, uint32(len(p)), p)
	}
	unknownFlowRec := record(enterprise(4413, 7), xdr{}.u32(1, 2, 3))
	unknownCounterRec := record(enterprise(4413, 5), xdr{}.u32(4, 5))
	ifc := record(1, xdr{}.u32(3, 6).u64(10000000000).u32(1, 3).u64(1000).u32(10, 11, 12, 13, 14, 15).u64(2000).u32(20, 21, 22, 23, 24, 2))
	p := datagram(1,
		flowSample(1, 3, 1, 3, 4, hdr(1)),
		record(enterprise(4413, 1), xdr{}.u32(0, 0, 0, 0)), // unknown sample
		flowSample(2, 3, 1, 3, 4, unknownFlowRec, hdr(2)),
		record(enterprise(0, 6), xdr{}.u32(7)), // enterprise 0, a format sFlow v5 does not define
		counterSample(3, 3, unknownCounterRec, ifc),
		expandedFlowSample(4, 1, 0, 3, 0, 4, hdr(4), unknownFlowRec),
	)
	recs, info, err := sflow.Decode(p, sourceAddr, time.Unix(1700000000, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.UnknownSamples != 2 || info.Samples != 4 || info.FlowRecords != 3 || info.CounterRecords != 1 {
		t.Errorf("info %+v; want 2 unknown samples, 4 samples, 3 flows, 1 counter record", info)
	}
	var srcs []string
	counters := 0
	for _, r := range recs {
		if r.Counters != nil {
			counters++
			if r.Counters.Index != 3 || r.Counters.InOctets != 1000 {
				t.Errorf("interface counters %+v", r.Counters)
			}
			continue
		}
		srcs = append(srcs, r.SrcAddr.String())
	}
	if want := []string{"198.51.100.1", "198.51.100.2", "198.51.100.4"}; counters != 1 || len(srcs) != 3 || srcs[0] != want[0] || srcs[1] != want[1] || srcs[2] != want[2] {
		t.Errorf("flows from %v and %d counter records; want %v and 1", srcs, counters, want)
	}
}

// TestSampleRunsPastDatagram: a sample, known or not, whose length runs
// past the datagram is a counted error, not a panic nor a skip.
func TestSampleRunsPastDatagram(t *testing.T) {
	for _, format := range []uint32{1, enterprise(4413, 1)} {
		p := datagram(1, flowSample(1, 3, 1, 3, 4), record(format, xdr{}.u32(1, 2, 3, 4)))
		p = p[:len(p)-4]
		_, _, err := sflow.Decode(p, sourceAddr, time.Unix(1700000000, 0), nil)
		if reason.Of(err) != reason.Short {
			t.Errorf("format %#x: error %v (reason %q), want %q", format, err, reason.Of(err), reason.Short)
		}
	}
}

// TestBadSampleKeepsTheOthers: a known sample whose body does not decode
// makes the datagram an error (counted bad), but the samples after it,
// whose place its checked length gives, are still decoded.
func TestBadSampleKeepsTheOthers(t *testing.T) {
	hdr := func(n int) xdr {
		src, dst := netip.AddrFrom4([4]byte{198, 51, 100, byte(n)}), netip.AddrFrom4([4]byte{203, 0, 113, byte(n)})
		p := packet(t, ip4(src.String(), dst.String(), layers.IPProtocolUDP), &layers.UDP{SrcPort: layers.UDPPort(1000 + n), DstPort: 53}, payload(20))
		return sampledHeader(11, uint32(len(p)), p)
	}
	p := datagram(1,
		flowSample(1, 3, 1, 3, 4, hdr(1)),
		record(1, xdr{}.u32(5)), // a flow sample of 4 bytes: too short to decode
		flowSample(2, 3, 1, 3, 4, hdr(2)),
	)
	recs, info, err := sflow.Decode(p, sourceAddr, time.Unix(1700000000, 0), nil)
	if reason.Of(err) != reason.Set {
		t.Errorf("error %v (reason %q), want %q", err, reason.Of(err), reason.Set)
	}
	var srcs []string
	for _, r := range recs {
		srcs = append(srcs, r.SrcAddr.String())
	}
	if len(srcs) != 2 || srcs[0] != "198.51.100.1" || srcs[1] != "198.51.100.2" || info.Samples != 2 {
		t.Errorf("flows from %v, %d samples; want 198.51.100.1 and 198.51.100.2, 2 samples", srcs, info.Samples)
	}
}
