package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spanflow/spanflow/dashboards/kibana"
)

func dashboardsCommand() *cli.Command {
	return &cli.Command{
		Name:  "dashboards",
		Usage: "install spanflow's Kibana dashboards, or write them out for editing",
		Description: "The dashboards (Overview, East-West, North-South, Line load and Top IP, TCP health, Exporters) and\n" +
			"the spanflow-flows-* data view are Kibana 8.9+ saved objects built into this binary; docs/dashboards.md\n" +
			"describes every panel.",
		Subcommands: []*cli.Command{
			{
				Name:  "install",
				Usage: "import the dashboards into Kibana through its saved objects import API",
				Description: "Credentials: SPANFLOW_KIBANA_API_KEY, or SPANFLOW_KIBANA_USER and SPANFLOW_KIBANA_PASSWORD, or\n" +
					"the files named by --kibana-api-key-file / --kibana-user-file / --kibana-password-file. Never give\n" +
					"them as flag values. Without --overwrite, objects that already exist are reported as conflicts.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "kibana-url", Required: true, EnvVars: []string{"SPANFLOW_KIBANA_URL"}, Usage: "Kibana's base URL, e.g. https://kibana.example:5601"},
					&cli.StringFlag{Name: "space", Usage: "Kibana space id to import into (default: the default space)"},
					&cli.BoolFlag{Name: "overwrite", Usage: "replace dashboards, visualizations and the data view that already exist"},
					&cli.StringFlag{Name: "file", Usage: "import this saved objects NDJSON (an edited export) instead of the built-in one"},
					&cli.StringFlag{Name: "kibana-api-key-file", Usage: "file holding a Kibana API key (base64 id:key); default: $SPANFLOW_KIBANA_API_KEY"},
					&cli.StringFlag{Name: "kibana-user-file", Usage: "file holding the user name; default: $SPANFLOW_KIBANA_USER"},
					&cli.StringFlag{Name: "kibana-password-file", Usage: "file holding the password; default: $SPANFLOW_KIBANA_PASSWORD"},
					&cli.StringFlag{Name: "kibana-ca-file", Usage: "PEM file of the CA that signed Kibana's HTTPS certificate"},
					&cli.DurationFlag{Name: "kibana-timeout", Value: 60 * time.Second, Usage: "how long to wait for Kibana's answer"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return fmt.Errorf("dashboards install takes no arguments, got %q", c.Args().First())
					}
					cfg := kibana.DefaultConfiguration()
					cfg.URL = c.String("kibana-url")
					cfg.Space = c.String("space")
					cfg.Overwrite = c.Bool("overwrite")
					cfg.APIKeyFile = c.String("kibana-api-key-file")
					cfg.UserFile = c.String("kibana-user-file")
					cfg.PasswordFile = c.String("kibana-password-file")
					cfg.CAFile = c.String("kibana-ca-file")
					cfg.Timeout = c.Duration("kibana-timeout")
					objects := kibana.Objects()
					if f := c.String("file"); f != "" {
						b, err := os.ReadFile(f)
						if err != nil {
							return fmt.Errorf("read saved objects file: %w", err)
						}
						objects = b
					}
					ctx, cancel := signalContext(c.Context)
					defer cancel()
					res, err := kibana.Install(ctx, cfg, objects)
					var op *net.OpError
					if errors.As(err, &op) && op.Op == "dial" {
						// The client's error names the import URL and the
						// dial, not what to do.
						return fmt.Errorf("dashboards install: no Kibana answers at %s (%v): start it, or give its address with --kibana-url", cfg.URL, op)
					}
					if err != nil {
						return err
					}
					space := cfg.Space
					if space == "" {
						space = "default"
					}
					fmt.Fprintf(c.App.Writer, "imported %d saved objects into Kibana space %s\n", res.SuccessCount, space)
					return nil
				},
			},
			{
				Name:      "export",
				Usage:     "write the dashboards' saved objects (spanflow.ndjson) into DIR for editing",
				ArgsUsage: "DIR",
				Description: "Edit the file, or import it into Kibana, change the dashboards there and export them again;\n" +
					"'spanflow dashboards install --file DIR/spanflow.ndjson' imports the edited copy.",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return fmt.Errorf("dashboards export needs one directory argument")
					}
					path, err := kibana.Export(c.Args().First())
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "wrote %s\n", path)
					return nil
				},
			},
		},
	}
}
