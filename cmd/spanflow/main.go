// Command spanflow sets up and runs every part of spanflow: the exporter that
// turns mirrored vSwitch traffic into IPFIX, the collector that decodes,
// enriches and indexes flows, and the tools around them.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

// commands lists the top-level commands; each lives in its own file.
var commands = []func() *cli.Command{
	versionCommand,
	demoCommand,
	collectorCommand,
	exporterCommand,
	esCommand,
	dashboardsCommand,
	reportCommand,
	vsphereCommand,
	rulesCommand,
}

func newApp() *cli.App {
	app := &cli.App{
		Name:  "spanflow",
		Usage: "flow visibility for virtualized data centers: mirrored traffic to IPFIX, flows to Elasticsearch with vCenter context",
		Description: "The exporter meters mirrored traffic on each hypervisor and exports IPFIX; the collector decodes\n" +
			"NetFlow v5/v9, IPFIX and sFlow, enriches flows with vCenter inventory and indexes them.\n" +
			"Run 'spanflow COMMAND --help' for the options of each command.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: []string{"SPANFLOW_LOG_LEVEL"}},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json", EnvVars: []string{"SPANFLOW_LOG_FORMAT"}},
		},
		HideHelpCommand:      true,
		EnableBashCompletion: true,
		ExitErrHandler: func(c *cli.Context, err error) {
			if err == nil {
				return
			}
			// One line saying what is wrong; the commands word their errors to say what to do.
			fmt.Fprintf(c.App.ErrWriter, "spanflow: %v\n", err)
			code := 1
			if ec, ok := err.(cli.ExitCoder); ok {
				code = ec.ExitCode()
			}
			cli.OsExiter(code)
		},
	}
	for _, c := range commands {
		app.Commands = append(app.Commands, c())
	}
	return app
}

func main() {
	app := newApp()
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "spanflow: %v\n", err)
		os.Exit(1)
	}
}
