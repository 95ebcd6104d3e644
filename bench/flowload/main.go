// Command flowload sends a stream of generated IPFIX messages over UDP to a
// collector, for the whole-process benchmarks under bench/: the same stream
// for spanflow and for the peer it is compared with. With -exporters N it
// plays N exporters at once, each from its own loopback address (127.P.x.y,
// P from -source-prefix) with its own template, sequence numbers and
// observation domain, in turn, at the total rate given (-mix ipfix,v9:
// IPFIX and NetFlow v9 exporters, alternately): the load of an
// estate of hypervisors for the scale-out path (docs/scale-out.md).
package main

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spanflow/spanflow/bench/ipfixgen"
)

// generator makes one exporter's messages.
type generator interface {
	Template() []byte
	AppendData(b []byte) []byte
	Flows() uint64
}

func main() {
	target := flag.String("target", "127.0.0.1:4739", "collector address HOST:PORT")
	messages := flag.Int("messages", 100000, "IPFIX data messages to send, all exporters together")
	perMessage := flag.Int("per-message", 20, "flow records per message")
	rate := flag.Int("rate", 0, "messages per second, all exporters together (0: as fast as possible)")
	templateEvery := flag.Int("template-every", 1000, "each exporter resends its template every N of its messages")
	exporters := flag.Int("exporters", 1, "exporters to play, each from its own source address")
	prefix := flag.Int("source-prefix", 0, "with -exporters above 1: send from 127.P.x.y (1-254); 0 sends from the default address")
	mix := flag.String("mix", "ipfix", "protocols of the exporters, in turn: ipfix, v9 or ipfix,v9 (exporter i plays the (i mod n)th)")
	flag.Parse()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "flowload:", err)
		os.Exit(1)
	}
	dst, err := net.ResolveUDPAddr("udp", *target)
	if err != nil {
		fail(err)
	}
	if *exporters < 1 || *exporters > 64000 || *prefix < 0 || *prefix > 254 {
		fail(fmt.Errorf("-exporters from 1 to 64000, -source-prefix from 0 to 254"))
	}
	conns := make([]*net.UDPConn, *exporters)
	gens := make([]generator, *exporters)
	protocols := strings.Split(*mix, ",")
	for _, p := range protocols {
		if p != "ipfix" && p != "v9" {
			fail(fmt.Errorf("-mix %q: use ipfix, v9 or both, comma-separated", *mix))
		}
	}
	for i := range conns {
		var src *net.UDPAddr
		if *prefix > 0 {
			a := netip.AddrFrom4([4]byte{127, byte(*prefix), byte(i / 250), byte(i%250 + 1)})
			src = net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0))
		}
		if conns[i], err = net.DialUDP("udp", src, dst); err != nil {
			fail(err)
		}
		if protocols[i%len(protocols)] == "v9" {
			gens[i] = ipfixgen.NewV9(uint32(1+i), *perMessage)
		} else {
			gens[i] = ipfixgen.New(uint32(1+i), *perMessage)
		}
	}
	buf := make([]byte, 0, 65536)
	start := time.Now()
	var interval time.Duration
	if *rate > 0 {
		interval = time.Second / time.Duration(*rate)
	}
	next := start
	sendErrs := 0
	for i := 0; i < *messages; i++ {
		e := i % *exporters
		c, g := conns[e], gens[e]
		if (i / *exporters)%*templateEvery == 0 {
			c.Write(g.Template())
		}
		buf = g.AppendData(buf[:0])
		if _, err := c.Write(buf); err != nil {
			sendErrs++
		}
		if interval > 0 {
			next = next.Add(interval)
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
		}
	}
	el := time.Since(start)
	var flows uint64
	for _, g := range gens {
		flows += g.Flows()
	}
	fmt.Printf("sent %d messages, %d flows from %d exporters in %.2fs (%.0f flows/s), %d send errors\n",
		*messages, flows, *exporters, el.Seconds(), float64(flows)/el.Seconds(), sendErrs)
}
