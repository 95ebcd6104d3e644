package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spanflow/spanflow/collector"
	"github.com/spanflow/spanflow/internal/pcapfile"
	"github.com/spanflow/spanflow/internal/yamlconf"
)

func collectorCommand() *cli.Command {
	return &cli.Command{
		Name:  "collector",
		Usage: "receive NetFlow v5/v9, IPFIX and sFlow and write one ECS document per flow",
		Description: "The collector decodes NetFlow v5/v9, IPFIX and sFlow v5, enriches every flow (vCenter\n" +
			"inventory, networks file, interface names) and writes it to its outputs. See docs/collector.md\n" +
			"and, for a production setup, docs/guide-collectors.md.",
		Subcommands: []*cli.Command{collectorRunCommand(), collectorCheckCommand(), collectorInstallCommand()},
	}
}

// collectorRunFlags are --config and a flag per setting of
// collector.Configuration (the file's keys are the same names).
func collectorRunFlags() []cli.Flag {
	def := collector.DefaultConfiguration()
	return append([]cli.Flag{
		&cli.StringFlag{Name: "config", TakesFile: true, Usage: "YAML `FILE` with any of these settings (keys are the flag names; flags given override it); check it with `collector check`"},
	}, settingsFlags(&def)...)
}

func collectorRunCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "run the collector (listeners, or a capture with --pcap) until SIGINT/SIGTERM or the capture's end",
		Description: "Decodes NetFlow v5/v9, IPFIX and sFlow v5 into one document per flow (ECS field names, see\n" +
			"docs/fields.md), applies the enrichers and writes to the outputs (NDJSON on stdout by default).\n" +
			"With --pcap it runs the same pipeline over the UDP datagrams of a capture and exits at its end.\n" +
			"Settings come from the defaults, then the --config file, then the flags given.",
		Flags:  collectorRunFlags(),
		Action: runCollector,
	}
}

// collectorConfiguration is the defaults, then the --config file, then the
// flags given on the command line.
func collectorConfiguration(c *cli.Context) (collector.Configuration, error) {
	cfg := collector.DefaultConfiguration()
	if path := c.String("config"); path != "" {
		if err := cfg.LoadFile(path); err != nil {
			return cfg, fmt.Errorf("%s: %w", path, err)
		}
	}
	applySettings(c, &cfg)
	if cfg.Input.Pcap != "" && !c.IsSet("metrics-listen") {
		// A replay binds no port unless told to: the collector service
		// holds the default one.
		var lines map[string]int
		if path := c.String("config"); path != "" {
			lines, _ = yamlconf.KeyLines(path)
		}
		if _, inFile := lines["metrics-listen"]; !inFile {
			cfg.MetricsListen = ""
		}
	}
	if c.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q: options are flags (see --help)", c.Args().First())
	}
	return cfg, nil
}

func runCollector(c *cli.Context) error {
	cfg, err := collectorConfiguration(c)
	if err != nil {
		return errors.New(oneLineError(err))
	}
	r, err := newReporter(c)
	if err != nil {
		return err
	}
	col, err := collector.New(r, cfg, collector.Dependencies{Stdout: c.App.Writer})
	if err != nil {
		return errors.New(oneLineError(err))
	}
	if path := cfg.Input.Pcap; path != "" {
		// A capture that cannot be read is said before anything starts,
		// not after an empty replay's summary.
		f, err := os.Open(path)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return fmt.Errorf("--pcap %s: %v", path, err)
		}
		f.Close()
		r, err := pcapfile.Open(path)
		if err != nil {
			return pcapError(path, err)
		}
		r.Close()
	}
	hup := notifyHUP()
	if err := col.Start(); err != nil {
		return err
	}
	if path := cfg.Input.Pcap; path != "" {
		st, rerr := col.Replay()
		if rerr != nil {
			col.Stop()
			return pcapError(path, rerr)
		}
		r.Log.Info("capture replayed", "file", path, "frames", st.Frames, "datagrams", st.Datagrams,
			"not_udp", st.Skipped, "sets_without_template", st.SetsWithoutTemplate)
		return col.Stop()
	}
	ctx, cancel := signalContext(c.Context)
	defer cancel()
	waitReopening(ctx, r.Log, hup, col.Reopen)
	r.Log.Info("stopping collector")
	stopped := make(chan error, 1)
	go func() { stopped <- col.Stop() }()
	select {
	case err := <-stopped:
		return err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("collector did not stop within 30s")
	}
}

func collectorCheckCommand() *cli.Command {
	return checkCommand("validate a collector configuration file and say what is wrong, one line each",
		"Reports bad YAML, unknown keys, values of the wrong type (durations such as 30s), settings\n"+
			"out of range, listen addresses that cannot be bound, unknown outputs, unreadable networks,\n"+
			"interface-names, password, CA, certificate and key files, each with the line of its key.\n"+
			"Exits 1 when anything is wrong.\n"+
			"Example: spanflow collector check --config /etc/spanflow/collector.yaml",
		collector.Check)
}

func collectorInstallCommand() *cli.Command {
	return installCommand("collector",
		"write a hardened systemd unit running the collector as a dedicated user",
		"Writes the unit to --path; it does not enable or start it. The unit runs\n"+
			"`spanflow collector run --config CONFIG` as --user (create it first:\n"+
			"useradd --system --no-create-home --shell /usr/sbin/nologin spanflow-collector), with\n"+
			"/var/lib/spanflow as its state directory (the Elasticsearch spool) and /var/log/spanflow for\n"+
			"file outputs; everything else is read-only. It gets no capability unless the configuration\n"+
			"needs one: CAP_NET_BIND_SERVICE for a listen port below 1024, CAP_NET_RAW for forward-spoof.\n"+
			"Example: spanflow collector install --path /etc/systemd/system/spanflow-collector.service",
		"configuration `FILE` the service reads (read now, when it exists, for the capabilities it needs)",
		func(config string) (unitSpec, error) {
			var caps []string
			if _, err := os.Stat(config); err == nil {
				cfg := collector.DefaultConfiguration()
				if err := cfg.LoadFile(config); err != nil {
					return unitSpec{}, fmt.Errorf("%s: %s (fix it, or check it with `collector check`)", config, oneLineError(err))
				}
				caps = collectorCapabilities(cfg)
			}
			return unitSpec{
				summary:      "flow records to Elasticsearch",
				stop:         "# SIGTERM stops the listeners first, then writes what was decoded (the spool keeps\n# what Elasticsearch does not take within es-drain-timeout).\nTimeoutStopSec=60",
				capabilities: caps,
				capsWhy:      "# Only what the configuration needs (read when the unit was written): a port below\n# 1024, or forwarding from the exporters' addresses.",
				families:     "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
				extra: "# The spool (es-spool-dir) lives in /var/lib/spanflow, file outputs in /var/log/spanflow.\n" +
					"StateDirectory=spanflow\nStateDirectoryMode=0750\nLogsDirectory=spanflow\nLogsDirectoryMode=0750\n" +
					"# Secrets kept in the environment (SPANFLOW_ES_API_KEY, SPANFLOW_VCENTER_PASSWORD), when the file exists.\n" +
					"EnvironmentFile=-/etc/spanflow/collector.env",
			}, nil
		})
}

// collectorCapabilities are the capabilities the configuration needs: to
// bind a port below 1024, and to send forwarded datagrams from the
// exporter's address. SO_RCVBUFFORCE would need CAP_NET_ADMIN; without it
// the buffer is capped at net.core.rmem_max (raise the sysctl instead).
func collectorCapabilities(cfg collector.Configuration) []string {
	var caps []string
	in := cfg.Input
	for _, a := range append(append(append(append([]string{}, in.NetFlowListen...), in.IPFIXListen...), in.IPFIXTCPListen...), in.SFlowListen...) {
		if _, p, err := net.SplitHostPort(strings.TrimSpace(a)); err == nil {
			if n, err := strconv.Atoi(p); err == nil && n > 0 && n < 1024 {
				caps = append(caps, "CAP_NET_BIND_SERVICE")
				break
			}
		}
	}
	if cfg.Outputs.ForwardSpoof {
		caps = append(caps, "CAP_NET_RAW")
	}
	return caps
}

// checkCommand is the check subcommand of a role: it validates --config
// with check and prints each problem on a line of its own.
func checkCommand(usage, description string, check func(path string) []string) *cli.Command {
	return &cli.Command{
		Name:        "check",
		Usage:       usage,
		Description: description,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Required: true, TakesFile: true, Usage: "YAML `FILE` to check"},
		},
		Action: func(c *cli.Context) error {
			path := c.String("config")
			problems := check(path)
			for _, p := range problems {
				fmt.Fprintf(c.App.Writer, "%s: %s\n", path, p)
			}
			if len(problems) > 0 {
				return fmt.Errorf("%d problem(s) in %s", len(problems), path)
			}
			fmt.Fprintf(c.App.Writer, "%s: OK\n", path)
			return nil
		},
	}
}

// pcapError says that the capture given with --pcap could not be read,
// naming the file once (the capture reader's errors mostly name it).
func pcapError(path string, err error) error {
	if strings.Contains(err.Error(), path) {
		return fmt.Errorf("--pcap: %v", err)
	}
	return fmt.Errorf("--pcap %s: %v", path, err)
}
