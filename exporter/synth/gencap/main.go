// Command gencap writes the exporter's synthetic captures: the mixed capture
// of the tests (-kind mixed) or a large capture for whole-process benchmarks
// (-kind bulk -packets N: tunnels; -kind plain: untunnelled, short flows).
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/spanflow/spanflow/exporter/synth"
)

func main() {
	kind := flag.String("kind", "mixed", "mixed (the tests' sessions), bulk (many flows, tunnels, for benchmarks) or plain (untunnelled, short flows, for benchmarks)")
	packets := flag.Int("packets", 1200000, "bulk and plain: number of packets")
	out := flag.String("o", "", "output pcap file")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "gencap: -o FILE is required")
		os.Exit(2)
	}
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var err error
	switch *kind {
	case "mixed":
		err = synth.WritePcapFile(*out, synth.Mixed(base).Packets)
	case "bulk":
		err = synth.WriteBulkFile(*out, base, *packets)
	case "plain":
		err = synth.WritePlainFile(*out, base, *packets)
	default:
		fmt.Fprintf(os.Stderr, "gencap: unknown kind %q\n", *kind)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gencap: %v\n", err)
		os.Exit(1)
	}
}
