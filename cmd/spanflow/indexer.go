package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spanflow/spanflow/collector"
)

func indexerCommand() *cli.Command {
	return &cli.Command{
		Name:  "indexer",
		Usage: "consume the flow records collectors publish to Kafka, enrich and index them (scale-out)",
		Description: "For estates that outgrow one collector: collectors run with --output kafka and publish every\n" +
			"flow record; indexers in one consumer group share the topic's partitions, enrich the records\n" +
			"and index them, committing offsets only once Elasticsearch acknowledged. A killed indexer's\n" +
			"partitions go to the others, which replay its last batch; the documents' deterministic ids\n" +
			"make the replay a no-op, so every flow is indexed once. See docs/scale-out.md.",
		Subcommands: []*cli.Command{indexerRunCommand(), indexerCheckCommand(), indexerInstallCommand()},
	}
}

func indexerRunCommand() *cli.Command {
	def := collector.DefaultIndexerConfiguration()
	return &cli.Command{
		Name:  "run",
		Usage: "run an indexer until SIGINT/SIGTERM",
		Description: "Joins the consumer group --kafka-group on the topic --kafka-topic (its encoding's version\n" +
			"appended: spanflow-flows-v1) at --kafka-brokers, enriches each batch (vCenter inventory,\n" +
			"networks file, interface names, as the collector does) and writes it to the outputs\n" +
			"(Elasticsearch by default), then commits its offsets.\n" +
			"Settings come from the defaults, then the --config file, then the flags given.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "config", TakesFile: true, Usage: "YAML `FILE` with any of these settings (keys are the flag names; flags given override it); check it with `indexer check`"},
		}, indexerESFlags(settingsFlags(&def))...),
		Action: runIndexer,
	}
}

// indexerUnusedES are the Elasticsearch settings of the collector's
// queue and spool, which the indexer bypasses: it sends each batch itself
// and holds it (Kafka is its buffer) until the cluster took it.
var indexerUnusedES = map[string]string{
	"es-queue-size":      "",
	"es-spool-max-bytes": "",
	"es-drain-timeout":   "",
	"es-flush-interval":  " (a batch is sent at once)",
	"es-spool-dir":       " but for the dead-letter file, there by default (the directory must be writable, and is this process's alone: another collector or indexer using it is refused at start)",
}

// indexerESFlags says, in the usage of the settings the indexer takes but
// does not use, that it does not use them: their collector text (documents
// waiting in memory, spooled to disk) was not true of the indexer.
func indexerESFlags(flags []cli.Flag) []cli.Flag {
	for _, f := range flags {
		why, ok := indexerUnusedES[f.Names()[0]]
		if !ok {
			continue
		}
		note := "unused by the indexer, which holds nothing in memory or on disk: Kafka keeps each batch until the cluster took it" + why + "; in the collector: "
		switch f := f.(type) {
		case *cli.IntFlag:
			f.Usage = note + f.Usage
		case *cli.Int64Flag:
			f.Usage = note + f.Usage
		case *cli.DurationFlag:
			f.Usage = note + f.Usage
		case *cli.StringFlag:
			f.Usage = note + f.Usage
		}
	}
	return flags
}

func runIndexer(c *cli.Context) error {
	cfg := collector.DefaultIndexerConfiguration()
	if path := c.String("config"); path != "" {
		if err := cfg.LoadFile(path); err != nil {
			return fmt.Errorf("%s: %s", path, oneLineError(err))
		}
	}
	applySettings(c, &cfg)
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: options are flags (see --help)", c.Args().First())
	}
	r, err := newReporter(c)
	if err != nil {
		return err
	}
	ix, err := collector.NewIndexer(r, cfg, collector.Dependencies{Stdout: c.App.Writer})
	if err != nil {
		return errors.New(oneLineError(err))
	}
	hup := notifyHUP()
	if err := ix.Start(); err != nil {
		return err
	}
	ctx, cancel := signalContext(c.Context)
	defer cancel()
	// An output that failed for good ends the process (status 1): alive,
	// it would keep its partitions, consuming nothing, for ever. Stopped,
	// it leaves the group, the other indexers take its partitions, and
	// systemd restarts it (Restart=on-failure).
	ctx, stopWaiting := context.WithCancel(ctx)
	defer stopWaiting()
	failed := make(chan error, 1)
	go func() {
		select {
		case err := <-ix.Failed():
			failed <- err
			stopWaiting()
		case <-ctx.Done():
		}
	}()
	waitReopening(ctx, r.Log, hup, ix.Reopen)
	stopWaiting()
	var failure error
	select {
	case failure = <-failed:
	default: // a signal
	}
	r.Log.Info("stopping indexer")
	stopped := make(chan error, 1)
	go func() { stopped <- ix.Stop() }()
	select {
	case err := <-stopped:
		if failure != nil {
			return errors.Join(fmt.Errorf("indexer stopped: %w", failure), err)
		}
		return err
	case <-time.After(cfg.Consumer.DrainTimeout + 30*time.Second):
		return fmt.Errorf("indexer did not stop within %s", cfg.Consumer.DrainTimeout+30*time.Second)
	}
}

func indexerCheckCommand() *cli.Command {
	return checkCommand("validate an indexer configuration file and say what is wrong, one line each",
		"Reports bad YAML, unknown keys, values of the wrong type, settings out of range, unknown\n"+
			"outputs, and credentials, certificates and CA files a start could not read (Kafka SASL user\n"+
			"and password, from their files or SPANFLOW_KAFKA_USER/PASSWORD as set for the check), each\n"+
			"with the line of its key. Exits 1 when anything is wrong.\n"+
			"Example: spanflow indexer check --config /etc/spanflow/indexer.yaml",
		collector.CheckIndexer)
}

func indexerInstallCommand() *cli.Command {
	return installCommand("indexer",
		"write a hardened systemd unit running an indexer as a dedicated user",
		"Writes the unit to --path; it does not enable or start it. The unit runs\n"+
			"`spanflow indexer run --config CONFIG` as --user (create it first:\n"+
			"useradd --system --no-create-home --shell /usr/sbin/nologin spanflow-indexer), with\n"+
			"/var/lib/spanflow as its state directory; everything else is read-only. It needs no capability.\n"+
			"Example: spanflow indexer install --path /etc/systemd/system/spanflow-indexer.service",
		"configuration `FILE` the service reads (checked now, when it exists)",
		func(config string) (unitSpec, error) {
			if _, err := os.Stat(config); err == nil {
				cfg := collector.DefaultIndexerConfiguration()
				if err := cfg.LoadFile(config); err != nil {
					return unitSpec{}, fmt.Errorf("%s: %s (fix it, or check it with `indexer check`)", config, oneLineError(err))
				}
			}
			return unitSpec{
				summary:  "Kafka flow records to Elasticsearch",
				stop:     "# SIGTERM indexes and commits the batch in hand (kafka-drain-timeout); what is left is\n# replayed by the other indexers.\nTimeoutStopSec=60",
				families: "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
				extra: "StateDirectory=spanflow\nStateDirectoryMode=0750\nLogsDirectory=spanflow\nLogsDirectoryMode=0750\n" +
					"# Secrets kept in the environment (SPANFLOW_ES_API_KEY, SPANFLOW_KAFKA_PASSWORD), when the file exists.\n" +
					"EnvironmentFile=-/etc/spanflow/indexer.env",
			}, nil
		})
}
