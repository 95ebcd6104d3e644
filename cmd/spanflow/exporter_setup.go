package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"github.com/spanflow/spanflow/exporter"
	"github.com/spanflow/spanflow/exporter/capture"
	"github.com/spanflow/spanflow/exporter/transport"
	"github.com/spanflow/spanflow/internal/yamlconf"
)

func exporterInitCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "write a commented YAML configuration with every setting at its default",
		Description: "Writes the configuration file of `exporter run --config`: every setting, its meaning\n" +
			"and its default. Fill in interface and collector, then check it with `exporter check`.\n" +
			"Example: spanflow exporter init --output /etc/spanflow/exporter.yaml",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write to `FILE` instead of standard output (an existing file is kept unless --force)"},
			&cli.BoolFlag{Name: "force", Usage: "overwrite the --output file if it exists"},
		},
		Action: func(c *cli.Context) error {
			text, err := exporterInitYAML()
			if err != nil {
				return err
			}
			path := c.String("output")
			if path == "" {
				_, err := fmt.Fprint(c.App.Writer, text)
				return err
			}
			flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if c.Bool("force") {
				flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			}
			f, err := os.OpenFile(path, flags, 0o644)
			if err != nil {
				// O_EXCL says "file exists" for a directory too: say which,
				// and what to do.
				if fi, serr := os.Stat(path); serr == nil && fi.IsDir() {
					return fmt.Errorf("--output %s is a directory: give the FILE to write, such as %s", path, filepath.Join(path, "exporter.yaml"))
				}
				if errors.Is(err, fs.ErrExist) {
					return fmt.Errorf("--output %s exists and is kept: give --force to overwrite it", path)
				}
				return fmt.Errorf("write configuration: %w", err)
			}
			if _, err := f.WriteString(text); err != nil {
				f.Close()
				return fmt.Errorf("write configuration: %w", err)
			}
			return f.Close()
		},
	}
}

// exporterInitYAML is the default configuration with each key commented by
// its flag's help text: the file and `exporter run --help` say the same.
func exporterInitYAML() (string, error) {
	var doc yaml.Node
	if err := doc.Encode(exporter.DefaultConfiguration()); err != nil {
		return "", err
	}
	usage := map[string]string{}
	for _, f := range exporterRunFlags() {
		if u, ok := f.(cli.DocGenerationFlag); ok {
			usage[f.Names()[0]] = strings.ReplaceAll(u.GetUsage(), "`", "")
		}
	}
	doc.HeadComment = "spanflow exporter configuration (spanflow exporter run --config FILE).\n" +
		"Every setting is shown at its default; flags given to `exporter run` override this file.\n" +
		"Durations are Go durations: 500ms, 30s, 1m30s. Check the file with: spanflow exporter check --config FILE"
	for i := 0; i+1 < len(doc.Content); i += 2 {
		k := doc.Content[i]
		switch k.Value {
		case "pcap":
			k.HeadComment = "Read a capture file instead of a live interface (testing); leave empty in production."
		case "distribute":
			k.HeadComment = "Packets to hand to packet tools (IDS, APM, flow tools): a list of rules, reloaded on SIGHUP\n" +
				"(docs/distribution.md). Each rule: to (iface:NAME, vxlan://HOST?vni=N, gre://HOST,\n" +
				"erspan2://HOST?session=N, erspan3://HOST?session=N), and optionally name, filter (tcpdump),\n" +
				"nets, snap-length, dedup, sample, strip-tunnel, queue-size, rate. For example:\n" +
				"distribute:\n" +
				"  - name: ids\n" +
				"    to: vxlan://10.0.9.20?vni=100\n" +
				"    filter: not port 22\n" +
				"    dedup: 10ms\n" +
				"    strip-tunnel: true"
		default:
			k.HeadComment = usage[k.Value]
		}
		if k.Value == "interface" || k.Value == "collector" {
			k.HeadComment += " (required)"
		}
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return "", err
	}
	// A blank line before each setting's comment.
	var b strings.Builder
	prev := "#"
	for _, l := range strings.SplitAfter(string(out), "\n") {
		if strings.HasPrefix(l, "#") && !strings.HasPrefix(prev, "#") {
			b.WriteString("\n")
		}
		b.WriteString(l)
		prev = l
	}
	return b.String(), nil
}

func exporterCheckCommand() *cli.Command {
	return checkCommand("validate an exporter configuration file and say what is wrong, one line each",
		"Reports unknown keys, values of the wrong type (durations such as 30s), settings out of\n"+
			"range, a missing or absent interface, collectors that are not [udp|tcp|tls://]HOST:PORT or\n"+
			"whose host does not resolve, an unreadable CA file, filter and packet-ring-filter expressions\n"+
			"and distribution rules whose destination, filter (compiled by libpcap) or nets are wrong,\n"+
			"each with the line of its key. Exits 1 when anything is wrong.\n"+
			"Example: spanflow exporter check --config /etc/spanflow/exporter.yaml",
		exporterCheck)
}

// exporterCheck returns every problem of a configuration file, one line each.
func exporterCheck(path string) []string {
	var problems []string
	add := func(err error) {
		if err == nil {
			return
		}
		for _, l := range strings.Split(err.Error(), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				problems = append(problems, l)
			}
		}
	}
	cfg := exporter.DefaultConfiguration()
	if err := cfg.LoadFile(path); err != nil {
		add(err)
		// Unknown keys and wrong values leave the rest of the file
		// decoded, to be checked on; a file that cannot be read or is not
		// YAML has nothing more to say.
		var keyErr *yamlconf.Error
		if !errors.As(err, &keyErr) {
			return problems
		}
	}
	// What Validate finds is said at its key's line, as the file's own
	// problems are.
	lines, _ := yamlconf.KeyLines(path)
	at := func(key string, err error) {
		if n, ok := lines[key]; ok && err != nil {
			err = fmt.Errorf("line %d: %w", n, err)
		}
		add(err)
	}
	for _, e := range yamlconf.Unjoin(cfg.Validate()) {
		var se *exporter.SettingError
		if errors.As(e, &se) {
			at(se.Key, e)
			continue
		}
		add(e)
	}
	lives, _ := cfg.Live() // Validate said what is wrong
	for _, l := range lives {
		at("interface", capture.CheckInterface(l.Interface))
	}
	for _, a := range cfg.Collectors {
		_, addr, err := transport.SplitCollector(a)
		if err != nil {
			continue // Validate said so
		}
		host, _, _ := net.SplitHostPort(addr)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = net.DefaultResolver.LookupHost(ctx, host)
		cancel()
		if err != nil {
			at("collector", fmt.Errorf("collector %s: host %s does not resolve: %v", a, host, err))
		}
	}
	return problems
}

func exporterInstallCommand() *cli.Command {
	return installCommand("exporter",
		"write a systemd unit running the exporter as a dedicated user with only CAP_NET_RAW and CAP_NET_ADMIN",
		"Writes the unit to --path; it does not enable or start it. The unit runs\n"+
			"`spanflow exporter run --config CONFIG` as --user (create it first:\n"+
			"useradd --system --no-create-home --shell /usr/sbin/nologin spanflow-exporter),\n"+
			"stops it with SIGTERM (the table is flushed), and restarts it on failure. Everything is\n"+
			"read-only but /var/lib/spanflow, its state directory (a packet ring such as\n"+
			"/var/lib/spanflow/ring), and the packet-ring directory CONFIG names elsewhere.\n"+
			"Example: spanflow exporter install --path /etc/systemd/system/spanflow-exporter.service",
		"configuration `FILE` the service reads (read now, when it exists, for the directory of its packet ring)",
		func(config string) (unitSpec, error) {
			extra := "# The packet ring (packet-ring) may live in /var/lib/spanflow; one elsewhere needs\n" +
				"# ReadWritePaths=DIR (exporter install --config writes it for the ring the file names).\n" +
				"StateDirectory=spanflow\nStateDirectoryMode=0750"
			if _, err := os.Stat(config); err == nil {
				cfg := exporter.DefaultConfiguration()
				if err := cfg.LoadFile(config); err != nil {
					return unitSpec{}, fmt.Errorf("%s: %s (fix it, or check it with `exporter check`)", config, oneLineError(err))
				}
				rw, err := ringWritePath(cfg.PacketRing)
				if err != nil {
					return unitSpec{}, fmt.Errorf("%s: %w", config, err)
				}
				if rw != "" {
					extra += "\n# The packet ring of " + config + " (create it first, owned by the service's user).\nReadWritePaths=" + rw
				}
			}
			return unitSpec{
				summary:      "mirrored traffic to IPFIX",
				stop:         "# SIGTERM flushes the flow table to the collectors before exiting.\nTimeoutStopSec=30",
				capabilities: []string{"CAP_NET_RAW", "CAP_NET_ADMIN"},
				capsWhy:      "# Raw sockets (AF_PACKET) and promiscuous mode; nothing else.",
				families:     "AF_PACKET AF_INET AF_INET6 AF_NETLINK AF_UNIX",
				extra:        extra,
			}, nil
		})
}
