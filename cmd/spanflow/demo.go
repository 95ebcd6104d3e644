package main

import (
	"errors"
	"log/slog"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/spanflow/spanflow/demo"
	"github.com/spanflow/spanflow/internal/reporter"
)

func demoCommand() *cli.Command {
	d := demo.DefaultConfiguration()
	return &cli.Command{
		Name:  "demo",
		Usage: "run the whole pipeline on this machine: simulated vCenter, mirrored traffic, exporter, collector",
		Description: "Starts, in this process, a simulated vCenter (govmomi's vcsim: datacenter par1, clusters prod-a and\n" +
			"prod-b, 12 ESXi hosts, 18 VMs in the projects payments, portal and batch, port groups with VLANs),\n" +
			"mirrored traffic between those VMs and peers outside (TCP with handshakes and retransmissions, UDP,\n" +
			"ICMP, IPv4 and IPv6, in ERSPAN II from each host), the exporter sending IPFIX over 127.0.0.1, and the\n" +
			"collector enriching every flow with VM, host, project and direction and writing NDJSON.\n" +
			"Progress goes to stderr; at the end the top VM conversations, the east-west/north-south split,\n" +
			"the top lines and TCP health per project go to stdout. Ctrl-C ends the traffic early and still\n" +
			"prints the summary. With --es-url the flows are also indexed into Elasticsearch.\n" +
			"The components log warnings and errors only (not --log-level's usual info), unless\n" +
			"--log-level or SPANFLOW_LOG_LEVEL is given.\n" +
			"Example: spanflow demo --duration 10s --rate 5000 --output /tmp/flows.ndjson",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "duration", Value: d.Duration, Usage: "how long the traffic runs (3s to 1h)"},
			&cli.IntFlag{Name: "rate", Value: d.Rate, Usage: "mirrored packets per second, on average (10 to 20000)"},
			&cli.IntFlag{Name: "port", Value: d.Port, Usage: "UDP port on 127.0.0.1 where the collector receives IPFIX (0: any free port)"},
			&cli.IntFlag{Name: "vcenter-port", Value: d.VCenterPort, Usage: "TCP port on 127.0.0.1 of the simulated vCenter (0: any free port)"},
			&cli.StringFlag{Name: "output", Usage: "NDJSON `FILE` the collector appends to (default: flows.ndjson in a new temporary directory, kept); the summary counts this run only"},
			&cli.StringFlag{Name: "write-pcap", Usage: "also write the mirrored frames to this pcap `FILE` (replay them with spanflow exporter run --pcap FILE)"},
			&cli.StringFlag{Name: "es-url", Usage: "also index the flows into this Elasticsearch `URL` (credentials: SPANFLOW_ES_API_KEY or SPANFLOW_ES_USER/SPANFLOW_ES_PASSWORD)"},
			&cli.StringFlag{Name: "kibana-url", Value: d.KibanaURL, Usage: "Kibana URL shown in the dashboard steps printed with --es-url"},
			&cli.Uint64Flag{Name: "seed", Value: d.Seed, Usage: "seed of the traffic: the same seed, rate and duration give the same sessions"},
		},
		Action: runDemo,
	}
}

func runDemo(c *cli.Context) error {
	if c.NArg() > 0 {
		return errors.New("unexpected argument " + c.Args().First() + ": options are flags (see spanflow demo --help)")
	}
	cfg := demo.DefaultConfiguration()
	cfg.Duration, cfg.Rate = c.Duration("duration"), c.Int("rate")
	cfg.Port, cfg.VCenterPort = c.Int("port"), c.Int("vcenter-port")
	cfg.Output, cfg.ESURL, cfg.KibanaURL = c.String("output"), c.String("es-url"), c.String("kibana-url")
	cfg.Seed = c.Uint64("seed")
	cfg.Pcap = c.String("write-pcap")
	if err := cfg.Validate(); err != nil {
		return errors.New(oneLineError(err))
	}
	// The demo's own lines say what happens; component logs only when
	// something goes wrong, unless a level is asked for.
	levelName, given := globalFlag(c, "log-level")
	level, err := reporter.ParseLevel(levelName)
	if err != nil {
		return err
	}
	if !given && os.Getenv("SPANFLOW_LOG_LEVEL") == "" {
		level = slog.LevelWarn
	}
	format, _ := globalFlag(c, "log-format")
	r := reporter.New(reporter.NewLogger(c.App.ErrWriter, level, format == "json"))
	ctx, cancel := signalContext(c.Context)
	defer cancel()
	_, err = demo.Run(ctx, r, cfg, demo.Streams{Out: c.App.Writer, Err: c.App.ErrWriter, ErrIsTerminal: isTerminal(c.App.ErrWriter)})
	if err != nil {
		return errors.New("demo: " + oneLineError(err))
	}
	return nil
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
