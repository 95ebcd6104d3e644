package main

import (
	"bytes"
	"os"
	"os/exec"
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
		if !strings.Contains(out, c.Name) {
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

// TestMain runs the test binary as the spanflow command itself when
// SPANFLOW_TEST_MAIN is set (its arguments, one per line), so that tests can
// start real spanflow processes: signals, exit codes, two processes on one port.
func TestMain(m *testing.M) {
	if args := os.Getenv("SPANFLOW_TEST_MAIN"); args != "" {
		os.Args = append([]string{"spanflow"}, strings.Split(args, "\n")...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// spanflowProcess is `spanflow args...` as a child process (see TestMain).
func spanflowProcess(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "SPANFLOW_TEST_MAIN="+strings.Join(args, "\n"))
	return cmd
}
