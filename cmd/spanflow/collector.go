package main

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spanflow/spanflow/collector/forward"
	"github.com/spanflow/spanflow/collector/listen"
	"github.com/spanflow/spanflow/collector/output/elasticsearch"
	"github.com/spanflow/spanflow/collector/output/ndjson"
	"github.com/spanflow/spanflow/collector/pcapreplay"
	"github.com/spanflow/spanflow/collector/pipeline"
	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/lifecycle"
	"github.com/spanflow/spanflow/internal/reporter"
)

// collectorOutput is one of the collector's outputs: a sink with a lifecycle.
type collectorOutput interface {
	flow.Sink
	lifecycle.Component
}

// collectorOutputs builds each kind of --output value ("KIND" or
// "KIND:ARG"). Adding an output is one entry here, plus its flags in
// collectorOutputFlags.
var collectorOutputs = map[string]func(c *cli.Context, r *reporter.Reporter, arg string) (collectorOutput, error){
	"stdout": func(c *cli.Context, r *reporter.Reporter, _ string) (collectorOutput, error) {
		return ndjson.New(r, ndjson.DefaultConfiguration(), c.App.Writer)
	},
	"file": func(c *cli.Context, r *reporter.Reporter, path string) (collectorOutput, error) {
		if path == "" {
			return nil, fmt.Errorf("--output file:PATH needs a path")
		}
		cfg := ndjson.DefaultConfiguration()
		cfg.Path, cfg.MaxBytes, cfg.MaxFiles = path, c.Int64("output-max-bytes"), c.Int("output-max-files")
		return ndjson.New(r, cfg, nil)
	},
	"elasticsearch": func(c *cli.Context, r *reporter.Reporter, _ string) (collectorOutput, error) {
		return elasticsearch.New(r, esOutputConfig(c))
	},
}

// collectorOutputFlags are the flags of the outputs in collectorOutputs.
var collectorOutputFlags = append([]cli.Flag{
	&cli.Int64Flag{Name: "output-max-bytes", Value: ndjson.DefaultConfiguration().MaxBytes, Usage: "rotate a file output when it would grow past this many bytes (0: never)"},
	&cli.IntFlag{Name: "output-max-files", Value: ndjson.DefaultConfiguration().MaxFiles, Usage: "rotated files kept besides the current one (PATH.1 ... PATH.N)"},
}, esOutputFlags()...) // --es-*: see docs/elasticsearch.md

// collectorEnrichers builds the enrichers applied to every record, in
// order, between decoding and the outputs. Adding an enricher is one entry.
var collectorEnrichers = []func(c *cli.Context, r *reporter.Reporter) (flow.Enricher, lifecycle.Component, error){collectorEnricher}

// collectorEnricherFlags are the flags of the enrichers.
var collectorEnricherFlags = enrichFlags() // cmd/spanflow/vsphere.go

func buildOutputs(c *cli.Context, r *reporter.Reporter) ([]collectorOutput, []pipeline.Output, error) {
	specs := c.StringSlice("output")
	if len(specs) == 0 && c.IsSet("es-url") {
		specs = []string{"elasticsearch"}
	}
	if len(specs) == 0 {
		specs = []string{"stdout"}
	}
	var comps []collectorOutput
	var outs []pipeline.Output
	for _, spec := range specs {
		kind, arg, _ := strings.Cut(spec, ":")
		build, ok := collectorOutputs[kind]
		if !ok {
			known := make([]string, 0, len(collectorOutputs))
			for k := range collectorOutputs {
				known = append(known, k)
			}
			return nil, nil, fmt.Errorf("unknown output %q: use one of %s", spec, strings.Join(known, ", "))
		}
		o, err := build(c, r.Sub("output "+kind), arg)
		if err != nil {
			return nil, nil, fmt.Errorf("output %s: %w", spec, err)
		}
		comps = append(comps, o)
		outs = append(outs, pipeline.Output{Name: spec, Sink: o})
	}
	return comps, outs, nil
}

func collectorCommand() *cli.Command {
	defListen := listen.DefaultConfiguration()
	defDec := decoders.DefaultConfiguration()
	flags := []cli.Flag{
		&cli.StringFlag{Name: "pcap", Usage: "read the flow datagrams (UDP payloads) of this pcap/pcapng capture through the pipeline, then exit"},
		&cli.StringSliceFlag{Name: "netflow-listen", Value: cli.NewStringSlice(":2055"), Usage: "UDP address(es) for NetFlow v5/v9 (and IPFIX); \"\" disables"},
		&cli.StringSliceFlag{Name: "ipfix-listen", Value: cli.NewStringSlice(":4739"), Usage: "UDP address(es) for IPFIX; \"\" disables"},
		&cli.StringSliceFlag{Name: "ipfix-tcp-listen", Value: cli.NewStringSlice(":4739"), Usage: "TCP address(es) for IPFIX over TCP; \"\" disables"},
		&cli.StringSliceFlag{Name: "sflow-listen", Value: cli.NewStringSlice(":6343"), Usage: "UDP address(es) for sFlow v5; \"\" disables"},
		&cli.IntFlag{Name: "sockets", Value: defListen.Sockets, Usage: "SO_REUSEPORT sockets (each with a decoding goroutine) per UDP address"},
		&cli.IntFlag{Name: "receive-buffer", Value: defListen.ReceiveBuffer, Usage: "socket receive buffer in bytes (as root beyond net.core.rmem_max)"},
		&cli.StringSliceFlag{Name: "output", Usage: "where documents go: stdout (NDJSON, the default), file:PATH (NDJSON, rotated by size), elasticsearch (--es-url; the default when --es-url is given); repeatable"},
		&cli.StringSliceFlag{Name: "forward", Usage: "re-send every received datagram unchanged to HOST:PORT; repeatable"},
		&cli.BoolFlag{Name: "forward-spoof", Usage: "forwarded datagrams keep the exporter's source address (IPv4, raw socket: root or CAP_NET_RAW)"},
		&cli.StringSliceFlag{Name: "allow", Usage: "accept datagrams only from this exporter network (CIDR); repeatable; default: all"},
		&cli.IntFlag{Name: "max-exporters", Value: defDec.MaxExporters, Usage: "exporters to keep state for; datagrams from more are dropped and counted"},
		&cli.IntFlag{Name: "max-templates", Value: defDec.MaxTemplatesPerExporter, Usage: "NetFlow v9/IPFIX templates kept per exporter; more are refused and counted"},
		&cli.IntFlag{Name: "max-held-sets", Value: defDec.MaxPendingPerExporter, Usage: "data sets held per exporter while their template has not arrived"},
		&cli.DurationFlag{Name: "template-wait", Value: defDec.PendingTimeout, Usage: "how long a data set is held for its template before it is dropped and counted"},
		&cli.DurationFlag{Name: "exporter-stats-interval", Value: pipeline.DefaultConfiguration().ExporterStatsInterval, Usage: "every this often, write one statistics document (event.kind metric, spanflow.exporter.*) per exporter and observation domain seen; 0 disables (with --pcap: off unless given, then written at the end)"},
		&cli.StringFlag{Name: "metrics-listen", Value: "127.0.0.1:9109", Usage: "serve Prometheus metrics at http://ADDR/metrics; \"\" disables"},
	}
	flags = append(flags, collectorOutputFlags...)
	flags = append(flags, collectorEnricherFlags...)
	return &cli.Command{
		Name:  "collector",
		Usage: "receive NetFlow v5/v9, IPFIX and sFlow and write one ECS document per flow",
		Subcommands: []*cli.Command{{
			Name:  "run",
			Usage: "run the collector (listeners, or a capture with --pcap) until SIGINT/SIGTERM or the capture's end",
			Description: "Decodes NetFlow v5/v9, IPFIX and sFlow v5 into one document per flow (ECS field names, see\n" +
				"docs/fields.md), applies the enrichers and writes to the outputs (NDJSON on stdout by default).\n" +
				"With --pcap it runs the same pipeline over the UDP datagrams of a capture and exits at its end.",
			Flags:  flags,
			Action: runCollector,
		}},
	}
}

func nonEmpty(vals []string) []string {
	var out []string
	for _, v := range vals {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func runCollector(c *cli.Context) error {
	r, err := newReporter(c)
	if err != nil {
		return err
	}
	pcfg := pipeline.DefaultConfiguration()
	if pcfg.Allow, err = pipeline.ParseAllow(c.StringSlice("allow")); err != nil {
		return err
	}
	pcfg.Decoder.MaxExporters = c.Int("max-exporters")
	pcfg.Decoder.MaxTemplatesPerExporter = c.Int("max-templates")
	pcfg.Decoder.MaxPendingPerExporter = c.Int("max-held-sets")
	pcfg.Decoder.PendingTimeout = c.Duration("template-wait")
	pcfg.ExporterStatsInterval = c.Duration("exporter-stats-interval")
	if c.String("pcap") != "" {
		// Held data expires by capture time, as datagrams are read.
		pcfg.ExpireInterval = 0
		if !c.IsSet("exporter-stats-interval") {
			// A replay's statistics cover the whole capture, written at its
			// end, only when asked for.
			pcfg.ExporterStatsInterval = 0
		}
	}

	var group lifecycle.Group
	var comps []lifecycle.Component
	comps = append(comps, reporter.NewMetricsServer(r, c.String("metrics-listen")))

	outComps, outs, err := buildOutputs(c, r)
	if err != nil {
		return err
	}
	for _, o := range outComps {
		comps = append(comps, o)
	}
	var deps pipeline.Dependencies
	deps.Outputs = outs
	for _, build := range collectorEnrichers {
		e, comp, err := build(c, r)
		if err != nil {
			return err
		}
		if comp != nil {
			comps = append(comps, comp)
		}
		deps.Enrichers = append(deps.Enrichers, e)
	}
	if targets := nonEmpty(c.StringSlice("forward")); len(targets) > 0 {
		fw, err := forward.New(r.Sub("forward"), forward.Configuration{Targets: targets, Spoof: c.Bool("forward-spoof")})
		if err != nil {
			return err
		}
		comps = append(comps, fw)
		deps.Taps = append(deps.Taps, fw)
	}
	p, err := pipeline.New(r.Sub("pipeline"), pcfg, deps)
	if err != nil {
		return err
	}
	comps = append(comps, p)

	if path := c.String("pcap"); path != "" {
		if err := group.Start(comps...); err != nil {
			return err
		}
		w := p.NewWorker()
		st, rerr := pcapreplay.Read(path, func(dg decoders.Datagram, _ netip.AddrPort) error {
			w.Handle(dg)
			return nil
		})
		dropped := p.Flush()
		r.Log.Info("capture replayed", "file", path, "frames", st.Frames, "datagrams", st.Datagrams,
			"not_udp", st.Skipped, "sets_without_template", dropped)
		serr := group.Stop()
		if rerr != nil {
			return rerr
		}
		return serr
	}

	lcfg := listen.DefaultConfiguration()
	lcfg.UDP = nonEmpty(append(append(c.StringSlice("netflow-listen"), c.StringSlice("ipfix-listen")...), c.StringSlice("sflow-listen")...))
	lcfg.TCP = nonEmpty(c.StringSlice("ipfix-tcp-listen"))
	lcfg.Sockets, lcfg.ReceiveBuffer = c.Int("sockets"), c.Int("receive-buffer")
	if len(lcfg.UDP) == 0 && len(lcfg.TCP) == 0 {
		return fmt.Errorf("nothing to listen on: give a --*-listen address or --pcap FILE")
	}
	l, err := listen.New(r.Sub("listen"), lcfg, listen.Dependencies{NewHandler: func() listen.Handler { return p.NewWorker() }})
	if err != nil {
		return err
	}
	comps = append(comps, l)
	if err := group.Start(comps...); err != nil {
		return err
	}
	ctx, cancel := signalContext(c.Context)
	defer cancel()
	<-ctx.Done()
	r.Log.Info("stopping collector")
	stopped := make(chan error, 1)
	go func() { stopped <- group.Stop() }()
	select {
	case err := <-stopped:
		return err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("collector did not stop within 30s")
	}
}
