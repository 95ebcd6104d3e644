package decoders_test

import (
	"encoding/binary"
	"flag"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/spanflow/spanflow/internal/testutil"
)

// The captures testdata/sampling-*.pcap are written by
// TestWriteSamplingCaptures (go test -run TestWriteSamplingCaptures
// -write-sampling ./decoders): NetFlow v9 and IPFIX datagrams whose data
// records name a sampler that an options record of the same datagram
// announces, before or after the data set; the data records carry no
// times, or times left at zero.

var writeSampling = flag.Bool("write-sampling", false, "rewrite testdata/sampling-*.pcap")

func nfSet(id uint16, body []byte) []byte {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	b := binary.BigEndian.AppendUint16(nil, id)
	b = binary.BigEndian.AppendUint16(b, uint16(4+len(body)))
	return append(b, body...)
}

func be16(v ...uint16) []byte {
	var b []byte
	for _, x := range v {
		b = binary.BigEndian.AppendUint16(b, x)
	}
	return b
}

func cat(bs ...[]byte) []byte {
	var b []byte
	for _, x := range bs {
		b = append(b, x...)
	}
	return b
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

const samplingExport = 1764849600 // 2025-12-04T12:00:00Z

// v9Sampling: template 256 (src, dst, bytes, packets, FLOW_SAMPLER_ID 48,
// no FIRST/LAST_SWITCHED), options template 257 (scope system; sampler id
// 48, mode 49, random interval 50). Datagram 1 sends data for sampler 5
// before the options record saying 5 → 1 in 100; datagram 2 the options
// record for sampler 6 → 1 in 40 before its data.
func v9Sampling() [][]byte {
	tpl := nfSet(0, cat(be16(256, 5), be16(8, 4, 12, 4, 1, 4, 2, 4, 48, 1)))
	opt := nfSet(1, cat(be16(257, 4, 12), be16(1, 4), be16(48, 1, 49, 1, 50, 4)))
	data := func(sampler byte, n byte) []byte {
		var b []byte
		for i := byte(0); i < n; i++ {
			b = append(b, cat([]byte{198, 51, 100, 10 + i}, []byte{203, 0, 113, 10 + sampler}, u32(uint32(1000+100*int(i))), u32(uint32(3+int(i))), []byte{sampler})...)
		}
		return nfSet(256, b)
	}
	options := func(sampler byte, interval uint32) []byte {
		return nfSet(257, cat(u32(1), []byte{sampler, 2}, u32(interval)))
	}
	hdr := func(seq uint32, count uint16) []byte {
		return cat(be16(9, count), u32(600000), u32(samplingExport), u32(seq), u32(7))
	}
	return [][]byte{
		cat(hdr(1, 5), tpl, opt, data(5, 2), options(5, 100)),
		cat(hdr(2, 3), options(6, 40), data(6, 2)),
	}
}

// ipfixSampling: template 256 (src, dst, octetDeltaCount, packetDeltaCount,
// selectorId 302, flowStartSeconds 150, flowEndSeconds 151 — both 0),
// options template 257 (scope selectorId 302; samplingPacketInterval 305,
// samplingPacketSpace 306: 1 selected, 99 skipped = 1 in 100), options
// template 258 (scope samplerId 48; samplerRandomInterval 50). Message 1:
// data for selector 9 before its options record; message 2: options for
// sampler 3 (1 in 25) before data naming it with samplerId 48 (template 259).
func ipfixSampling() [][]byte {
	tpl := nfSet(2, cat(be16(256, 7), be16(8, 4, 12, 4, 1, 8, 2, 8, 302, 8, 150, 4, 151, 4),
		be16(259, 5), be16(8, 4, 12, 4, 1, 8, 2, 8, 48, 1)))
	opt := nfSet(3, cat(be16(257, 3, 1), be16(302, 8, 305, 4, 306, 4), be16(258, 2, 1), be16(48, 1, 50, 4)))
	msg := func(seq uint32, body ...[]byte) []byte {
		b := cat(body...)
		return cat(be16(10, uint16(16+len(b))), u32(samplingExport), u32(seq), u32(7), b)
	}
	data9 := nfSet(256, cat(
		[]byte{198, 51, 100, 20}, []byte{203, 0, 113, 20}, u64(1500), u64(2), u64(9), u32(0), u32(0),
		[]byte{198, 51, 100, 21}, []byte{203, 0, 113, 20}, u64(600), u64(1), u64(9), u32(0), u32(0)))
	data3 := nfSet(259, cat([]byte{198, 51, 100, 30}, []byte{203, 0, 113, 30}, u64(4000), u64(5), []byte{3}))
	return [][]byte{
		msg(1, tpl, opt, data9, nfSet(257, cat(u64(9), u32(1), u32(99)))),
		msg(2, nfSet(258, cat([]byte{3}, u32(25))), data3),
	}
}

func TestWriteSamplingCaptures(t *testing.T) {
	if !*writeSampling {
		t.Skip("run with -write-sampling to rewrite testdata/sampling-*.pcap")
	}
	for name, c := range map[string]struct {
		dgs  [][]byte
		port layers.UDPPort
	}{"sampling-v9.pcap": {v9Sampling(), 2055}, "sampling-ipfix.pcap": {ipfixSampling(), 4739}} {
		var frames [][]byte
		for _, dg := range c.dgs {
			ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: []byte{192, 0, 2, 20}, DstIP: []byte{192, 0, 2, 200}}
			udp := &layers.UDP{SrcPort: 50001, DstPort: c.port}
			udp.SetNetworkLayerForChecksum(ip)
			buf := gopacket.NewSerializeBuffer()
			if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
				&layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4},
				ip, udp, gopacket.Payload(dg)); err != nil {
				t.Fatal(err)
			}
			frames = append(frames, buf.Bytes())
		}
		testutil.WritePcap(t, filepath.Join("testdata", name), 1, time.Unix(samplingExport, 0), frames)
	}
}

// TestSamplingFromOptions checks that a data record naming a sampler
// (NetFlow v9 FLOW_SAMPLER_ID 48, IPFIX selectorId 302 or samplerId 48)
// gets the interval the options records of the same datagram announce for
// it (samplingInterval/samplerRandomInterval, or samplingPacketInterval and
// samplingPacketSpace), whether the options set comes before or after the
// data set. tshark gives the ids and intervals of every record; spanflow's
// bytes and packets must be tshark's times that interval. Times left out,
// or at zero, must be the receive time (the capture's timestamps).
func TestSamplingFromOptions(t *testing.T) {
	for _, c := range []struct{ file string }{{"sampling-v9.pcap"}, {"sampling-ipfix.pcap"}} {
		t.Run(c.file, func(t *testing.T) {
			path := filepath.Join("testdata", c.file)
			got := decodeCapture(t, path)
			if len(got.errors) > 0 || got.held > 0 {
				t.Fatalf("errors %v, held %d", got.errors, got.held)
			}
			// tshark's decode in PDML order: options records (id → interval) and data records.
			w := tsharkFrameFields(t, path, "cflow.sampler_id", "cflow.selector_id", "cflow.sampler_random_interval",
				"cflow.sampling_packet_interval", "cflow.sampling_packet_space", "cflow.octets", "cflow.packets")
			t.Logf("tshark: %v", w)
			n := func(s string) uint64 { v, _ := strconv.ParseUint(s, 0, 64); return v }
			rates := map[uint64]uint64{}
			if c.file == "sampling-v9.pcap" {
				// Sampler ids: data records' then options', per datagram: 5,5,5 | 6,6,6.
				ri := w["cflow.sampler_random_interval"] // 100, 40
				if len(ri) != 2 {
					t.Fatalf("tshark random intervals %v", ri)
				}
				rates[5], rates[6] = n(ri[0]), n(ri[1])
			} else {
				pi, ps, ri := w["cflow.sampling_packet_interval"], w["cflow.sampling_packet_space"], w["cflow.sampler_random_interval"]
				if len(pi) != 1 || len(ps) != 1 || len(ri) != 1 {
					t.Fatalf("tshark options %v %v %v", pi, ps, ri)
				}
				rates[9] = (n(pi[0]) + n(ps[0])) / n(pi[0])
				rates[3] = n(ri[0])
			}
			octets := w["cflow.octets"]
			packets := w["cflow.packets"]
			if len(got.records) != len(octets) || len(octets) == 0 {
				t.Fatalf("%d records, tshark %d", len(got.records), len(octets))
			}
			// Records come out in the capture's order, as tshark lists them.
			ids := []uint64{5, 5, 6, 6}
			if c.file == "sampling-ipfix.pcap" {
				ids = []uint64{9, 9, 3}
			}
			for i, r := range got.records {
				rate := rates[ids[i]]
				if rate <= 1 {
					t.Fatalf("sampler %d: tshark interval %d", ids[i], rate)
				}
				if uint64(r.SamplingRate) != rate || r.Bytes != n(octets[i])*rate || r.Packets != n(packets[i])*rate {
					t.Errorf("record %d (sampler %d): rate %d, %d bytes, %d packets; want 1 in %d of tshark's %s bytes, %s packets",
						i, ids[i], r.SamplingRate, r.Bytes, r.Packets, rate, octets[i], packets[i])
				}
				if r.Start.Year() < 2000 || !r.End.Equal(r.Received) || !r.Start.Equal(r.End) {
					t.Errorf("record %d: start %v end %v, want the receive time %v", i, r.Start, r.End, r.Received)
				}
			}
		})
	}
}
