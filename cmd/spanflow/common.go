package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/spanflow/spanflow/internal/reporter"
)

// newReporter builds the logger (stderr) and metrics registry from the global flags.
func newReporter(c *cli.Context) (*reporter.Reporter, error) {
	levelName, _ := globalFlag(c, "log-level")
	level, err := reporter.ParseLevel(levelName)
	if err != nil {
		return nil, err
	}
	format, _ := globalFlag(c, "log-format")
	if format != "text" && format != "json" {
		return nil, fmt.Errorf("unknown log format %q: use text or json", format)
	}
	return reporter.New(reporter.NewLogger(c.App.ErrWriter, level, format == "json")), nil
}

// signalContext is cancelled on SIGINT or SIGTERM.
func signalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

// notifyHUP catches SIGHUP from now on: Go's default would end the process
// at once, losing what it holds in memory (a closed terminal, or a
// logrotate postrotate script sending SIGHUP, as is usual for daemons).
func notifyHUP() chan os.Signal {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup
}

// waitReopening waits until ctx is done; on each SIGHUP from hup it opens
// the file outputs again (after logrotate moved them away) and logs it.
func waitReopening(ctx context.Context, log *slog.Logger, hup chan os.Signal, reopen func() (int, error)) {
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			switch n, err := reopen(); {
			case err != nil:
				log.Error("SIGHUP: cannot reopen a file output; its documents keep going to the file in use", "err", oneLineError(err))
			case n == 0:
				log.Info("SIGHUP: no file output to reopen (other settings need a restart)")
			default:
				log.Info("SIGHUP: file outputs reopened", "outputs", n)
			}
		}
	}
}
