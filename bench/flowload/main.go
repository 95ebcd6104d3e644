// Command flowload sends a stream of generated IPFIX messages over UDP to a
// collector, for the whole-process benchmarks under bench/: the same stream
// for spanflow and for the peer it is compared with. With -exporters N it
// plays N exporters at once, each from its own loopback address (127.P.x.y,
// P from -source-prefix) with its own template, sequence numbers and
// observation domain, in turn, at the total rate given (-mix ipfix,v9,sflow:
// IPFIX, NetFlow v9 and sFlow v5 exporters, in turn; the sFlow agents, each
// with its own agent address, sub-agent id and sequence numbers, send flow
// samples to -sflow-target): the load of an estate of hypervisors and
// switches for the scale-out path (docs/scale-out.md). It prints the flows
// and bytes sent, the ground truth to count in the collector's output (sFlow
// bytes are the sampled packets' lengths times -sflow-rate, as a collector
// scaling by the rate counts them).
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
	"github.com/spanflow/spanflow/internal/batchio"
)

// generator makes one exporter's messages.
type generator interface {
	Template() []byte
	AppendData(b []byte) []byte
	Flows() uint64
	Bytes() uint64
}

func main() {
	target := flag.String("target", "127.0.0.1:4739", "collector address HOST:PORT for IPFIX and NetFlow v9")
	sflowTarget := flag.String("sflow-target", "", "collector address HOST:PORT for sFlow (needed when -mix has sflow)")
	sflowRate := flag.Int("sflow-rate", 1000, "sampling rate the sFlow agents announce (1 in N)")
	messages := flag.Int("messages", 100000, "data messages (sFlow: datagrams) to send, all exporters together")
	perMessage := flag.Int("per-message", 20, "flow records per message (sFlow: flow samples per datagram)")
	rate := flag.Int("rate", 0, "messages per second, all exporters together (0: as fast as possible)")
	templateEvery := flag.Int("template-every", 1000, "each exporter resends its template every N of its messages")
	exporters := flag.Int("exporters", 1, "exporters to play, each from its own source address")
	prefix := flag.Int("source-prefix", 0, "with -exporters above 1: send from 127.P.x.y (1-254); 0 sends from the default address")
	coalesce := flag.Int("coalesce", 1, "send each exporter's data messages N at a time as one UDP_SEGMENT (GSO) message (at most 65,000 bytes a message), as a receiving interface's GRO hands them to a collector that asks for UDP GRO (1: one by one)")
	mix := flag.String("mix", "ipfix", "protocols of the exporters, in turn, comma-separated: ipfix, v9, sflow (exporter i plays the (i mod n)th)")
	flag.Parse()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "flowload:", err)
		os.Exit(1)
	}
	dst, err := net.ResolveUDPAddr("udp", *target)
	if err != nil {
		fail(fmt.Errorf("-target: %w", err))
	}
	if *sflowRate < 1 || *perMessage < 1 || *perMessage > 500 {
		fail(fmt.Errorf("-sflow-rate at least 1, -per-message from 1 to 500"))
	}
	if *coalesce < 1 || *coalesce > 64 {
		fail(fmt.Errorf("-coalesce from 1 to 64 (the kernel's limit)"))
	}
	if *exporters < 1 || *exporters > 64000 || *prefix < 0 || *prefix > 254 {
		fail(fmt.Errorf("-exporters from 1 to 64000, -source-prefix from 0 to 254"))
	}
	conns := make([]*net.UDPConn, *exporters)
	gens := make([]generator, *exporters)
	protocols := strings.Split(*mix, ",")
	var sflowDst *net.UDPAddr
	for _, p := range protocols {
		switch p {
		case "ipfix", "v9":
		case "sflow":
			if *sflowTarget == "" {
				fail(fmt.Errorf("-mix %q: sFlow exporters need -sflow-target", *mix))
			}
			if sflowDst, err = net.ResolveUDPAddr("udp", *sflowTarget); err != nil {
				fail(fmt.Errorf("-sflow-target: %w", err))
			}
		default:
			fail(fmt.Errorf("-mix %q: use ipfix, v9 and sflow, comma-separated", *mix))
		}
	}
	for i := range conns {
		var src *net.UDPAddr
		// The sFlow agent address: the source address, or without one of
		// its own a documentation address per exporter.
		agent := netip.AddrFrom4([4]byte{198, 18, byte(i / 250), byte(i%250 + 1)})
		if *prefix > 0 {
			agent = netip.AddrFrom4([4]byte{127, byte(*prefix), byte(i / 250), byte(i%250 + 1)})
			src = net.UDPAddrFromAddrPort(netip.AddrPortFrom(agent, 0))
		}
		to := dst
		switch protocols[i%len(protocols)] {
		case "v9":
			gens[i] = ipfixgen.NewV9(uint32(1+i), *perMessage)
		case "sflow":
			gens[i], to = ipfixgen.NewSFlow(agent, uint32(1+i), *perMessage, uint32(*sflowRate)), sflowDst
		default:
			gens[i] = ipfixgen.New(uint32(1+i), *perMessage)
		}
		if conns[i], err = net.DialUDP("udp", src, to); err != nil {
			fail(err)
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
	pending := make([]coalesced, *exporters)
	for i := 0; i < *messages; i++ {
		e := i % *exporters
		c, g := conns[e], gens[e]
		if t := g.Template(); t != nil && (i / *exporters)%*templateEvery == 0 {
			sendErrs += pending[e].flush(c)
			c.Write(t)
		}
		buf = g.AppendData(buf[:0])
		if *coalesce == 1 {
			if _, err := c.Write(buf); err != nil {
				sendErrs++
			}
		} else {
			sendErrs += pending[e].add(c, buf, *coalesce)
		}
		if interval > 0 {
			next = next.Add(interval)
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
		}
	}
	for e := range pending {
		sendErrs += pending[e].flush(conns[e])
	}
	el := time.Since(start)
	var flows, bytes uint64
	for _, g := range gens {
		flows, bytes = flows+g.Flows(), bytes+g.Bytes()
	}
	fmt.Printf("sent %d messages, %d flows (%d bytes) from %d exporters in %.2fs (%.0f flows/s), %d send errors\n",
		*messages, flows, bytes, *exporters, el.Seconds(), float64(flows)/el.Seconds(), sendErrs)
}

// coalesced is an exporter's data messages not sent yet, of one length:
// sent as one message of segments (UDP_SEGMENT, batchio.Runs: at most 64
// segments and 65,000 bytes a message).
type coalesced struct {
	buf  []byte
	seg  int
	n    int
	msgs [][]byte
	runs *batchio.Runs
}

// add queues msg, sending what is queued first when msg's length differs
// and everything once n are queued; it returns the send errors.
func (p *coalesced) add(c *net.UDPConn, msg []byte, n int) int {
	errs := 0
	if p.n > 0 && len(msg) != p.seg {
		errs += p.flush(c)
	}
	p.buf, p.seg = append(p.buf, msg...), len(msg)
	p.n++
	if p.n == n {
		errs += p.flush(c)
	}
	return errs
}

func (p *coalesced) flush(c *net.UDPConn) int {
	defer func() { p.buf, p.n = p.buf[:0], 0 }()
	if p.n == 0 {
		return 0
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return p.n
	}
	if p.runs == nil {
		p.runs = batchio.NewRuns()
	}
	p.msgs = p.msgs[:0]
	for b := p.buf; len(b) > 0; b = b[p.seg:] {
		p.msgs = append(p.msgs, b[:p.seg])
	}
	errs := 0
	p.runs.SendAll(rc, nil, 0, p.msgs, func(int, error) { errs++ })
	return errs
}
