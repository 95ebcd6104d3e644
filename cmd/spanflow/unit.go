package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
)

// installCommand is `exporter install` or `collector install`: the same
// flags and steps; spec says what differs, from the configuration file.
func installCommand(what, usage, description, configUsage string, spec func(config string) (unitSpec, error)) *cli.Command {
	return &cli.Command{
		Name:        "install",
		Usage:       usage,
		Description: description,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "path", Required: true, Usage: "write the unit to `FILE`"},
			&cli.StringFlag{Name: "config", Value: "/etc/spanflow/" + what + ".yaml", Usage: configUsage},
			&cli.StringFlag{Name: "user", Value: "spanflow-" + what, Usage: "system `USER` (and group) the service runs as"},
			&cli.StringFlag{Name: "binary", Value: "/usr/local/bin/spanflow", Usage: "absolute `PATH` of the spanflow binary"},
			// The release build writes the packages' units on a build machine whose
			// /etc/spanflow is not the target's: it reads the example shipped instead.
			&cli.StringFlag{Name: "read-config", Hidden: true, Usage: "read this `FILE` for what the unit needs, instead of --config"},
		},
		Action: func(c *cli.Context) error {
			read := c.String("config")
			if r := c.String("read-config"); r != "" {
				read = r
			}
			s, err := spec(read)
			if err != nil {
				return err
			}
			s.what, s.binary, s.config, s.user = what, c.String("binary"), c.String("config"), c.String("user")
			unit, err := writeUnit(s)
			if err != nil {
				return err
			}
			path := c.String("path")
			if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
				return fmt.Errorf("write unit: %w", err)
			}
			fmt.Fprintf(c.App.Writer, "wrote %s; then: systemctl daemon-reload && systemctl enable --now %s\n", path, filepath.Base(path))
			return nil
		},
	}
}

// unitSpec is what differs between the systemd units that `exporter
// install` and `collector install` write; the hardening is the same.
type unitSpec struct {
	what, summary        string // "exporter", "mirrored traffic to IPFIX"
	binary, config, user string
	stop                 string   // lines about stopping: comment and TimeoutStopSec
	capabilities         []string // the only ones the service gets
	capsWhy              string   // a comment line saying why, when there are some
	families             string   // RestrictAddressFamilies
	extra                string   // more [Service] lines: writable directories, environment file
}

func writeUnit(s unitSpec) (string, error) {
	for _, p := range []string{s.binary, s.config} {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, " \t\n\"'\\%$") {
			return "", fmt.Errorf("%q: must be an absolute path without spaces, quotes or %% or $", p)
		}
	}
	if s.user == "" || s.user == "root" || strings.ContainsAny(s.user, " \t\n/:") {
		return "", fmt.Errorf("user %q: want a dedicated system user, not root", s.user)
	}
	caps := "# No capability at all.\nCapabilityBoundingSet=\n"
	if len(s.capabilities) > 0 {
		list := strings.Join(s.capabilities, " ")
		caps = s.capsWhy + "\nCapabilityBoundingSet=" + list + "\nAmbientCapabilities=" + list + "\n"
	}
	extra := ""
	if s.extra != "" {
		extra = s.extra + "\n"
	}
	return fmt.Sprintf(`# spanflow %[4]s: %[5]s (written by spanflow %[4]s install).
# Create the user first: useradd --system --no-create-home --shell /usr/sbin/nologin %[3]s
[Unit]
Description=spanflow %[4]s (%[5]s)
Documentation=https://github.com/spanflow/spanflow/blob/main/docs/%[4]s.md
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStartPre=%[1]s %[4]s check --config %[2]s
ExecStart=%[1]s %[4]s run --config %[2]s
KillSignal=SIGTERM
%[6]s
Restart=on-failure
RestartSec=5
User=%[3]s
Group=%[3]s
%[7]s%[8]sNoNewPrivileges=yes
RestrictAddressFamilies=%[9]s
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
`, s.binary, s.config, s.user, s.what, s.summary, s.stop, caps, extra, s.families), nil
}

// stateDir is the directory the units get from systemd (StateDirectory=).
const stateDir = "/var/lib/spanflow"

// ringWritePath is the directory the exporter's unit must be able to write
// for its packet ring beside its state directory: "" when there is no ring
// or it lives in the state directory.
func ringWritePath(ring string) (string, error) {
	if ring == "" {
		return "", nil
	}
	if !filepath.IsAbs(ring) || strings.ContainsAny(ring, " \t\n\"'\\%$") {
		return "", fmt.Errorf("packet-ring %q: the service needs an absolute path without spaces, quotes, %% or $, such as %s/ring", ring, stateDir)
	}
	ring = filepath.Clean(ring)
	if ring == stateDir || strings.HasPrefix(ring, stateDir+"/") {
		return "", nil
	}
	return ring, nil
}
