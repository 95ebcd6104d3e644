package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run the whole pipeline on this machine: simulated vCenter, traffic, exporter, collector",
		Description: "Not built yet. When it is, the demo starts a simulated vCenter with VMs in three projects,\n" +
			"replays traffic between them through the exporter (IPFIX over loopback) into the collector,\n" +
			"which enriches every flow with VM, host and project names and writes NDJSON, then prints\n" +
			"the top VM conversations, the east-west/north-south split and TCP health per project.",
		Action: func(c *cli.Context) error {
			fmt.Fprintln(c.App.Writer, "spanflow demo: not built yet.")
			fmt.Fprintln(c.App.Writer, "It will start a simulated vCenter (two clusters, a dozen hosts, VMs in three projects),")
			fmt.Fprintln(c.App.Writer, "replay traffic between those VMs through the exporter (IPFIX over loopback) into the")
			fmt.Fprintln(c.App.Writer, "collector, enrich every flow with VM, host and project names, write NDJSON, and print")
			fmt.Fprintln(c.App.Writer, "the top VM conversations, east-west vs north-south share and TCP health per project.")
			return nil
		},
	}
}
