package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print spanflow's version, commit and Go version",
		Action: func(c *cli.Context) error {
			commit, dirty := "unknown", ""
			if info, ok := debug.ReadBuildInfo(); ok {
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
			fmt.Fprintf(c.App.Writer, "spanflow %s (commit %s%s, %s, %s/%s)\n", version, commit, dirty,
				runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
