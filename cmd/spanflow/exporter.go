package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spanflow/spanflow/exporter"
	"github.com/spanflow/spanflow/exporter/distribute"
	"github.com/spanflow/spanflow/exporter/ring"
	"github.com/spanflow/spanflow/internal/reporter"
)

func exporterCommand() *cli.Command {
	return &cli.Command{
		Name:  "exporter",
		Usage: "turn mirrored traffic into flows and export them as IPFIX",
		Description: "The exporter decodes mirrored frames (802.1Q/QinQ, GRE, ERSPAN I/II/III, VXLAN, Geneve undone),\n" +
			"meters flows with TCP performance (handshake RTT, retransmissions, zero windows) and sends\n" +
			"standard IPFIX over UDP to every collector. See docs/exporter.md.",
		Subcommands: []*cli.Command{exporterRunCommand(), exporterInitCommand(), exporterCheckCommand(), exporterInstallCommand()},
	}
}

// exporterRunFlags are the flags of `exporter run`; every one has a key of
// the same name in the --config file. A live source (--interface) is added
// beside --pcap.
func exporterRunFlags() []cli.Flag {
	d := exporter.DefaultConfiguration()
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Usage: "YAML file with any of these settings (keys are the flag names; flags given override it)"},
		&cli.StringFlag{Name: "pcap", Usage: "read this pcap or pcapng `FILE` (or one compressed with gzip or zstd), export every flow, and exit"},
		&cli.IntFlag{Name: "pcap-rate", Value: d.PcapRate, Usage: "with --pcap, send at most `N` IPFIX messages a second (0: as fast as the file is read), so that a collector's socket buffer is not overrun; SIGINT or SIGTERM stops reading and sends the flows metered so far at once"},
		&cli.StringSliceFlag{Name: "interface", Usage: "capture live on `IFACE` (AF_PACKET ring, promiscuous) until SIGINT/SIGTERM, then export every flow; repeat for several; IFACE=ID sets its observation point id (default 1024, 1025... in order; ERSPAN session ids win)"},
		&cli.StringFlag{Name: "filter", Usage: "tcpdump filter `EXPR` applied in the kernel to the live capture, e.g. 'not port 22' (compiled by libpcap, loaded at run time)"},
		&cli.IntFlag{Name: "ring-size", Value: d.RingSize, Usage: "size of the AF_PACKET ring in `MiB` (per interface and worker)"},
		&cli.IntFlag{Name: "fanout", Value: d.Fanout, Usage: "`N` capture workers (PACKET_FANOUT hash), each a pipeline of its own on its own core; worker n exports with observation domain observation-domain+n"},
		&cli.StringSliceFlag{Name: "collector", Usage: "send IPFIX to `HOST:PORT` over UDP, or to udp://, tcp:// or tls://HOST:PORT (repeat for several collectors); HOST:PORT?compat=pmacct sends that collector tcpControlBits in 1 octet, which pmacct's nfacctd needs"},
		&cli.StringFlag{Name: "ca-file", Usage: "PEM `FILE` of the CAs that tls:// collectors' certificates must chain to (system CAs when empty)"},
		&cli.StringFlag{Name: "cert-file", Usage: "PEM `FILE` of the exporter's client certificate (with its intermediates) for tls:// collectors that require one; give key-file too"},
		&cli.StringFlag{Name: "key-file", Usage: "PEM `FILE` of the key of cert-file"},
		&cli.IntFlag{Name: "queue-size", Value: d.QueueSize, Usage: "IPFIX messages a tcp:// or tls:// collector buffers while it is away; more are dropped and counted"},
		&cli.DurationFlag{Name: "active-timeout", Value: time.Duration(d.ActiveTimeout), Usage: "export a flow that has lasted this long, and go on in a new record"},
		&cli.DurationFlag{Name: "idle-timeout", Value: time.Duration(d.IdleTimeout), Usage: "export a flow that saw no packet for this long"},
		&cli.DurationFlag{Name: "active-timeout-fast", Usage: "shorter active timeout (e.g. 5s) for the flows active-timeout-fast-for selects, so that their interim counters reach the collector in time for alerting (more records per second)"},
		&cli.StringSliceFlag{Name: "active-timeout-fast-for", Usage: "flows that get active-timeout-fast: `SELECTOR` of terms that must all match, e.g. 'net 10.20.0.0/16 port 443,5432' (also proto, vlan, vni, or a bare prefix); repeat for several"},
		&cli.UintFlag{Name: "observation-domain", Value: uint(d.ObservationDomain), Usage: "IPFIX observation domain id of the messages"},
		&cli.IntFlag{Name: "max-flows", Value: d.MaxFlows, Usage: "flows kept at most; when full the least recently seen is exported early"},
		&cli.IntFlag{Name: "mtu", Value: d.MTU, Usage: "path MTU to the collectors: IPFIX messages are at most MTU-48 bytes"},
		&cli.DurationFlag{Name: "template-refresh", Value: time.Duration(d.TemplateRefreshInterval), Usage: "re-send the IPFIX templates after this much time"},
		&cli.IntFlag{Name: "template-refresh-messages", Value: d.TemplateRefreshMessages, Usage: "re-send the IPFIX templates every this many messages"},
		&cli.StringFlag{Name: "packet-ring", Usage: "keep every captured frame (as mirrored, tunnel headers included) in a packet ring under `DIR`, for `spanflow pcap query` (docs/retrospection.md)"},
		&cli.StringFlag{Name: "packet-ring-size", Value: d.PacketRingSize, Usage: "the packet ring's `SIZE` on disk (MiB, GiB, TiB); the oldest segments go to stay within it"},
		&cli.StringFlag{Name: "packet-ring-min-free", Value: d.PacketRingMinFree, Usage: "free space (`SIZE`) the packet ring leaves on its file system: below it the oldest segments go"},
		&cli.IntFlag{Name: "packet-ring-snaplen", Usage: "bytes the packet ring keeps of each frame (0: whole frames, up to the capture's own snap length)"},
		&cli.StringFlag{Name: "packet-ring-compress", Value: d.PacketRingCompress, Usage: "compression of the packet ring's blocks: zstd or none"},
		&cli.StringFlag{Name: "packet-ring-filter", Usage: "tcpdump filter `EXPR` choosing the frames the packet ring keeps (all when empty); metering sees every frame"},
		&cli.BoolFlag{Name: "packet-ring-headers-only", Usage: "keep each frame only up to the end of its innermost transport header (TCP with options, UDP, ICMP's 8 bytes), and no bytes of frames without an IP packet: no payload on disk"},
		&cli.StringFlag{Name: "packet-ring-listen", Usage: "serve packet ring queries (spanflow pcap query --exporter) at `ADDR` (off by default; an address that is not loopback needs packet-ring-cert-file)"},
		&cli.StringFlag{Name: "packet-ring-token-file", Usage: "`FILE` holding the token queries must bear (Authorization: Bearer; else SPANFLOW_PACKET_RING_TOKEN)"},
		&cli.StringFlag{Name: "packet-ring-cert-file", Usage: "PEM `FILE` of the query server's certificate: serve HTTPS"},
		&cli.StringFlag{Name: "packet-ring-key-file", Usage: "PEM `FILE` of the key of packet-ring-cert-file"},
		&cli.StringFlag{Name: "probe-name", Usage: "`NAME` of this probe, sent in IPFIX (observationDomainName) so that flow documents name the probe whose packet ring holds their packets (default with packet-ring-listen: the host name)"},
		&cli.StringFlag{Name: "packet-ring-url", Usage: "`URL` at which analysts reach this probe's packet ring queries, sent in IPFIX; flow documents link to it (default with packet-ring-listen: http(s)://HOST:PORT of the listen address)"},
		&cli.StringFlag{Name: "packet-ring-client-ca-file", Usage: "PEM `FILE` of the CAs whose client certificates may query (mutual TLS; the token is then not needed)"},
		&cli.StringFlag{Name: "distribute", Usage: "hand chosen packets to a packet tool: `RULE` is 'DEST[?OPTIONS] [FILTER]' with DEST iface:NAME, vxlan://HOST[:PORT]?vni=N, gre://HOST[?key=N], erspan2://HOST?session=N[&index=N] or erspan3://HOST?session=N; OPTIONS snap-length=N, dedup=10ms, sample=N, strip-tunnel=true, queue-size=N, rate=N (frames/s); FILTER a tcpdump expression. In the --config file, distribute: is a list of such rules (name, to, filter, nets, snap-length, dedup, sample, strip-tunnel, queue-size, rate), reloaded on SIGHUP; see docs/distribution.md"},
		&cli.StringFlag{Name: "metrics-listen", Value: "", Usage: "serve Prometheus metrics at http://`ADDR`/metrics while running (default " + defaultMetricsListen + " with --interface, off with --pcap; \"off\" disables)"},
	}
}

func exporterRunCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "meter a capture and export its flows as IPFIX to the collectors",
		Description: "With --pcap FILE, reads the capture (flow time is the packets' time, so the output is the\n" +
			"same on every run), exports every flow and prints a one-line summary.\n" +
			"Example: spanflow exporter run --pcap mirror.pcap --collector 127.0.0.1:4739",
		Flags: exporterRunFlags(),
		Action: func(c *cli.Context) error {
			cfg, err := exporterConfiguration(c)
			if err != nil {
				return errors.New(oneLineError(err))
			}
			rep, err := newReporter(c)
			if err != nil {
				return err
			}
			srcs, err := exporter.OpenSources(cfg)
			if err != nil {
				return errors.New(oneLineError(err))
			}
			defer func() {
				for _, s := range srcs {
					s.Close()
				}
			}()
			fanout, err := exporter.NewFanout(rep, cfg, srcs, nil)
			if err != nil {
				return errors.New(oneLineError(err))
			}
			if scfg, _ := cfg.RingServer(); scfg.Listen != "" {
				srv, err := ring.NewServer(cfg.PacketRing, scfg)
				if err != nil {
					return errors.New(oneLineError(err))
				}
				if err := srv.Start(); err != nil {
					return err
				}
				defer srv.Stop()
			}
			metrics := reporter.NewMetricsServer(rep, cfg.MetricsAddr())
			if err := metrics.Start(); err != nil {
				return err
			}
			defer metrics.Stop()
			ctx, cancel := signalContext(c.Context)
			defer cancel()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP) // before Run: a SIGHUP from now on reloads
			defer signal.Stop(hup)
			go reloadOnSIGHUP(ctx, hup, c, rep, fanout)
			sum, err := fanout.Run(ctx)
			fmt.Fprintf(c.App.Writer, "spanflow exporter: %s\n", sum)
			if err != nil {
				return fmt.Errorf("%s: %s", cfg.Pcap+strings.Join(cfg.Interfaces, ","), oneLineError(err))
			}
			return nil
		},
	}
}

const defaultMetricsListen = exporter.DefaultMetricsListen

// exporterConfiguration is the defaults, then the --config file, then the
// flags given on the command line.
func exporterConfiguration(c *cli.Context) (exporter.Configuration, error) {
	cfg := exporter.DefaultConfiguration()
	if path := c.String("config"); path != "" {
		if err := cfg.LoadFile(path); err != nil {
			// The errors say their line, not the file.
			return cfg, fmt.Errorf("configuration %s: %w", path, err)
		}
	}
	// A source given by flag replaces the file's: --pcap a capture of the
	// live interface (and its filter), --interface the file's capture.
	switch {
	case c.IsSet("pcap") && !c.IsSet("interface"):
		cfg.Interfaces, cfg.Filter = nil, ""
	case c.IsSet("interface") && !c.IsSet("pcap"):
		cfg.Pcap = ""
	}
	override(c, "pcap", &cfg.Pcap, c.String)
	override(c, "pcap-rate", &cfg.PcapRate, c.Int)
	override(c, "interface", &cfg.Interfaces, func(n string) exporter.StringList { return c.StringSlice(n) })
	override(c, "filter", &cfg.Filter, c.String)
	override(c, "ring-size", &cfg.RingSize, c.Int)
	override(c, "fanout", &cfg.Fanout, c.Int)
	override(c, "ca-file", &cfg.CAFile, c.String)
	override(c, "cert-file", &cfg.CertFile, c.String)
	override(c, "key-file", &cfg.KeyFile, c.String)
	override(c, "queue-size", &cfg.QueueSize, c.Int)
	override(c, "metrics-listen", &cfg.MetricsListen, c.String)
	override(c, "collector", &cfg.Collectors, c.StringSlice)
	override(c, "active-timeout", &cfg.ActiveTimeout, duration(c))
	override(c, "idle-timeout", &cfg.IdleTimeout, duration(c))
	override(c, "active-timeout-fast", &cfg.ActiveTimeoutFast, duration(c))
	override(c, "active-timeout-fast-for", &cfg.ActiveTimeoutFastFor, func(n string) exporter.StringList { return c.StringSlice(n) })
	if c.IsSet("observation-domain") {
		v := c.Uint("observation-domain")
		if v > 1<<32-1 {
			return cfg, fmt.Errorf("observation domain %d: must fit in 32 bits", v)
		}
		cfg.ObservationDomain = uint32(v)
	}
	override(c, "max-flows", &cfg.MaxFlows, c.Int)
	override(c, "mtu", &cfg.MTU, c.Int)
	override(c, "template-refresh", &cfg.TemplateRefreshInterval, duration(c))
	override(c, "template-refresh-messages", &cfg.TemplateRefreshMessages, c.Int)
	override(c, "packet-ring", &cfg.PacketRing, c.String)
	override(c, "packet-ring-size", &cfg.PacketRingSize, c.String)
	override(c, "packet-ring-min-free", &cfg.PacketRingMinFree, c.String)
	override(c, "packet-ring-snaplen", &cfg.PacketRingSnapLen, c.Int)
	override(c, "packet-ring-compress", &cfg.PacketRingCompress, c.String)
	override(c, "packet-ring-filter", &cfg.PacketRingFilter, c.String)
	override(c, "packet-ring-headers-only", &cfg.PacketRingHeadersOnly, c.Bool)
	override(c, "packet-ring-listen", &cfg.PacketRingListen, c.String)
	override(c, "packet-ring-token-file", &cfg.PacketRingTokenFile, c.String)
	override(c, "packet-ring-cert-file", &cfg.PacketRingCertFile, c.String)
	override(c, "packet-ring-key-file", &cfg.PacketRingKeyFile, c.String)
	override(c, "packet-ring-client-ca-file", &cfg.PacketRingClientCAFile, c.String)
	override(c, "probe-name", &cfg.ProbeName, c.String)
	override(c, "packet-ring-url", &cfg.PacketRingURL, c.String)
	if c.IsSet("distribute") {
		r, err := distribute.ParseFlag(c.String("distribute"))
		if err != nil {
			return cfg, err
		}
		cfg.Distribute = []distribute.Rule{r}
	}
	if c.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q: options are flags (see --help)", c.Args().First())
	}
	return cfg, cfg.Validate()
}

// override sets *dst from the flag name when the command line gave it, so
// flags win over the --config file and the file over the defaults.
func override[T any](c *cli.Context, name string, dst *T, get func(string) T) {
	if c.IsSet(name) {
		*dst = get(name)
	}
}

// duration reads a duration flag as the configuration's Duration type.
func duration(c *cli.Context) func(string) exporter.Duration {
	return func(name string) exporter.Duration { return exporter.Duration(c.Duration(name)) }
}

// oneLineError joins a multi-error on one line.
func oneLineError(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// reloadOnSIGHUP reloads the distribution rules of the --config file on
// SIGHUP, without stopping capture or metering. A file that does not load
// or rules that do not build leave the rules in force, and the log says why.
// Other settings need a restart.
func reloadOnSIGHUP(ctx context.Context, hup <-chan os.Signal, c *cli.Context, rep *reporter.Reporter, fanout *exporter.Fanout) {
	log := rep.Log.With("component", "distribute")
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		path := c.String("config")
		switch {
		case path == "":
			log.Warn("SIGHUP: no --config file to reload the distribution rules from")
			continue
		case c.IsSet("distribute"):
			log.Warn("SIGHUP: the distribution rule comes from --distribute, which wins over the file: nothing reloaded")
			continue
		}
		cfg := exporter.DefaultConfiguration()
		err := cfg.LoadFile(path)
		if err == nil {
			err = fanout.Reload(cfg.Distribute)
		}
		if err != nil {
			log.Error("SIGHUP: keeping the distribution rules in force", "config", path, "err", oneLineError(err))
			continue
		}
		log.Info("SIGHUP: distribution rules reloaded", "config", path, "rules", len(cfg.Distribute))
	}
}
