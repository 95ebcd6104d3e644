package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/spanflow/spanflow/internal/testutil"
)

// pendingFlags are flags the guides may use before the command has them:
// they are logged, not failed. Every flag is wired now, so it is empty and
// every unknown flag fails.
var pendingFlags = map[string]bool{}

var spanflowCommand = regexp.MustCompile(`(?:^|\s|/bin/)(?:spanflow|go run \./cmd/spanflow)\s+(.*)$`)

// commandLines returns the spanflow command lines of the fenced code blocks
// of a Markdown file, continuation lines joined.
func commandLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	inCode := false
	var cur string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			inCode = !inCode
			continue
		}
		if !inCode {
			continue
		}
		if cur != "" {
			l = cur + " " + strings.TrimSpace(l)
			cur = ""
		}
		if strings.HasSuffix(l, "\\") {
			cur = strings.TrimSuffix(l, "\\")
			continue
		}
		if i := strings.Index(l, " #"); i >= 0 {
			l = l[:i]
		}
		if m := spanflowCommand.FindStringSubmatch(l); m != nil && !strings.HasPrefix(strings.TrimSpace(l), "spanflow demo:") &&
			!strings.HasPrefix(strings.TrimSpace(l), "spanflow exporter:") && !strings.HasPrefix(strings.TrimSpace(l), "spanflow:") {
			out = append(out, m[1])
		}
	}
	return out
}

func flagNames(flags []cli.Flag) map[string]bool {
	names := map[string]bool{"help": true, "h": true}
	for _, f := range flags {
		for _, n := range f.Names() {
			names[n] = true
		}
	}
	return names
}

// The copy-paste commands of the quickstart, the guides and the README use commands and
// flags that exist.
func TestGuidesCommandsExist(t *testing.T) {
	app := newApp()
	global := flagNames(app.Flags)
	docs := filepath.Join(testutil.ModuleRoot(), "docs")
	files, _ := filepath.Glob(filepath.Join(docs, "guide-*.md"))
	files = append(files, filepath.Join(docs, "install.md"), filepath.Join(docs, "collector.md"), filepath.Join(docs, "exporter.md"), filepath.Join(docs, "noc.md"), filepath.Join(docs, "quickstart.md"), filepath.Join(docs, "scale-out.md"), filepath.Join(testutil.ModuleRoot(), "README.md"))
	checked := 0
	for _, file := range files {
		for _, line := range commandLines(t, file) {
			words := strings.Fields(line)
			i := 0
			for i < len(words) && strings.HasPrefix(words[i], "--") { // global flags first
				name, _, hasValue := strings.Cut(strings.TrimLeft(words[i], "-"), "=")
				if !global[name] {
					t.Errorf("%s: %q: unknown global flag --%s", filepath.Base(file), line, name)
				}
				i++
				if !hasValue {
					i++
				}
			}
			cmds, path := app.Commands, []string{}
			var cmd *cli.Command
			for i < len(words) {
				var next *cli.Command
				for _, c := range cmds {
					if c.HasName(words[i]) {
						next = c
					}
				}
				if next == nil {
					break
				}
				cmd, cmds, path = next, next.Subcommands, append(path, words[i])
				i++
			}
			if len(path) == 0 && i < len(words) && strings.ContainsAny(words[i], ":/") {
				continue // a path or host:path (scp), not an invocation
			}
			if cmd == nil || cmd.Action == nil {
				t.Errorf("%s: %q: not a spanflow command", filepath.Base(file), line)
				continue
			}
			names := flagNames(cmd.Flags)
			for _, w := range words[i:] {
				if !strings.HasPrefix(w, "--") {
					continue
				}
				name, _, _ := strings.Cut(strings.TrimPrefix(w, "--"), "=")
				key := strings.Join(path, " ") + " --" + name
				switch {
				case names[name]:
				case pendingFlags[key]:
					t.Logf("%s: %s: not wired yet", filepath.Base(file), key)
				default:
					t.Errorf("%s: %q: spanflow %s has no flag --%s", filepath.Base(file), line, strings.Join(path, " "), name)
				}
			}
			checked++
		}
	}
	if checked < 20 {
		t.Errorf("only %d commands found in the guides: is the parser broken?", checked)
	}
}

// otherTools are the flags of other programs the docs mention (useradd,
// systemctl, docker, tcpreplay, a browser, Kafka's tools, ...), by file.
var otherTools = map[string]bool{
	"deploy-vmware.md --no-create-home": true, "deploy-vmware.md --shell": true, "deploy-vmware.md --system": true, "deploy-vmware.md --now": true,
	"guide-collectors.md --no-create-home": true, "guide-collectors.md --shell": true, "guide-collectors.md --system": true, "guide-collectors.md --now": true,
	"guide-exporters.md --now": true, "scale-out.md --now": true, "scale-out.md --alter": true, "scale-out.md --partitions": true,
	"install.md --now": true, "install.md --build-arg": true, "install.md --rm": true, "install.md --scripts": true, "install.md --check": true, "install.md --ignore-missing": true,
	"exporter.md --pps": true, "noc.md --kiosk": true,
	"performance.md --topspeed": true, "performance.md --preload-pcap": true, "performance.md --version": true,
	// The walk-through of adding a setting names the flag it adds.
	"architecture.md --syslog-facility": true,
}

// A flag after a blank, a quote or a bracket; "--kafka-" (a family of flags)
// ends in a dash and is skipped.
var docFlag = regexp.MustCompile("(?:^|[\\s`(\\[=,'\"])--([a-z][a-z0-9-]*)")

// Every --flag the README and docs/ name anywhere, prose included, is a flag
// of some spanflow command: a renamed or removed flag shows up here.
func TestDocsFlagsExist(t *testing.T) {
	known := map[string]bool{"help": true}
	var walk func([]*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, c := range cmds {
			for n := range flagNames(c.Flags) {
				known[n] = true
			}
			walk(c.Subcommands)
		}
	}
	app := newApp()
	for n := range flagNames(app.Flags) {
		known[n] = true
	}
	walk(app.Commands)
	files, _ := filepath.Glob(filepath.Join(testutil.ModuleRoot(), "docs", "*.md"))
	files = append(files, filepath.Join(testutil.ModuleRoot(), "README.md"))
	seen := 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			for _, m := range docFlag.FindAllStringSubmatch(line, -1) {
				if strings.HasSuffix(m[1], "-") {
					continue
				}
				seen++
				if !known[m[1]] && !otherTools[filepath.Base(file)+" --"+m[1]] {
					t.Errorf("%s:%d: --%s is no flag of any spanflow command", filepath.Base(file), i+1, m[1])
				}
			}
		}
	}
	if seen < 500 {
		t.Errorf("only %d flags found in the docs: is the pattern broken?", seen)
	}
}
