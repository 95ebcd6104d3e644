package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spanflow/spanflow/dashboards/report"
	"github.com/spanflow/spanflow/internal/esconn"
)

// parseWhen reads --from/--to: RFC 3339, a date (midnight in loc), a date
// and time without offset (in loc), "now", or now minus a duration
// ("now-24h").
func parseWhen(s string, now time.Time, loc *time.Location) (time.Time, error) {
	switch {
	case s == "now":
		return now, nil
	case strings.HasPrefix(s, "now-"):
		d, err := time.ParseDuration(strings.TrimPrefix(s, "now-"))
		if err != nil || d < 0 {
			return time.Time{}, fmt.Errorf("time %q: want now-<duration> such as now-24h", s)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-01-10T00:00:00Z), a date (2026-01-10), now or now-24h", s)
}

func reportFlags() []cli.Flag {
	const sel, out, mail = "Report", "Output", "Mail"
	flags := []cli.Flag{
		&cli.StringFlag{Name: "index", Category: sel, Value: report.DefaultIndex, Usage: "index pattern holding the flows"},
		&cli.StringFlag{Name: "from", Category: sel, Value: "now-24h", Usage: "start of the range: RFC 3339, a date or date and time (2026-01-10T08:00) in --time-zone, now or now-<duration>"},
		&cli.StringFlag{Name: "to", Category: sel, Value: "now", Usage: "end of the range (excluded), same forms as --from"},
		&cli.IntFlag{Name: "top", Category: sel, Value: 10, Usage: "line-load: how many of the busiest lines; top-ip: how many addresses per line and role (0: all)"},
		&cli.IntFlag{Name: "lines", Category: sel, Value: 10, Usage: "top-ip only: how many of the busiest lines to cover (0: all); line-load refuses it (it lists --top lines)"},
		&cli.DurationFlag{Name: "interval", Category: sel, Value: 5 * time.Minute, Usage: "bucket of the utilisation series and of the peak rate"},
		&cli.StringFlag{Name: "time-zone", Category: sel, Value: "UTC", Usage: "IANA time zone (Europe/Zurich, or Local for this host's) of dates without offset in --from/--to, of the report's times, of the days of an --interval of whole days (24h, 48h: local midnight to midnight, 23 or 25 hours across a clock change), and whose midnights --every 24h reports end on"},
		&cli.StringFlag{Name: "format", Category: out, Usage: "csv, md or html (default: from the --output extension (.csv, .md, .html; another one is refused), else csv)"},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Category: out, Usage: "file to write (default: standard output)"},
		&cli.DurationFlag{Name: "every", Category: out, Usage: "keep running: produce a report covering the last period every period (e.g. 24h: whole days run from --time-zone's midnight to midnight)"},
		&cli.DurationFlag{Name: "delay", Category: out, Value: 2 * time.Minute, Usage: "with --every: make each report this long after the end of its range, so that the flows of its last minutes are indexed (exporter timeouts, bulk requests, index refresh)"},
		&cli.StringFlag{Name: "dir", Category: out, Usage: "with --every: directory receiving <report>-<end>.<format> files"},
		&cli.StringFlag{Name: "smtp", Category: mail, Usage: "with --every: mail the reports through this SMTP server (host:port) instead of writing files"},
		&cli.StringFlag{Name: "mail-from", Category: mail, Usage: "sender address of mailed reports"},
		&cli.StringSliceFlag{Name: "mail-to", Category: mail, Usage: "recipient of mailed reports (repeat for several)"},
		&cli.StringFlag{Name: "smtp-user-file", Category: mail, Usage: "file holding the SMTP user; default: $SPANFLOW_SMTP_USER (none: no authentication)"},
		&cli.StringFlag{Name: "smtp-password-file", Category: mail, Usage: "file holding the SMTP password; default: $SPANFLOW_SMTP_PASSWORD"},
	}
	return append(flags, esConnFlags()...)
}

func reportAction(kind string) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.NArg() > 0 {
			return fmt.Errorf("report %s takes no arguments, got %q", kind, c.Args().First())
		}
		if kind == "line-load" && c.IsSet("lines") {
			return errors.New("--lines is top-ip's: line-load lists the busiest lines, as many as --top")
		}
		format := c.String("format")
		if format == "" {
			switch ext := strings.TrimPrefix(filepath.Ext(c.String("output")), "."); ext {
			case "csv", "md", "html":
				format = ext
			case "markdown":
				format = "md"
			case "htm":
				format = "html"
			case "":
				format = "csv"
			default:
				// A name such as top.xlsx must not receive CSV.
				return fmt.Errorf("report output %s: .%s is not a report format: name it .csv, .md or .html, or give --format csv, md or html",
					c.String("output"), ext)
			}
		}
		if !slices.Contains(report.Formats, format) {
			return fmt.Errorf("report format %q: use csv, md or html", format)
		}
		loc, err := time.LoadLocation(c.String("time-zone"))
		if err != nil || c.String("time-zone") == "" {
			return fmt.Errorf("--time-zone %q: not a time zone; give an IANA name such as Europe/Zurich, UTC or Local", c.String("time-zone"))
		}
		q := report.Query{Index: c.String("index"), Top: c.Int("top"), Lines: c.Int("lines"), Interval: c.Duration("interval"), Location: loc}
		client, err := esconn.New(esConnConfig(c, esconn.DefaultConfiguration()))
		if err != nil {
			return err
		}
		ctx, cancel := signalContext(c.Context)
		defer cancel()

		if every := c.Duration("every"); every > 0 {
			if c.IsSet("from") || c.IsSet("to") || c.IsSet("output") {
				return fmt.Errorf("--every covers the last period at each run: do not give --from, --to or --output")
			}
			if c.Duration("delay") < 0 {
				return fmt.Errorf("--delay %s must not be negative", c.Duration("delay"))
			}
			s := report.Schedule{Kind: kind, Format: format, Query: q, Every: every, Delay: c.Duration("delay"), Dir: c.String("dir"), Location: loc}
			if server := c.String("smtp"); server != "" {
				s.Mail = &report.Mail{Server: server, From: c.String("mail-from"), To: c.StringSlice("mail-to"),
					UserFile: c.String("smtp-user-file"), PasswordFile: c.String("smtp-password-file")}
			} else if s.Dir == "" {
				return fmt.Errorf("--every needs --dir (or --smtp to mail the reports)")
			}
			if err := q.CheckSettings(); err != nil {
				return err // now, not at every run; and before dividing by the interval
			}
			if every%q.Interval != 0 {
				return fmt.Errorf("--every %s must be a multiple of --interval %s", every, q.Interval)
			}
			rep, err := newReporter(c)
			if err != nil {
				return err
			}
			s.Logger = rep.Log
			return s.Run(ctx, client)
		}
		if c.IsSet("dir") || c.IsSet("smtp") || c.IsSet("delay") {
			return fmt.Errorf("--dir, --smtp and --delay go with --every; for one report use --output")
		}
		now := time.Now().UTC()
		if q.From, err = parseWhen(c.String("from"), now, loc); err != nil {
			return err
		}
		if q.To, err = parseWhen(c.String("to"), now, loc); err != nil {
			return err
		}
		// A report over a long range runs aggregations for a while: say so on
		// a terminal.
		status := startStatus(c.App.ErrWriter, fmt.Sprintf("building the %s report from %s to %s", kind,
			q.From.Format(time.RFC3339), q.To.Format(time.RFC3339)), nil)
		r, err := report.Build(ctx, client, kind, q)
		status.Stop()
		if err != nil {
			return esNoAnswer(c, "report "+kind, err)
		}
		if why := r.EmptyReason(); why != "" {
			fmt.Fprintf(c.App.ErrWriter, "report %s has no line: %s\n", kind, why)
		}
		body, err := report.Render(r, format)
		if err != nil {
			return err
		}
		if path := c.String("output"); path != "" {
			if err := os.WriteFile(path, body, 0o644); err != nil {
				return fmt.Errorf("write report: %w", err)
			}
			return nil
		}
		_, err = c.App.Writer.Write(body)
		return err
	}
}

func reportCommand() *cli.Command {
	desc := "A line is one exporter interface: observer.ip with an ingress or egress interface id.\n" +
		"The report is written once (--output or standard output) or, with --every, repeatedly into --dir\n" +
		"or by mail (--smtp). Elasticsearch credentials: SPANFLOW_ES_API_KEY, or SPANFLOW_ES_USER and\n" +
		"SPANFLOW_ES_PASSWORD, or the --es-*-file flags."
	return &cli.Command{
		Name:  "report",
		Usage: "line-load and Top-IP reports from the flows in Elasticsearch (CSV, Markdown, HTML)",
		Subcommands: []*cli.Command{
			{
				Name:        "line-load",
				Usage:       "per line: bytes, packets, flows in and out, average and peak bit rate, busiest lines first",
				Description: desc,
				Flags:       reportFlags(),
				Action:      reportAction("line-load"),
			},
			{
				Name:        "top-ip",
				Usage:       "per line: the source and destination addresses with the most bytes through it",
				Description: desc,
				Flags:       reportFlags(),
				Action:      reportAction("top-ip"),
			},
		},
	}
}
