package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// version, commit and date are set at build time (the Makefile's LDFLAGS):
// -ldflags "-X main.version=v1.2.3 -X main.commit=SHA -X main.date=2026-12-04T19:00:00Z".
// Without commit, the Go toolchain's VCS stamp is used when there is one.
var (
	version = "dev"
	commit  = ""
	date    = ""
)

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print spanflow's version, commit and Go version",
		Action: func(c *cli.Context) error {
			commit, dirty := commit, ""
			if info, ok := debug.ReadBuildInfo(); ok && commit == "" {
				for _, s := range info.Settings {
					switch s.Key {
					case "vcs.revision":
						commit = s.Value
					case "vcs.modified":
						if s.Value == "true" {
							dirty = "+dirty"
						}
					}
				}
			}
			if commit == "" {
				commit = "unknown"
			}
			built := ""
			if date != "" {
				built = ", built " + date
			}
			fmt.Fprintf(c.App.Writer, "spanflow %s (commit %s%s%s, %s, %s/%s)\n", version, commit, dirty, built,
				runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
