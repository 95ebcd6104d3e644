// Command flowload sends a stream of generated IPFIX messages over UDP to a
// collector, for the whole-process benchmarks under bench/: the same stream
// for spanflow and for the peer it is compared with. With -exporters N the
// messages come from N source addresses (127.0.x.y on loopback), each with
// its own template and sequence numbers, sent in turn, as many routers
// sharing one collector.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spanflow/spanflow/bench/ipfixgen"
)

type exporter struct {
	conn *net.UDPConn
	gen  *ipfixgen.Generator
}

func main() {
	target := flag.String("target", "127.0.0.1:4739", "collector address HOST:PORT")
	messages := flag.Int("messages", 100000, "IPFIX data messages to send (all exporters together)")
	perMessage := flag.Int("per-message", 20, "flow records per message")
	rate := flag.Int("rate", 0, "messages per second (0: as fast as possible)")
	templateEvery := flag.Int("template-every", 1000, "resend the template every N messages of an exporter")
	exporters := flag.Int("exporters", 1, "source addresses sending (127.0.1.1, 127.0.1.2, ... on loopback; 127.0.0.1 alone when 1), in turn")
	flag.Parse()
	raddr, err := net.ResolveUDPAddr("udp", *target)
	if err != nil {
		fail(err)
	}
	if *exporters < 1 || *exporters > 60000 {
		fail(fmt.Errorf("-exporters must be 1 to 60000, not %d", *exporters))
	}
	es := make([]exporter, *exporters)
	for i := range es {
		var laddr *net.UDPAddr
		if *exporters > 1 {
			laddr = &net.UDPAddr{IP: net.IPv4(127, 0, byte(1+i/250), byte(1+i%250))}
		}
		c, err := net.DialUDP("udp", laddr, raddr)
		if err != nil {
			fail(err)
		}
		es[i] = exporter{conn: c, gen: ipfixgen.New(uint32(1+i), *perMessage)}
	}
	buf := make([]byte, 0, 65536)
	start := time.Now()
	var interval time.Duration
	if *rate > 0 {
		interval = time.Second / time.Duration(*rate)
	}
	next := start
	sendErrs := 0
	var flows uint64
	for i := 0; i < *messages; i++ {
		e := &es[i%len(es)]
		if (i/len(es))%*templateEvery == 0 {
			e.conn.Write(e.gen.Template())
		}
		buf = e.gen.AppendData(buf[:0])
		flows += uint64(*perMessage)
		if _, err := e.conn.Write(buf); err != nil {
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
	fmt.Printf("sent %d messages from %d exporters, %d flows in %.2fs (%.0f flows/s), %d send errors\n",
		*messages, len(es), flows, el.Seconds(), float64(flows)/el.Seconds(), sendErrs)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "flowload:", err)
	os.Exit(1)
}
