package rollup_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/alert"
	"github.com/spanflow/spanflow/collector/rollup"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// mixRecords is a realistic mix for the rollups: 2,000 VMs in 40
// projects on 16 exporters (hypervisors) with 4 uplinks each (the vCenter
// enricher shares one VSphere value per VM, as here). Half the flows are
// external clients, their addresses drawn from a Zipf law over a million,
// reaching 100 front-end VMs (Zipf) on 443 or 80; 35 % are east-west, a VM
// (Zipf) to one of its 4 peers on the peer's service; 15 % go out from a
// VM to external addresses (Zipf over 100,000) on a few ports or a random
// high one. 80 % TCP with handshake RTTs of 0.1–100 ms, some
// retransmissions and SYN-only flows; spans of 0–5 s.
func mixRecords(n int) []flow.Record {
	rng := rand.New(rand.NewPCG(14, 100))
	clientZ := rand.NewZipf(rng, 1.1, 1, 999_999)
	extZ := rand.NewZipf(rng, 1.1, 1, 99_999)
	vmZ := rand.NewZipf(rng, 1.05, 1, 1999)
	frontZ := rand.NewZipf(rng, 1.2, 1, 99)
	services := []uint16{5432, 3306, 6379, 9200, 8080, 9092, 5672, 11211, 27017, 1521, 8443, 2379}
	outPorts := []uint16{443, 80, 53, 123}
	const nvm = 2000
	vms := make([]*flow.VSphere, nvm)
	vmAddr := make([]netip.Addr, nvm)
	for i := range vms {
		vms[i] = &flow.VSphere{VMName: fmt.Sprintf("vm-%04d", i), HostName: fmt.Sprintf("esx-%02d", i%16),
			Project: fmt.Sprintf("project-%02d", i%40)}
		vmAddr[i] = netip.AddrFrom4([4]byte{10, 128, byte(i >> 8), byte(i)})
	}
	ifNames := []string{"vmnic0", "vmnic1", "vmnic2", "vmnic3"}
	exporters := make([]netip.Addr, 16)
	for i := range exporters {
		exporters[i] = netip.AddrFrom4([4]byte{10, 1, 0, byte(i)})
	}
	recs := make([]flow.Record, n)
	for i := range recs {
		r := &recs[i]
		var local, remote int // the observed VM, and the other VM or -1
		switch x := rng.IntN(100); {
		case x < 50: // external client -> front end
			c := uint32(clientZ.Uint64())
			local, remote = 100+int(frontZ.Uint64())*19%nvm, -1
			r.SrcAddr = netip.AddrFrom4([4]byte{100, byte(c >> 16), byte(c >> 8), byte(c)})
			r.DstAddr, r.Dst.VSphere = vmAddr[local], vms[local]
			r.SrcPort, r.DstPort = uint16(32768+rng.IntN(28000)), []uint16{443, 80}[rng.IntN(2)]
			r.Locality = "external"
		case x < 85: // east-west: a VM to one of its 4 peers
			local = int(vmZ.Uint64())
			remote = (local*7919 + rng.IntN(4)*131 + 1) % nvm
			r.SrcAddr, r.Src.VSphere = vmAddr[local], vms[local]
			r.DstAddr, r.Dst.VSphere = vmAddr[remote], vms[remote]
			r.SrcPort, r.DstPort = uint16(32768+rng.IntN(28000)), services[remote%len(services)]
			r.Locality = "internal"
		default: // a VM to the outside
			d := uint32(extZ.Uint64())
			local, remote = int(vmZ.Uint64()), -1
			r.SrcAddr, r.Src.VSphere = vmAddr[local], vms[local]
			r.DstAddr = netip.AddrFrom4([4]byte{198, 18 + byte(d>>16), byte(d >> 8), byte(d)})
			r.SrcPort = uint16(32768 + rng.IntN(28000))
			if rng.IntN(10) == 0 {
				r.DstPort = uint16(1024 + rng.IntN(60000))
			} else {
				r.DstPort = outPorts[rng.IntN(len(outPorts))]
			}
			r.Locality = "external"
		}
		r.ObserverIP = exporters[local%16]
		r.InIf = uint32(local%4 + 1)
		r.OutIf = uint32(rng.IntN(4) + 1)
		if remote >= 0 {
			r.OutIf = uint32(remote%4 + 1)
		}
		r.InIfName, r.OutIfName = ifNames[r.InIf-1], ifNames[r.OutIf-1]
		switch x := rng.IntN(100); {
		case x < 80:
			r.Proto = 6
		case x < 98:
			r.Proto = 17
		default:
			r.Proto, r.SrcPort, r.DstPort = 1, 0, 0
		}
		r.Packets = uint64(1 + rng.ExpFloat64()*20)
		r.Bytes = r.Packets * uint64(60+rng.IntN(1400))
		if r.Proto == 6 {
			r.TCPFlags = 0x1b
			if r.Packets == 1 {
				// One packet's flags are that packet's: SYN, FIN, PSH and
				// ACK together would make it a SYN-ACK, from the server
				// (serverPortOf), and its source port a service. A lone
				// ACK (a keepalive, the end of an idle connection).
				r.TCPFlags = 0x10
			}
			if rng.IntN(50) == 0 {
				r.TCPFlags = 0x02
			}
			if rng.IntN(10) < 7 {
				r.TCP.RTTServer = time.Duration(math.Exp(rng.Float64()*math.Log(1000)) * 1e5) // 0.1–100 ms
			}
			if rng.IntN(20) == 0 {
				r.TCP.Retransmissions = uint32(rng.IntN(5) + 1)
			}
		}
		r.End = time.Unix(0, 0)
		r.Start = r.End.Add(-time.Duration(rng.Int64N(int64(5 * time.Second))))
	}
	return recs
}

// mixRules are 100 rules over every scope of the mix and value kind, with
// selectors, and the four detectors.
func mixRules(b *testing.B) *alert.File {
	var sb strings.Builder
	sb.WriteString("lines:\n")
	for i := range 16 {
		for j := range 4 {
			fmt.Fprintf(&sb, "  \"10.1.0.%d vmnic%d\": {capacity: 10Gbit, name: esx-%02d vmnic%d}\n", i, j, i, j)
		}
	}
	sb.WriteString("rules:\n")
	kinds := []string{
		"value: utilisation\n    line: \"esx-%02d*\"\n    above: 0.9",
		"value: retransmission_ratio\n    project: \"project-%d*\"\n    above: 0.05",
		"value: rtt_p95_ms\n    vm: \"vm-%d*\"\n    above: 50",
		"value: bytes_per_second\n    service: \"tcp/%d*\"\n    above: 1e9",
		"value: packets_per_second\n    exporter: \"10.1.0.%d\"\n    above: 1e6",
	}
	for i := range 100 {
		fmt.Fprintf(&sb, "  - name: r%d\n    "+kinds[i%5]+"\n    for: 10s\n", i, i%10)
	}
	sb.WriteString("detectors:\n  new_peer: {enabled: true}\n  port_scan: {enabled: true}\n  half_open: {enabled: true, flows: 500}\n  drop: {enabled: true}\n")
	f, err := alert.ParseRules([]byte(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	return f
}

// benchMix writes the mix in batches of 20 flows (one datagram's worth)
// at 100,000 flows a second of event time through the rollup engine in
// event time (so its ticks are in the figure), with or without 100 rules,
// and with or without the flow detectors. ns/op is per flow.
func benchMix(b *testing.B, recs []flow.Record, withRules, withDetectors bool) {
	cfg := rollup.DefaultConfiguration()
	cfg.EventTime = true
	e, err := rollup.New(reporter.NewForTest(nil), cfg)
	if err != nil {
		b.Fatal(err)
	}
	sinks := []flow.Sink{e}
	if withRules {
		f := mixRules(b)
		e.Subscribe(alert.NewEvaluator(f, "", "", func(alert.Alert) {}))
		if fd := alert.NewFlowDetectors(f.Detectors, "", "", func(alert.Alert) {}); fd != nil && withDetectors {
			e.Subscribe(fd)
			sinks = append(sinks, fd)
		}
	}
	const perBatch = 20
	spans := make([]time.Duration, len(recs))
	for i := range recs {
		spans[i] = recs[i].End.Sub(recs[i].Start)
	}
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := testutil.CPUTime()
	for i := 0; i < b.N; i += perBatch {
		now = now.Add(perBatch * 10 * time.Microsecond)
		j := i % (len(recs) - len(recs)%perBatch)
		batch := recs[j : j+perBatch]
		for k := range batch {
			batch[k].Received, batch[k].End = now, now
			batch[k].Start = now.Add(-spans[j+k])
		}
		for _, s := range sinks {
			s.Write(batch)
		}
	}
	reportCPU(b, cpu0)
}
