// Command soak sends a collector, at a fixed rate and for a fixed time, a
// mix of valid IPFIX from a few real exporters and hostile datagrams from
// many spoofed sources in 127.0.0.0/8 (the source address is set per
// datagram with IP_PKTINFO, so every loopback address can send): garbage,
// zero-length and withdrawn templates, huge templates, data without a
// template, options records with long interface names, many observation
// domains, truncated sets. It is the load of bench/soak.sh, which samples
// the collector's memory and counters every minute.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/spanflow/spanflow/bench/ipfixgen"
)

func main() {
	target := flag.String("target", "127.0.0.1:4739", "collector address HOST:PORT (IPv4 loopback)")
	duration := flag.Duration("duration", time.Hour, "how long to send")
	rate := flag.Int("rate", 2000, "datagrams per second, valid and hostile together")
	hostileShare := flag.Float64("hostile", 0.5, "share of hostile datagrams")
	exporters := flag.Int("exporters", 4, "real exporters (127.0.1.1, 127.0.1.2, ...) sending valid IPFIX")
	sources := flag.Int("sources", 50000, "distinct spoofed sources of hostile datagrams (127.2.0.0 upwards)")
	flag.Parse()
	dst, err := net.ResolveUDPAddr("udp4", *target)
	if err != nil {
		fail(err)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		fail(err)
	}
	pc := ipv4.NewPacketConn(conn)
	gens := make([]*ipfixgen.Generator, *exporters)
	for i := range gens {
		gens[i] = ipfixgen.New(uint32(i+1), 10)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var sent, valid, hostile, errs uint64
	send := func(b []byte, src net.IP) {
		cm := &ipv4.ControlMessage{Src: src}
		if _, err := pc.WriteTo(b, cm, dst); err != nil {
			errs++
			return
		}
		sent++
	}
	buf := make([]byte, 0, 65536)
	interval := time.Second / time.Duration(*rate)
	start := time.Now()
	next := start
	lastReport := start
	for n := 0; time.Since(start) < *duration; n++ {
		if rng.Float64() < *hostileShare {
			s := rng.IntN(*sources)
			src := net.IPv4(127, 2+byte(s>>16), byte(s>>8), byte(s))
			buf = hostileDatagram(rng, buf[:0])
			send(buf, src)
			hostile++
		} else {
			i := rng.IntN(len(gens))
			src := net.IPv4(127, 0, 1, byte(i+1))
			if n%500 < len(gens) || valid < uint64(len(gens)) {
				send(gens[i].Template(), src)
			}
			buf = gens[i].AppendData(buf[:0])
			send(buf, src)
			valid++
		}
		next = next.Add(interval)
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		if time.Since(lastReport) >= time.Minute {
			lastReport = time.Now()
			fmt.Fprintf(os.Stderr, "soak: %s: %d datagrams (%d valid, %d hostile), %d send errors\n",
				time.Since(start).Round(time.Second), sent, valid, hostile, errs)
		}
	}
	var flows uint64
	for _, g := range gens {
		flows += g.Flows()
	}
	fmt.Printf("sent %d datagrams: %d valid (%d flows), %d hostile; %d send errors\n", sent, valid, flows, hostile, errs)
}

// hostileDatagram appends one of the kinds of bad input a collector on an
// open port receives.
func hostileDatagram(rng *rand.Rand, b []byte) []byte {
	domain := rng.Uint32()
	switch rng.IntN(8) {
	case 0: // garbage
		n := 1 + rng.IntN(1400)
		for range n {
			b = append(b, byte(rng.Uint32()))
		}
		return b
	case 1: // a template of zero-length fields, under a new id each time
		return message(b, domain, func(b []byte) []byte {
			return set(b, 2, func(b []byte) []byte {
				b = be16(b, uint16(256+rng.IntN(65000)))
				b = be16(b, 4)
				for range 4 {
					b = be16(b, 1)
					b = be16(b, 0)
				}
				return b
			})
		})
	case 2: // a withdrawal (template of no field)
		return message(b, domain, func(b []byte) []byte {
			return set(b, 2, func(b []byte) []byte { return be16(be16(b, uint16(256+rng.IntN(65000))), 0) })
		})
	case 3: // a huge template: up to as many fields as a datagram holds
		return message(b, domain, func(b []byte) []byte {
			return set(b, 2, func(b []byte) []byte {
				n := 1000 + rng.IntN(15000)
				b = be16(b, uint16(256+rng.IntN(65000)))
				b = be16(b, uint16(n))
				for i := range n {
					b = be16(b, uint16(1+i%400))
					b = be16(b, 4)
				}
				return b
			})
		})
	case 4: // data for a template never sent
		return message(b, domain, func(b []byte) []byte {
			return set(b, uint16(256+rng.IntN(65000)), func(b []byte) []byte {
				for range 100 + rng.IntN(1000) {
					b = append(b, byte(rng.Uint32()))
				}
				return b
			})
		})
	case 5: // an options template naming interfaces, and its data with long names
		id := uint16(256 + rng.IntN(1000))
		return message(b, domain%64, func(b []byte) []byte {
			b = set(b, 3, func(b []byte) []byte {
				b = be16(b, id)
				b = be16(b, 2)               // fields
				b = be16(b, 1)               // scope fields
				b = be16(be16(b, 10), 4)     // ingressInterface
				return be16(be16(b, 82), 64) // interfaceName
			})
			return set(b, id, func(b []byte) []byte {
				for range 10 {
					b = binary.BigEndian.AppendUint32(b, rng.Uint32())
					for range 64 {
						b = append(b, 'a'+byte(rng.IntN(26)))
					}
				}
				return b
			})
		})
	case 6: // a set whose length runs past the message
		b = message(b, domain, func(b []byte) []byte {
			return be16(be16(b, 2), 60000)
		})
		return b
	default: // NetFlow v9 header with a count and nothing behind it
		b = be16(b, 9)
		b = be16(b, uint16(rng.IntN(100)))
		b = binary.BigEndian.AppendUint32(b, rng.Uint32())
		b = binary.BigEndian.AppendUint32(b, uint32(time.Now().Unix()))
		b = binary.BigEndian.AppendUint32(b, rng.Uint32())
		return binary.BigEndian.AppendUint32(b, domain)
	}
}

// message appends an IPFIX message whose sets body appends.
func message(b []byte, domain uint32, body func([]byte) []byte) []byte {
	start := len(b)
	b = be16(b, 10)
	b = be16(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(time.Now().Unix()))
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, domain)
	b = body(b)
	binary.BigEndian.PutUint16(b[start+2:], uint16(min(len(b)-start, 65535)))
	return b
}

// set appends a set of that id whose content body appends.
func set(b []byte, id uint16, body func([]byte) []byte) []byte {
	start := len(b)
	b = be16(b, id)
	b = be16(b, 0)
	b = body(b)
	binary.BigEndian.PutUint16(b[start+2:], uint16(min(len(b)-start, 65535)))
	return b
}

func be16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }

func fail(err error) {
	fmt.Fprintln(os.Stderr, "soak:", err)
	os.Exit(1)
}
