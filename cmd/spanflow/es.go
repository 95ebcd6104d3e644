package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spanflow/spanflow/collector/output/elasticsearch"
	"github.com/spanflow/spanflow/collector/output/elasticsearch/setup"
	"github.com/spanflow/spanflow/internal/esconn"
)

// esCategory groups the Elasticsearch flags in help output.
const esCategory = "Elasticsearch"

// esConnFlags say how to reach the cluster. Secrets come from the
// environment or from files, never from a flag's value (it would show in ps).
func esConnFlags() []cli.Flag {
	d := esconn.DefaultConfiguration()
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "es-url", Category: esCategory, Value: cli.NewStringSlice(d.URLs...),
			Usage: "Elasticsearch node URL, http:// or https:// (repeat for several nodes)"},
		&cli.StringFlag{Name: "es-ca-file", Category: esCategory, Usage: "PEM file of the CA that signed the cluster's HTTPS certificate"},
		&cli.StringFlag{Name: "es-fingerprint", Category: esCategory, Usage: "SHA-256 fingerprint (hex) of the cluster's CA certificate, as Elasticsearch prints it at first start"},
		&cli.StringFlag{Name: "es-api-key-file", Category: esCategory, Usage: "file holding the API key (base64 id:key); default: $SPANFLOW_ES_API_KEY"},
		&cli.StringFlag{Name: "es-user-file", Category: esCategory, Usage: "file holding the user name; default: $SPANFLOW_ES_USER"},
		&cli.StringFlag{Name: "es-password-file", Category: esCategory, Usage: "file holding the password; default: $SPANFLOW_ES_PASSWORD"},
		&cli.DurationFlag{Name: "es-timeout", Category: esCategory, Value: 30 * time.Second, Usage: "how long to wait for the cluster's answer to one request"},
	}
}

func esConnConfig(c *cli.Context, base esconn.Configuration) esconn.Configuration {
	base.URLs = c.StringSlice("es-url")
	base.CAFile = c.String("es-ca-file")
	base.Fingerprint = strings.ReplaceAll(c.String("es-fingerprint"), ":", "")
	base.APIKeyFile = c.String("es-api-key-file")
	base.UserFile = c.String("es-user-file")
	base.PasswordFile = c.String("es-password-file")
	base.Timeout = c.Duration("es-timeout")
	return base
}

// esSetupFlags configure the index template and lifecycle.
func esSetupFlags() []cli.Flag {
	d := setup.DefaultConfiguration()
	return []cli.Flag{
		&cli.IntFlag{Name: "es-shards", Category: esCategory, Value: d.Shards, Usage: "primary shards per index"},
		&cli.IntFlag{Name: "es-replicas", Category: esCategory, Value: d.Replicas, Usage: "replicas per shard (0 on a single node)"},
		&cli.StringFlag{Name: "es-refresh-interval", Category: esCategory, Value: d.RefreshInterval, Usage: "how soon indexed flows become searchable (Elasticsearch time: 30s, 1m)"},
		&cli.BoolFlag{Name: "es-best-compression", Category: esCategory, Value: d.BestCompression, Usage: "store with the best_compression codec (smaller, a little slower to index)"},
		&cli.StringFlag{Name: "es-lifecycle", Category: esCategory, Value: d.Lifecycle, Usage: "auto (data stream + ILM when the cluster has them, else daily indices), data-stream or daily"},
		&cli.IntFlag{Name: "es-retention-days", Category: esCategory, Value: d.RetentionDays, Usage: "ILM deletes data stream indices older than this many days"},
		&cli.StringFlag{Name: "es-rollover-size", Category: esCategory, Value: d.RolloverMaxPrimaryShardSize, Usage: "ILM rolls the data stream over when a primary shard reaches this size"},
		&cli.StringFlag{Name: "es-rollover-age", Category: esCategory, Value: d.RolloverMaxAge, Usage: "ILM rolls the data stream over at this age"},
	}
}

func esSetupConfig(c *cli.Context) setup.Configuration {
	return setup.Configuration{
		Shards:                      c.Int("es-shards"),
		Replicas:                    c.Int("es-replicas"),
		RefreshInterval:             c.String("es-refresh-interval"),
		BestCompression:             c.Bool("es-best-compression"),
		Lifecycle:                   c.String("es-lifecycle"),
		RetentionDays:               c.Int("es-retention-days"),
		RolloverMaxPrimaryShardSize: c.String("es-rollover-size"),
		RolloverMaxAge:              c.String("es-rollover-age"),
	}
}

// esOutputFlags are every flag of the collector's Elasticsearch output
// (connection, setup and indexing); esOutputConfig reads them.
func esOutputFlags() []cli.Flag {
	d := elasticsearch.DefaultConfiguration()
	flags := append(esConnFlags(), esSetupFlags()...)
	return append(flags,
		&cli.BoolFlag{Name: "es-setup", Category: esCategory, Value: d.RunSetup, Usage: "install the index template (and ILM policy, data stream) at start; refuse to start when that fails"},
		&cli.BoolFlag{Name: "es-gzip", Category: esCategory, Value: d.Connection.Compress, Usage: "gzip bulk requests"},
		&cli.IntFlag{Name: "es-workers", Category: esCategory, Value: d.Workers, Usage: "concurrent bulk requests"},
		&cli.IntFlag{Name: "es-flush-bytes", Category: esCategory, Value: d.FlushBytes, Usage: "send a bulk request when it holds this many bytes (uncompressed; at most 64 MiB)"},
		&cli.DurationFlag{Name: "es-flush-interval", Category: esCategory, Value: d.FlushInterval, Usage: "send a bulk request once its first document has waited this long"},
		&cli.IntFlag{Name: "es-queue-size", Category: esCategory, Value: d.QueueSize, Usage: "flow documents waiting in memory before they go to the spool"},
		&cli.StringFlag{Name: "es-spool-dir", Category: esCategory, Value: d.SpoolDir, Usage: "directory keeping flows the cluster cannot take now; replayed in order when it is back"},
		&cli.Int64Flag{Name: "es-spool-max-bytes", Category: esCategory, Value: d.SpoolMaxBytes, Usage: "bound of the spool; when full, the oldest flows are dropped and counted"},
		&cli.DurationFlag{Name: "es-drain-timeout", Category: esCategory, Value: d.DrainTimeout, Usage: "at stop, how long to wait for the cluster to take what is in memory before writing it to the spool"},
		&cli.StringFlag{Name: "es-dead-letter-file", Category: esCategory, Usage: "file receiving flows the cluster refuses for their content, with the reason (default: dead-letter.ndjson in the spool directory)"},
	)
}

func esOutputConfig(c *cli.Context) elasticsearch.Configuration {
	d := elasticsearch.DefaultConfiguration()
	d.Connection = esConnConfig(c, d.Connection)
	d.Connection.Compress = c.Bool("es-gzip")
	d.Setup = esSetupConfig(c)
	d.RunSetup = c.Bool("es-setup")
	d.Workers = c.Int("es-workers")
	d.FlushBytes = c.Int("es-flush-bytes")
	d.FlushInterval = c.Duration("es-flush-interval")
	d.QueueSize = c.Int("es-queue-size")
	d.SpoolDir = c.String("es-spool-dir")
	d.SpoolMaxBytes = c.Int64("es-spool-max-bytes")
	d.DeadLetterFile = c.String("es-dead-letter-file")
	d.DrainTimeout = c.Duration("es-drain-timeout")
	return d
}

func esCommand() *cli.Command {
	return &cli.Command{
		Name:  "es",
		Usage: "prepare and maintain the Elasticsearch cluster that stores flows",
		Description: "Credentials: SPANFLOW_ES_API_KEY, or SPANFLOW_ES_USER and SPANFLOW_ES_PASSWORD, or the files\n" +
			"named by --es-api-key-file / --es-user-file / --es-password-file. Never give them as flag values.",
		Subcommands: []*cli.Command{
			{
				Name:  "setup",
				Usage: "install the spanflow-flows-* index template, settings and lifecycle (idempotent)",
				Description: "Installs a composable index template whose mapping comes from the flow field table\n" +
					"(docs/fields.md). Where the cluster has ILM and data streams, also an ILM policy (rollover by\n" +
					"size and age, delete after --es-retention-days) and the data stream spanflow-flows-stream;\n" +
					"elsewhere flows go to daily indices spanflow-flows-YYYY.MM.DD, removed by 'spanflow es prune'.",
				Flags: append(esConnFlags(), esSetupFlags()...),
				Action: func(c *cli.Context) error {
					cfg := esSetupConfig(c)
					if err := cfg.Validate(); err != nil {
						return err
					}
					client, err := esconn.New(esConnConfig(c, esconn.DefaultConfiguration()))
					if err != nil {
						return err
					}
					ctx, cancel := signalContext(c.Context)
					defer cancel()
					ctx, cancelT := context.WithTimeout(ctx, 2*time.Minute)
					defer cancelT()
					layout, err := setup.Install(ctx, client, cfg)
					if err != nil {
						return fmt.Errorf("es setup: %w", err)
					}
					fmt.Fprintf(c.App.Writer, "installed index template %s for %s: flows go to %s\n", setup.TemplateName, setup.IndexPattern, layout)
					if !layout.DataStream {
						fmt.Fprintln(c.App.Writer, "this cluster has no ILM/data streams: run 'spanflow es prune --older-than 30d' daily (cron or systemd timer)")
					}
					return nil
				},
			},
			{
				Name:  "prune",
				Usage: "delete daily spanflow-flows-YYYY.MM.DD indices older than --older-than",
				Description: "An index is deleted once its whole day is older than the age. Data stream indices are\n" +
					"left alone (ILM deletes them). Run it daily where the cluster has no ILM.",
				Flags: append(esConnFlags(),
					&cli.StringFlag{Name: "older-than", Value: fmt.Sprintf("%dd", setup.DefaultConfiguration().RetentionDays), Usage: "age of the indices to delete: 30d, 12h"},
					&cli.BoolFlag{Name: "dry-run", Usage: "list the indices that would be deleted, delete nothing"},
				),
				Action: func(c *cli.Context) error {
					age, err := setup.ParseAge(c.String("older-than"))
					if err != nil {
						return fmt.Errorf("--older-than: %w", err)
					}
					client, err := esconn.New(esConnConfig(c, esconn.DefaultConfiguration()))
					if err != nil {
						return err
					}
					ctx, cancel := signalContext(c.Context)
					defer cancel()
					names, err := setup.Prune(ctx, client, age, time.Now(), c.Bool("dry-run"))
					verb := "deleted"
					if c.Bool("dry-run") {
						verb = "would delete"
					}
					for _, n := range names {
						fmt.Fprintf(c.App.Writer, "%s %s\n", verb, n)
					}
					if err != nil {
						return fmt.Errorf("es prune: %w", err)
					}
					if len(names) == 0 {
						fmt.Fprintf(c.App.Writer, "no daily index older than %s\n", c.String("older-than"))
					}
					return nil
				},
			},
			{
				Name:  "template",
				Usage: "print the index template (JSON) that setup would install, without contacting a cluster",
				Flags: append(esSetupFlags(),
					&cli.BoolFlag{Name: "data-stream", Usage: "print the data stream variant (with the ILM policy name)"},
					&cli.BoolFlag{Name: "ilm-policy", Usage: "print the ILM policy instead"},
				),
				Action: func(c *cli.Context) error {
					cfg := esSetupConfig(c)
					if err := cfg.Validate(); err != nil {
						return err
					}
					var body any = setup.ILMPolicy(cfg)
					if !c.Bool("ilm-policy") {
						tmpl, err := setup.IndexTemplate(cfg, c.Bool("data-stream"))
						if err != nil {
							return err
						}
						body = tmpl
					}
					enc := json.NewEncoder(c.App.Writer)
					enc.SetIndent("", "  ")
					return enc.Encode(body)
				},
			},
		},
	}
}
