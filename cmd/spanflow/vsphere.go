package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spanflow/spanflow/enrich/interfaces"
	"github.com/spanflow/spanflow/enrich/networks"
	"github.com/spanflow/spanflow/enrich/vsphere"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/lifecycle"
	"github.com/spanflow/spanflow/internal/reporter"
)

// vcenterFlags configure the vCenter connection and project rules; the
// collector and `spanflow vsphere inventory` share them.
func vcenterFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "vcenter-url", EnvVars: []string{"SPANFLOW_VCENTER_URL"},
			Usage: "vCenter to take the inventory from, https://vcenter.example.com (http:// for a simulator); empty: no vCenter enrichment"},
		&cli.StringFlag{Name: "vcenter-user", EnvVars: []string{"SPANFLOW_VCENTER_USER"},
			Usage: "vCenter user (a read-only role is enough, see docs/vsphere.md)"},
		&cli.StringFlag{Name: "vcenter-password-file", TakesFile: true,
			Usage: "file holding the vCenter password (else SPANFLOW_VCENTER_PASSWORD; there is no password flag, ps would show it)"},
		&cli.StringFlag{Name: "vcenter-ca", TakesFile: true,
			Usage: "PEM file of the CA that signed vCenter's certificate (default: the system's CAs)"},
		&cli.BoolFlag{Name: "vcenter-insecure",
			Usage: "do not verify vCenter's certificate (only for tests; prefer --vcenter-ca)"},
		&cli.StringSliceFlag{Name: "project-rule",
			Usage: "how a VM's project is named, first answer wins (repeatable): tag:CATEGORY, attribute:NAME, folder:LEVEL (1 = top folder, -1 = the VM's own), portgroup:REGEXP (first capture group)"},
		&cli.StringSliceFlag{Name: "portgroup-vni",
			Usage: "VNI of an overlay port group, PORTGROUP=VNI (repeatable), to tell apart VMs sharing an address on VXLAN/Geneve segments"},
	}
}

// enrichFlags are the flags of every enricher, for the collector.
func enrichFlags() []cli.Flag {
	return append(vcenterFlags(),
		&cli.DurationFlag{Name: "vcenter-wait", Value: 10 * time.Second,
			Usage: "at startup, wait this long for the first vCenter inventory so the first flows are enriched (with --pcap, unless set: 2m)"},
		&cli.StringFlag{Name: "networks", TakesFile: true, EnvVars: []string{"SPANFLOW_NETWORKS"},
			Usage: "YAML file mapping CIDRs to name, site, role, project and external (default: private ranges are internal)"},
		&cli.StringFlag{Name: "interface-names", TakesFile: true,
			Usage: "YAML file naming exporters' interfaces: EXPORTER_IP: {IFINDEX: NAME}"},
	)
}

// vsphereConfiguration reads the vCenter flags; ok is false when no vCenter
// URL is given.
func vsphereConfiguration(c *cli.Context) (cfg vsphere.Configuration, ok bool, err error) {
	cfg = vsphere.DefaultConfiguration()
	cfg.URL = c.String("vcenter-url")
	if cfg.URL == "" {
		return cfg, false, nil
	}
	cfg.User = c.String("vcenter-user")
	cfg.CAFile = c.String("vcenter-ca")
	cfg.Insecure = c.Bool("vcenter-insecure")
	cfg.ProjectRules = nonEmptyStrings(c.StringSlice("project-rule"))
	if file := c.String("vcenter-password-file"); file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return cfg, false, fmt.Errorf("read vcenter password: %w", err)
		}
		cfg.Password = strings.TrimRight(string(data), "\r\n")
	} else {
		cfg.Password = os.Getenv("SPANFLOW_VCENTER_PASSWORD")
	}
	if cfg.Password == "" {
		return cfg, false, errors.New("no vcenter password: set SPANFLOW_VCENTER_PASSWORD or --vcenter-password-file")
	}
	for _, s := range nonEmptyStrings(c.StringSlice("portgroup-vni")) {
		name, v, found := strings.Cut(s, "=")
		vni, perr := strconv.ParseUint(v, 10, 24)
		if !found || name == "" || perr != nil {
			return cfg, false, fmt.Errorf("--portgroup-vni %q: want PORTGROUP=VNI with VNI below 2^24", s)
		}
		if cfg.VNIs == nil {
			cfg.VNIs = map[string]uint32{}
		}
		cfg.VNIs[name] = uint32(vni)
	}
	return cfg, true, cfg.Validate()
}

func nonEmptyStrings(in []string) []string {
	var out []string
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// enrichChain applies enrichers in order: vCenter first, so the networks
// enricher knows which ends are VMs.
type enrichChain []flow.Enricher

func (ch enrichChain) Enrich(r *flow.Record) {
	for _, e := range ch {
		e.Enrich(r)
	}
}

// Enrichers is what buildEnrichers returns: the chain for the pipeline, the
// vCenter component to start (nil without a vCenter) and the interface
// names the decoders may teach names from options data.
type Enrichers struct {
	Chain     enrichChain
	VSphere   *vsphere.Component
	Names     *interfaces.Names
	Networks  *networks.Component
	Component lifecycle.Component // VSphere as a component, or nil
}

// buildEnrichers builds every enricher from the flags of enrichFlags.
func buildEnrichers(c *cli.Context, r *reporter.Reporter) (*Enrichers, error) {
	out := &Enrichers{}
	vcfg, ok, err := vsphereConfiguration(c)
	if err != nil {
		return nil, err
	}
	if ok {
		vcfg.StartWait = c.Duration("vcenter-wait")
		if c.String("pcap") != "" && !c.IsSet("vcenter-wait") {
			// A replay is over in moments: its flows should all be enriched.
			vcfg.StartWait = 2 * time.Minute
		}
		if out.VSphere, err = vsphere.New(r.Sub("vsphere"), vcfg); err != nil {
			return nil, err
		}
		out.Chain = append(out.Chain, out.VSphere)
		out.Component = out.VSphere
	}
	ncfg := networks.DefaultConfiguration()
	ncfg.File = c.String("networks")
	if out.Networks, err = networks.New(r.Sub("networks"), ncfg); err != nil {
		return nil, err
	}
	out.Chain = append(out.Chain, out.Networks)
	icfg := interfaces.DefaultConfiguration()
	icfg.File = c.String("interface-names")
	if out.Names, err = interfaces.New(r.Sub("interfaces"), icfg); err != nil {
		return nil, err
	}
	out.Chain = append(out.Chain, out.Names)
	return out, nil
}

// collectorEnricher adapts buildEnrichers to the collector's list of
// enricher builders.
func collectorEnricher(c *cli.Context, r *reporter.Reporter) (flow.Enricher, lifecycle.Component, error) {
	e, err := buildEnrichers(c, r)
	if err != nil {
		return nil, nil, err
	}
	return e.Chain, e.Component, nil
}

func vsphereCommand() *cli.Command {
	return &cli.Command{
		Name:  "vsphere",
		Usage: "check what the vCenter enrichment sees",
		Subcommands: []*cli.Command{{
			Name:  "inventory",
			Usage: "load the vCenter inventory once and print its VMs: addresses, MACs, host, port group, VLAN, project",
			Description: "Connects as the collector would (same flags), loads the inventory with the property collector\n" +
				"and prints one row per VM NIC, or JSON with --format json. Only powered-on VMs are used to enrich flows.",
			Flags: append(vcenterFlags(),
				&cli.StringFlag{Name: "format", Value: "table", Usage: "table or json"},
				&cli.DurationFlag{Name: "timeout", Value: 5 * time.Minute, Usage: "give up when the inventory is not loaded within this time"},
			),
			Action: runVSphereInventory,
		}},
	}
}

func runVSphereInventory(c *cli.Context) error {
	format := c.String("format")
	if format != "table" && format != "json" {
		return fmt.Errorf("unknown format %q: use table or json", format)
	}
	cfg, ok, err := vsphereConfiguration(c)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("--vcenter-url (or SPANFLOW_VCENTER_URL) is required")
	}
	r, err := newReporter(c)
	if err != nil {
		return err
	}
	comp, err := vsphere.New(r.Sub("vsphere"), cfg)
	if err != nil {
		return err
	}
	ctx, cancel := signalContext(c.Context)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, c.Duration("timeout"))
	defer cancelT()
	if err := comp.Start(); err != nil {
		return err
	}
	defer comp.Stop()
	// The first failure ends the command: an operator checking the setup
	// wants the error, not the retries the collector would make.
	for {
		wctx, wcancel := context.WithTimeout(ctx, 100*time.Millisecond)
		err := comp.WaitLoaded(wctx)
		wcancel()
		if err == nil {
			break
		}
		if last := comp.LastError(); last != nil {
			return fmt.Errorf("load the vcenter inventory: %w", last)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("load the vcenter inventory: %w", ctx.Err())
		}
	}
	vms := comp.Snapshot().VMs()
	if format == "json" {
		return writeInventoryJSON(c.App.Writer, vms)
	}
	return writeInventoryTable(c.App.Writer, vms)
}

func writeInventoryJSON(w io.Writer, vms []vsphere.VM) error {
	if vms == nil {
		vms = []vsphere.VM{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(vms)
}

func writeInventoryTable(w io.Writer, vms []vsphere.VM) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VM\tPOWER\tIPS\tMAC\tHOST\tCLUSTER\tDATACENTER\tPORT GROUP\tVLAN\tPROJECT")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, vm := range vms {
		nics := vm.NICs
		if len(nics) == 0 {
			nics = []vsphere.NIC{{Project: vm.Project}}
		}
		for _, n := range nics {
			ips := make([]string, len(n.IPs))
			for i, a := range n.IPs {
				ips[i] = a.String()
			}
			vlan := "-"
			if n.VLAN != 0 {
				vlan = strconv.Itoa(int(n.VLAN))
			}
			if n.VNI != 0 {
				vlan += fmt.Sprintf(" (vni %d)", n.VNI)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", vm.Name, dash(vm.PowerState),
				dash(strings.Join(ips, ",")), dash(n.MACString), dash(vm.Host), dash(vm.Cluster),
				dash(vm.Datacenter), dash(n.Network), vlan, dash(n.Project))
		}
	}
	return tw.Flush()
}
