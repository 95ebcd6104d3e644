// Command spanflow sets up and runs every part of spanflow: the exporter that
// turns mirrored vSwitch traffic into IPFIX, the collector that decodes,
// enriches and indexes flows, and the tools around them.
package main

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	_ "time/tzdata" // --time-zone on hosts without /usr/share/zoneinfo

	"github.com/urfave/cli/v2"

	"github.com/spanflow/spanflow/internal/yamlconf"
)

// commands lists the top-level commands; each lives in its own file.
var commands = []func() *cli.Command{
	versionCommand,
	demoCommand,
	collectorCommand,
	indexerCommand,
	exporterCommand,
	esCommand,
	dashboardsCommand,
	reportCommand,
	vsphereCommand,
	rulesCommand,
	pcapCommand,
	packageFilesCommand,
}

func newApp() *cli.App {
	app := &cli.App{
		Name:  "spanflow",
		Usage: "flow visibility for virtualized data centers: mirrored traffic to IPFIX, flows to Elasticsearch with vCenter context",
		Description: "The exporter meters mirrored traffic on each hypervisor and exports IPFIX; the collector decodes\n" +
			"NetFlow v5/v9, IPFIX and sFlow, enriches flows with vCenter inventory and indexes them.\n" +
			"Run 'spanflow COMMAND --help' for the options of each command.",
		Flags:                logFlags(""),
		OnUsageError:         usageError("spanflow"),
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
	var walk func(path string, cmds []*cli.Command)
	walk = func(path string, cmds []*cli.Command) {
		for _, c := range cmds {
			name := path + " " + c.Name
			c.OnUsageError = usageError(name)
			if c.Action != nil && len(c.Subcommands) == 0 {
				// Global flags after the command too: spanflow collector run --log-level debug.
				c.Flags = append(c.Flags, logFlags("Logs")...)
				requireOneLine(name, c)
			}
			if len(c.Subcommands) > 0 && c.Action == nil {
				c.Action = unknownCommand(name)
			}
			walk(name, c.Subcommands)
		}
	}
	walk("spanflow", app.Commands)
	app.Action = unknownCommand("spanflow")
	return app
}

// unknownCommand is the action of a command that only groups others: its
// help without an argument, else one line naming the unknown command (cli
// would say "No help topic" and exit 3).
func unknownCommand(name string) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.NArg() == 0 {
			if c.Command == nil || c.Command.Name == "" || c.Command.Name == c.App.Name {
				return cli.ShowAppHelp(c)
			}
			return cli.ShowSubcommandHelp(c)
		}
		return fmt.Errorf("unknown command %q for %q: see %s --help", c.Args().First(), name, name)
	}
}

// requireOneLine checks a command's required flags itself, so a missing
// one is a single line naming the flag, what it takes and where the help
// is, not cli's whole help page followed by the error.
func requireOneLine(name string, c *cli.Command) {
	var req []*cli.StringFlag
	for _, f := range c.Flags {
		if sf, ok := f.(*cli.StringFlag); ok && sf.Required {
			sf.Required = false
			sf.Usage += " (required)"
			req = append(req, sf)
		}
	}
	if len(req) == 0 {
		return
	}
	action := c.Action
	c.Action = func(ctx *cli.Context) error {
		for _, f := range req {
			if ctx.IsSet(f.Name) {
				continue
			}
			flag := "--" + f.Name
			if len(f.EnvVars) > 0 {
				flag += " (or " + f.EnvVars[0] + ")"
			}
			what := strings.TrimSuffix(strings.ReplaceAll(f.Usage, "`", ""), " (required)")
			return fmt.Errorf("%s is required: %s; see '%s --help'", flag, what, name)
		}
		return action(ctx)
	}
}

// logFlags are the global flags, given before the command or after it.
func logFlags(category string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "log-level", Value: "info", Category: category, Usage: "debug, info, warn or error", EnvVars: []string{"SPANFLOW_LOG_LEVEL"}},
		&cli.StringFlag{Name: "log-format", Value: "text", Category: category, Usage: "text or json", EnvVars: []string{"SPANFLOW_LOG_FORMAT"}},
	}
}

// globalFlag is the value of a global flag: from the command line after
// the command, else before it, else its environment variable or default.
func globalFlag(c *cli.Context, name string) (string, bool) {
	for _, ctx := range c.Lineage() {
		if slices.Contains(ctx.LocalFlagNames(), name) {
			return ctx.String(name), true
		}
	}
	return c.String(name), false
}

var (
	invalidValue = regexp.MustCompile(`^invalid value "(.*)" for flag -([a-z0-9-]+): (.*)$`)
	undefined    = regexp.MustCompile(`^flag provided but not defined: -+(.*)$`)
	needsValue   = regexp.MustCompile(`^flag needs an argument: -+(.*)$`)
	bareNumber   = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)
)

// usageError words a flag the command line got wrong in one line (instead
// of the error followed by the whole help): a duration without its unit
// above all, as `exporter check` does for the files.
func usageError(command string) cli.OnUsageErrorFunc {
	return func(c *cli.Context, err error, _ bool) error {
		see := "see " + command + " --help"
		msg := err.Error()
		if m := invalidValue.FindStringSubmatch(msg); m != nil {
			value, name := m[1], m[2]
			var duration bool
			if c.Command != nil {
				for _, f := range c.Command.Flags {
					if _, ok := f.(*cli.DurationFlag); ok && slices.Contains(f.Names(), name) {
						duration = true
					}
				}
			}
			switch {
			case duration && bareNumber.MatchString(value):
				return fmt.Errorf("--%s %s: missing unit in duration: write %ss, %sm or %sh", name, value, value, value, value)
			case duration:
				return fmt.Errorf("--%s %q: not a duration: write it as 30s, 5m or 1h30m", name, value)
			}
			return fmt.Errorf("--%s %q: not a valid value (%s)", name, value, see)
		}
		if m := undefined.FindStringSubmatch(msg); m != nil {
			if c.Command != nil {
				var names []string
				for _, f := range c.Command.Flags {
					names = append(names, f.Names()...)
				}
				if near := yamlconf.Nearest(m[1], names); near != "" {
					return fmt.Errorf("unknown flag --%s: did you mean --%s? (%s)", m[1], near, see)
				}
			}
			return fmt.Errorf("unknown flag --%s (%s)", m[1], see)
		}
		if m := needsValue.FindStringSubmatch(msg); m != nil {
			return fmt.Errorf("--%s needs a value (%s)", m[1], see)
		}
		return fmt.Errorf("%s (%s)", msg, see)
	}
}

func main() {
	app := newApp()
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "spanflow: %v\n", err)
		os.Exit(1)
	}
}
