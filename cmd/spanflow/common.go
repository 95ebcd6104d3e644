package main

import (
	"context"
	"fmt"
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
