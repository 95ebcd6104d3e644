package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spanflow/spanflow/collector"
	"github.com/spanflow/spanflow/collector/alert"
	"github.com/spanflow/spanflow/collector/output/elasticsearch/setup"
	"github.com/spanflow/spanflow/collector/rollup"
	"github.com/spanflow/spanflow/internal/esconn"
)

// esCategory groups the Elasticsearch flags in help output.
const esCategory = "Elasticsearch"

// esConnFlags say how to reach the cluster: the collector's Elasticsearch
// connection settings. Secrets come from the environment or from files,
// never from a flag's value (it would show in ps).
func esConnFlags() []cli.Flag {
	d := collector.DefaultConfiguration().Elasticsearch.Connection
	return settingsFlags(&d)
}

func esConnConfig(c *cli.Context, base esconn.Configuration) esconn.Configuration {
	d := collector.DefaultConfiguration().Elasticsearch.Connection
	applySettings(c, &d)
	return d.Apply(base)
}

// esNoAnswer says, when the cluster refused or never took the connection,
// where spanflow looked and what to do: the client's error names only the
// dial, under whatever request came first ("line load (in): search ...").
func esNoAnswer(c *cli.Context, what string, err error) error {
	var op *net.OpError
	if err == nil || !errors.As(err, &op) || op.Op != "dial" {
		return err
	}
	urls := esConnConfig(c, esconn.DefaultConfiguration()).URLs
	return fmt.Errorf("%s: no Elasticsearch answers at %s (%v): start it, or give its address with --es-url", what, strings.Join(urls, ", "), op)
}

// esSetupFlags configure the index template and lifecycle, as the
// collector's es-* settings do.
func esSetupFlags() []cli.Flag {
	d := collector.DefaultConfiguration().Elasticsearch.Setup
	return settingsFlags(&d)
}

func esSetupConfig(c *cli.Context) setup.Configuration {
	d := collector.DefaultConfiguration().Elasticsearch.Setup
	applySettings(c, &d)
	return d.Configuration()
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
					"elsewhere flows go to daily indices spanflow-flows-YYYY.MM.DD, removed by 'spanflow es prune'.\n" +
					"Then checks the indices already there: one line per index whose mapping disagrees with the\n" +
					"template (created without it), saying to reindex or delete it.",
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
					status := startStatus(c.App.ErrWriter, "installing the index template, settings and lifecycle", nil)
					layout, err := setup.Install(ctx, client, cfg)
					status.Stop()
					if err != nil {
						return esNoAnswer(c, "es setup", fmt.Errorf("es setup: %w", err))
					}
					fmt.Fprintf(c.App.Writer, "installed index template %s for %s: flows go to %s\n", setup.TemplateName, setup.IndexPattern, layout)
					if !layout.DataStream {
						fmt.Fprintln(c.App.Writer, "this cluster has no ILM/data streams: run 'spanflow es prune --older-than 30d' daily (cron or systemd timer)")
					}
					// The template applies to indices created after it: one
					// created before (flows indexed into a cluster without it)
					// keeps default mappings, and reports fail on it.
					wrong, err := setup.CheckMappings(ctx, client)
					if err != nil {
						return fmt.Errorf("es setup: %w", err)
					}
					for _, w := range wrong {
						fmt.Fprintln(c.App.Writer, w.Advice())
					}
					return nil
				},
			},
			{
				Name:  "prune",
				Usage: "delete daily flow, rollup and alert indices (spanflow-flows|rollups|alerts-YYYY.MM.DD) older than --older-than",
				Description: "An index is deleted once its whole day is older than the age. Data stream indices are\n" +
					"left alone (ILM deletes them). Run it daily where the cluster has no ILM; give the\n" +
					"rollups a shorter age with a second run: es prune --indices rollups --older-than 7d.",
				Flags: append(esConnFlags(),
					&cli.StringFlag{Name: "older-than", Value: fmt.Sprintf("%dd", setup.DefaultConfiguration().RetentionDays), Usage: "age of the indices to delete: 30d, 12h"},
					&cli.BoolFlag{Name: "dry-run", Usage: "list the indices that would be deleted, delete nothing"},
					&cli.StringSliceFlag{Name: "indices", Value: cli.NewStringSlice("flows", "rollups", "alerts"), Usage: "which daily indices: flows, rollups, alerts (comma-separated or repeated)"},
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
					prefixes, err := prunePrefixes(c.StringSlice("indices"))
					if err != nil {
						return err
					}
					names, err := setup.Prune(ctx, client, age, time.Now(), c.Bool("dry-run"), prefixes...)
					verb := "deleted"
					if c.Bool("dry-run") {
						verb = "would delete"
					}
					for _, n := range names {
						fmt.Fprintf(c.App.Writer, "%s %s\n", verb, n)
					}
					if err != nil {
						return esNoAnswer(c, "es prune", fmt.Errorf("es prune: %w", err))
					}
					if len(names) == 0 {
						fmt.Fprintf(c.App.Writer, "no daily index of %s older than %s\n", strings.Join(c.StringSlice("indices"), ", "), c.String("older-than"))
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
					if c.Bool("data-stream") && c.Bool("ilm-policy") {
						return errors.New("--data-stream and --ilm-policy: give one (--ilm-policy prints the policy, which has no data stream variant)")
					}
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

// prunePrefixes maps es prune's --indices names to index name prefixes.
func prunePrefixes(names []string) ([]string, error) {
	var out []string
	for _, n := range names {
		for _, n := range strings.Split(n, ",") {
			switch strings.TrimSpace(n) {
			case "flows":
				out = append(out, setup.DailyPrefix)
			case "rollups":
				out = append(out, rollup.IndexPrefix)
			case "alerts":
				out = append(out, alert.AlertsIndexPrefix)
			default:
				return nil, fmt.Errorf("--indices %q: not flows, rollups or alerts", n)
			}
		}
	}
	return out, nil
}
