package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	app := newApp()
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, &out
	app.ExitErrHandler = nil
	err := app.Run(append([]string{"spanflow"}, args...))
	return out.String(), err
}

// TestEveryCommandHasHelp walks the command tree: every command and
// subcommand must describe itself and answer --help.
func TestEveryCommandHasHelp(t *testing.T) {
	out, err := run(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	app := newApp()
	var walk func(path []string, cmds []*cli.Command)
	walk = func(path []string, cmds []*cli.Command) {
		for _, c := range cmds {
			p := append(append([]string{}, path...), c.Name)
			if c.Usage == "" {
				t.Errorf("%s has no usage text", strings.Join(p, " "))
			}
			help, err := run(t, append(p, "--help")...)
			if err != nil || !strings.Contains(help, c.Name) {
				t.Errorf("%s --help failed: %v\n%s", strings.Join(p, " "), err, help)
			}
			walk(p, c.Subcommands)
		}
	}
	walk(nil, app.Commands)
	for _, c := range app.Commands {
		if !c.Hidden && !strings.Contains(out, c.Name) { // hidden: package-files, for the release build
			t.Errorf("spanflow --help does not list %s", c.Name)
		}
	}
}

func TestVersion(t *testing.T) {
	out, err := run(t, "version")
	if err != nil || !strings.HasPrefix(out, "spanflow ") || !strings.Contains(out, "go1.") {
		t.Errorf("version printed %q, err %v", out, err)
	}
}
