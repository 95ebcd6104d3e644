package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spanflow/spanflow/collector"
	"github.com/spanflow/spanflow/collector/alert"
	"github.com/spanflow/spanflow/collector/pipeline"
	"github.com/spanflow/spanflow/collector/rollup"
	"github.com/spanflow/spanflow/enrich/networks"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/yamlconf"
)

func rulesCommand() *cli.Command {
	return &cli.Command{
		Name:  "rules",
		Usage: "check alert rules files and try them on recorded traffic",
		Description: "Alert rules are thresholds on the collector's one-second rollups (per line, project, VM,\n" +
			"service and exporter) and built-in detectors (new external peer, port scan, half-open TCP\n" +
			"storm, traffic drop). The collector reads them with --rules; see docs/alerting.md.",
		Subcommands: []*cli.Command{rulesCheckCommand(), rulesTestCommand()},
	}
}

var rulesNetworksFlag = &cli.StringFlag{Name: "networks", TakesFile: true,
	Usage: "networks `FILE` (as the collector's --networks): its projects are the known ones, and it enriches replayed flows"}

// ruleArgs reads the rules FILE and the flags given before or after it
// (the flag package stops at the first argument, and `rules test FILE
// --pcap X` is the natural order).
type ruleArgs struct {
	file  string
	c     *cli.Context
	after *flag.FlagSet
	set   map[string]bool
}

func parseRuleArgs(c *cli.Context) (*ruleArgs, error) {
	if c.NArg() < 1 {
		return nil, errors.New("give one rules FILE")
	}
	a := &ruleArgs{file: c.Args().First(), c: c, set: map[string]bool{}}
	a.after = flag.NewFlagSet(c.Command.Name, flag.ContinueOnError)
	a.after.SetOutput(io.Discard)
	for _, f := range c.Command.Flags {
		if err := f.Apply(a.after); err != nil {
			return nil, err
		}
	}
	if err := a.after.Parse(c.Args().Tail()); err != nil {
		return nil, err
	}
	if a.after.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: give one rules FILE", a.after.Arg(0))
	}
	a.after.Visit(func(f *flag.Flag) { a.set[f.Name] = true })
	return a, nil
}

func (a *ruleArgs) String(name string) string {
	if a.set[name] {
		return a.after.Lookup(name).Value.String()
	}
	return a.c.String(name)
}

func (a *ruleArgs) Duration(name string) time.Duration {
	if a.set[name] {
		d, _ := time.ParseDuration(a.after.Lookup(name).Value.String())
		return d
	}
	return a.c.Duration(name)
}

// knownProjects are the projects of a networks file; nil without one.
func knownProjects(path string) (map[string]bool, []networks.Network, error) {
	if path == "" {
		return nil, nil, nil
	}
	nets, err := networks.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	known := map[string]bool{}
	for _, n := range nets {
		if n.Project != "" {
			known[n.Project] = true
		}
	}
	return known, nets, nil
}

// loadRulesChecked reads a rules file and, with --networks, refuses unknown
// projects; every problem is printed with its line.
func loadRulesChecked(c *cli.Context, a *ruleArgs) (*alert.File, error) {
	path := a.file
	f, err := alert.LoadRules(path)
	if err == nil {
		var known map[string]bool
		if known, _, err = knownProjects(a.String("networks")); err != nil {
			return nil, err
		}
		if known != nil {
			err = f.CheckProjects(known)
		}
	}
	if err != nil {
		var ye *yamlconf.Error
		if !errors.As(err, &ye) {
			return nil, fmt.Errorf("%s: %s", path, oneLineError(err))
		}
		problems := yamlconf.Unjoin(err)
		for _, p := range problems {
			fmt.Fprintf(c.App.Writer, "%s: %s\n", path, p)
		}
		return nil, fmt.Errorf("%d problem(s) in %s", len(problems), path)
	}
	return f, nil
}

func rulesCheckCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "validate a rules file and say what is wrong, one line each with its line number",
		ArgsUsage: "FILE",
		Description: "Reports bad YAML, unknown keys, unknown rollup values, selectors that do not apply to the\n" +
			"rule's scope, templates referring to unknown fields, label and annotation names Alertmanager\n" +
			"refuses (letters, digits and _ only) and, with --networks, projects the\n" +
			"networks file does not know (the collector also checks its vCenter inventory at start).\n" +
			"Exits 1 when anything is wrong.\n" +
			"Example: spanflow rules check /etc/spanflow/rules.yaml",
		Flags: []cli.Flag{rulesNetworksFlag},
		Action: func(c *cli.Context) error {
			a, err := parseRuleArgs(c)
			if err != nil {
				return err
			}
			f, err := loadRulesChecked(c, a)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "%s: OK (%d rules)\n", a.file, len(f.Rules))
			return nil
		},
	}
}

func rulesTestCommand() *cli.Command {
	return &cli.Command{
		Name:      "test",
		Usage:     "replay recorded traffic through the rules and print what fires and resolves, and when",
		ArgsUsage: "FILE",
		Description: "Reads NetFlow/IPFIX/sFlow datagrams from a capture (--pcap, through the collector's\n" +
			"decoders and enrichers) or flow documents as the NDJSON output writes them (--ndjson), rolls\n" +
			"them up second by second in event time and judges the rules and detectors as the collector\n" +
			"would. Each line printed is: event time, firing or resolved, rule, key, value. Times are the\n" +
			"flows' own; alerts still firing at the end are listed last. Give the flows in time order\n" +
			"(oldest first): the flows that end before the seconds still open are counted, not rolled up.\n" +
			"Example: spanflow rules test rules.yaml --pcap incident.pcap --networks networks.yaml",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "pcap", TakesFile: true, Usage: "capture `FILE` of flow datagrams (UDP payloads)"},
			&cli.StringFlag{Name: "ndjson", TakesFile: true, Usage: "`FILE` of flow documents, one per line (- for stdin)"},
			rulesNetworksFlag,
			&cli.StringFlag{Name: "interface-names", TakesFile: true, Usage: "YAML `FILE` naming exporters' interfaces (as the collector's)"},
			&cli.DurationFlag{Name: "delay", Value: rollup.DefaultConfiguration().Delay, Usage: "how far behind the newest flow a second is judged (the exporters' active timeout)"},
			&cli.DurationFlag{Name: "rollup-baseline-window", Value: rollup.DefaultConfiguration().BaselineWindow,
				Usage: "time constant of the baseline the drop detector compares with: give the collector's --rollup-baseline-window"},
		},
		Action: runRulesTest,
	}
}

func runRulesTest(c *cli.Context) error {
	a, err := parseRuleArgs(c)
	if err != nil {
		return err
	}
	if (a.String("pcap") == "") == (a.String("ndjson") == "") {
		return errors.New("give one of --pcap CAPTURE and --ndjson FLOWS")
	}
	f, err := loadRulesChecked(c, a)
	if err != nil {
		return err
	}
	r, err := newReporter(c)
	if err != nil {
		return err
	}
	out := c.App.Writer
	firing := map[string]alert.Alert{}
	counts := map[string]int{}
	emit := func(a alert.Alert) {
		at := a.FiredAt
		if !a.Firing() {
			at = a.EndsAt
			delete(firing, a.Fingerprint())
		} else {
			firing[a.Fingerprint()] = a
		}
		counts[a.Status()]++
		fmt.Fprintf(out, "%s %-8s %s %s=%s value=%.4g", at.UTC().Format(time.RFC3339Nano), a.Status(), a.Rule, a.Scope, a.Key, a.Value)
		if a.Firing() {
			fmt.Fprintf(out, " since=%s", a.StartsAt.UTC().Format(time.RFC3339))
		}
		if s := a.Annotations["summary"]; s != "" {
			fmt.Fprintf(out, " %q", s)
		}
		fmt.Fprintln(out)
	}
	ev := alert.NewEvaluator(f, "", "", emit)
	fd := alert.NewFlowDetectors(f.Detectors, "", "", emit)
	rcfg := rollup.DefaultConfiguration()
	rcfg.EventTime, rcfg.Delay = true, a.Duration("delay")
	rcfg.BaselineWindow = a.Duration("rollup-baseline-window")
	eng, err := rollup.New(r.Sub("rollups"), rcfg)
	if err != nil {
		// The engine names the collector's setting; here it is --delay.
		return errors.New(strings.ReplaceAll(err.Error(), "rollup-delay:", "--delay:"))
	}
	eng.Subscribe(ev)
	sinks := []flow.Sink{eng}
	if fd != nil {
		eng.Subscribe(fd)
		sinks = append(sinks, fd)
	}
	if err := eng.Start(); err != nil {
		return err
	}
	var n int
	if path := a.String("ndjson"); path != "" {
		var in io.Reader = os.Stdin
		if path != "-" {
			fh, err := os.Open(path)
			if err != nil {
				return err
			}
			defer fh.Close()
			in = fh
		}
		// The enrichers of --networks apply to documents too.
		var enr []flow.Enricher
		if a.String("networks") != "" {
			ncfg := networks.DefaultConfiguration()
			ncfg.File = a.String("networks")
			nc, err := networks.New(r.Sub("networks"), ncfg)
			if err != nil {
				return err
			}
			enr = append(enr, nc)
		}
		n, err = alert.ReadFlows(in, 256, func(recs []flow.Record) error {
			for i := range recs {
				for _, e := range enr {
					e.Enrich(&recs[i])
				}
			}
			for _, s := range sinks {
				if err := s.Write(recs); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	} else {
		cfg := collector.DefaultConfiguration()
		cfg.Input.Pcap, cfg.MetricsListen = a.String("pcap"), ""
		cfg.Rollups.Enabled = false // this command runs its own engine, in event time
		cfg.Enrichment.Networks, cfg.Enrichment.InterfaceNames = a.String("networks"), a.String("interface-names")
		var deps collector.Dependencies
		deps.Stdout = io.Discard
		counter := &countSink{}
		deps.Outputs = append(deps.Outputs, pipeline.Output{Name: "count", Sink: counter})
		for i, s := range sinks {
			deps.Outputs = append(deps.Outputs, pipeline.Output{Name: fmt.Sprintf("rules-%d", i), Sink: s})
		}
		col, err := collector.New(r, cfg, deps)
		if err != nil {
			return errors.New(oneLineError(err))
		}
		if err := col.Start(); err != nil {
			return err
		}
		_, rerr := col.Replay()
		if err := col.Stop(); err != nil {
			return err
		}
		if rerr != nil {
			return rerr
		}
		n = int(counter.n.Load())
	}
	if err := eng.Stop(); err != nil {
		return err
	}
	for _, a := range firing {
		fmt.Fprintf(out, "still firing at the end: %s %s=%s since %s\n", a.Rule, a.Scope, a.Key, a.StartsAt.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(out, "%d flows, %d alerts fired, %d resolved\n", n, counts["firing"], counts["resolved"])
	if late := eng.Late(); late > 0 {
		// Else a file in reverse order (as Kibana and Elasticsearch
		// export, newest first) fired nothing and said nothing.
		fmt.Fprintf(out, "%d flows ended before the seconds still open and were not rolled up: give the flows in time order, and a --delay as long as the exporters' active timeout\n", late)
	}
	return nil
}

// countSink counts the flows a replay wrote.
type countSink struct{ n atomic.Int64 }

func (s *countSink) Write(recs []flow.Record) error {
	s.n.Add(int64(len(recs)))
	return nil
}
