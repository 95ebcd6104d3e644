package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"
)

// packageFilesCommand writes the files the release packages ship beside the
// binary, generated from the CLI itself so that they say what this binary
// does: the man page, shell completion and an exporter configuration. The
// systemd units come from `exporter install` and `collector install`
// (scripts/release). Hidden: it is for the release build, not for users.
func packageFilesCommand() *cli.Command {
	return &cli.Command{
		Name:   "package-files",
		Hidden: true,
		Usage:  "write the man page, shell completion and the exporter configuration example into DIR (release build)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Required: true, Usage: "write into `DIR` (created)"},
		},
		Action: func(c *cli.Context) error {
			dir := c.String("dir")
			man, err := c.App.ToManWithSection(1)
			if err != nil {
				return fmt.Errorf("man page: %w", err)
			}
			var gz bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
			zw.Write([]byte(man))
			if err := zw.Close(); err != nil {
				return fmt.Errorf("man page: %w", err)
			}
			fish, err := c.App.ToFishCompletion()
			if err != nil {
				return fmt.Errorf("fish completion: %w", err)
			}
			exporterYAML, err := exporterInitYAML()
			if err != nil {
				return fmt.Errorf("exporter configuration: %w", err)
			}
			files := map[string][]byte{
				"spanflow.1.gz":            gz.Bytes(),
				"completion/spanflow.bash": []byte(bashCompletion),
				"completion/_spanflow":     []byte(zshCompletion),
				"completion/spanflow.fish": []byte(fish),
				"exporter.yaml":            []byte(exporterYAML),
			}
			for name, data := range files {
				path := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					return err
				}
				if err := os.WriteFile(path, data, 0o644); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// bashCompletion asks spanflow itself (urfave/cli's
// --generate-bash-completion) for the commands and flags at the cursor.
const bashCompletion = `# bash completion for spanflow (installed by the spanflow package)
_spanflow() {
  local cur words
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  words=("${COMP_WORDS[@]:0:COMP_CWORD}")
  if [[ "$cur" == -* ]]; then
    words+=("$cur")
  fi
  local opts
  opts=$("${words[@]}" --generate-bash-completion 2>/dev/null)
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  return 0
}
complete -o bashdefault -o default -F _spanflow spanflow
`

// zshCompletion does the same for zsh.
const zshCompletion = `#compdef spanflow
# zsh completion for spanflow (installed by the spanflow package)
_spanflow() {
  local -a opts
  local cur=${words[CURRENT]}
  local -a line=(${words[1,CURRENT-1]})
  if [[ "$cur" == -* ]]; then
    line+=("$cur")
  fi
  opts=("${(@f)$(${line[@]} --generate-bash-completion 2>/dev/null)}")
  if [[ -n "${opts[1]}" ]]; then
    _describe 'spanflow' opts
  else
    _files
  fi
}
_spanflow "$@"
`
