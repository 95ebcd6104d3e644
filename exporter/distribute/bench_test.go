//go:build linux && cgo

package distribute_test

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/capture"
	"github.com/spanflow/spanflow/exporter/decode"
	"github.com/spanflow/spanflow/exporter/distribute"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/testutil"
)

// BenchmarkOffer measures distribution on its own, one op one frame of the
// bulk mix (plain, 802.1Q, VXLAN, ERSPAN, GRE; TCP/UDP/ICMP; IPv4/IPv6),
// decoded beforehand as the pipeline does for metering. The destination
// is VXLAN to a local UDP socket nobody reads (the kernel drops what its
// buffer cannot hold, after the send's work is done). The loop lets the
// sender catch up every 8192 frames (sleeping, which costs no CPU), so
// that nothing is dropped: CPU time covers the capture goroutine and the
// sender's, and sent/cpu-s is what one core forwards.
func BenchmarkOffer(b *testing.B) {
	const n = 100000
	pkts := synth.NewBulk(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)).Packets(n)
	dec := decode.New()
	decoded := make([]decode.Packet, n)
	reasons := make([]decode.Reason, n)
	for i := range pkts {
		reasons[i] = dec.Decode(decode.LinkEthernet, pkts[i].Data, len(pkts[i].Data), &decoded[i])
	}
	sinkConn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sinkConn.Close()
	to := "vxlan://" + sinkConn.LocalAddr().String() + "?vni=1"
	for _, mode := range []struct {
		name string
		rule distribute.Rule
	}{
		{"filter+dedup", distribute.Rule{To: to, Filter: "tcp or udp", Dedup: distribute.Duration(10 * time.Millisecond), QueueSize: 16384}},
		{"filter+dedup+snap128", distribute.Rule{To: to, Filter: "tcp or udp", Dedup: distribute.Duration(10 * time.Millisecond), SnapLength: 128, QueueSize: 16384}},
		{"filter-rejects-all", distribute.Rule{To: to, Filter: "port 1", Dedup: distribute.Duration(10 * time.Millisecond), QueueSize: 16384}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			d, err := distribute.New(slog.New(slog.DiscardHandler), []distribute.Rule{mode.rule})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := testutil.CPUTime()
			var fr capture.Frame
			for i := 0; i < b.N; i++ {
				k := i % n
				// Each pass is new traffic for dedup: a later time.
				fr = capture.Frame{Data: pkts[k].Data, Length: len(pkts[k].Data), LinkType: decode.LinkEthernet, Timestamp: pkts[k].Time + int64(i/n)*int64(time.Second)}
				d.Offer(&fr, &decoded[k], reasons[k])
				if i%8192 == 8191 {
					for {
						st := d.Stats()[0]
						if st.Matched-st.Deduplicated-st.Sent-st.Dropped() < 1024 {
							break
						}
						time.Sleep(100 * time.Microsecond)
					}
				}
			}
			d.Close(10 * time.Second)
			cpu := testutil.CPUTime() - cpu0
			b.StopTimer()
			st := d.Stats()[0]
			b.ReportMetric(float64(st.Sent)/cpu.Seconds(), "sent/cpu-s")
			b.ReportMetric(float64(b.N)/cpu.Seconds(), "offered/cpu-s")
			b.ReportMetric(float64(st.Dropped())/float64(b.N), "dropped/op")
			b.ReportMetric(float64(st.Deduplicated)/float64(b.N), "dedup/op")
		})
	}
}
