// Command flowload sends a stream of generated IPFIX messages over UDP to a
// collector, for the whole-process benchmarks under bench/: the same stream
// for spanflow and for the peer it is compared with.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spanflow/spanflow/bench/ipfixgen"
)

func main() {
	target := flag.String("target", "127.0.0.1:4739", "collector address HOST:PORT")
	messages := flag.Int("messages", 100000, "IPFIX data messages to send")
	perMessage := flag.Int("per-message", 20, "flow records per message")
	rate := flag.Int("rate", 0, "messages per second (0: as fast as possible)")
	templateEvery := flag.Int("template-every", 1000, "resend the template every N messages")
	flag.Parse()
	conn, err := net.Dial("udp", *target)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flowload:", err)
		os.Exit(1)
	}
	g := ipfixgen.New(1, *perMessage)
	buf := make([]byte, 0, 65536)
	start := time.Now()
	var interval time.Duration
	if *rate > 0 {
		interval = time.Second / time.Duration(*rate)
	}
	next := start
	sendErrs := 0
	for i := 0; i < *messages; i++ {
		if i%*templateEvery == 0 {
			conn.Write(g.Template())
		}
		buf = g.AppendData(buf[:0])
		if _, err := conn.Write(buf); err != nil {
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
	fmt.Printf("sent %d messages, %d flows in %.2fs (%.0f flows/s), %d send errors\n",
		*messages, g.Flows(), el.Seconds(), float64(g.Flows())/el.Seconds(), sendErrs)
}
