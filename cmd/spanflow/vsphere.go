package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spanflow/spanflow/collector"
	"github.com/spanflow/spanflow/enrich/vsphere"
	"github.com/spanflow/spanflow/internal/numfmt"
	"github.com/spanflow/spanflow/internal/reporter"
)

// vcenterFlags are the vCenter settings of the collector, which `spanflow
// vsphere inventory` shares.
func vcenterFlags() []cli.Flag {
	return settingsFlags(&collector.VCenterConfiguration{})
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
	if t := c.Duration("timeout"); t <= 0 {
		return fmt.Errorf("--timeout %s: must be positive, such as 1m", t)
	}
	var vc collector.VCenterConfiguration
	applySettings(c, &vc)
	cfg, ok, err := vc.VSphere()
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
	// The component's retry warnings ("vcenter unreachable; flows pass
	// without vsphere fields ...") are a collector's words for the error this
	// command ends with at the first failure: below debug, only its errors
	// are logged, and the failure is said once.
	sub := r.Sub("vsphere")
	if !r.Log.Enabled(context.Background(), slog.LevelDebug) {
		logFormat, _ := globalFlag(c, "log-format")
		sub = &reporter.Reporter{Log: reporter.NewLogger(c.App.ErrWriter, slog.LevelError, logFormat == "json").With("component", "vsphere"),
			Registry: r.Registry}
	}
	comp, err := vsphere.New(sub, cfg)
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
	// Thousands of VMs take a while: say so on a terminal, with the objects
	// vCenter has sent so far.
	host := "vCenter"
	if u, err := url.Parse(cfg.URL); err == nil {
		host = u.Host // without any credentials
	}
	status := startStatus(c.App.ErrWriter, "loading the inventory of "+host, func() string {
		n, ok := counterValue(r.Registry, "spanflow_vsphere_updates_total")
		if !ok {
			return ""
		}
		return numfmt.Count(uint64(n), "object", "") + " received"
	})
	defer status.Stop()
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
			var op *net.OpError
			if errors.As(last, &op) && op.Op == "dial" {
				return fmt.Errorf("load the vcenter inventory: %w: check --vcenter-url and that vCenter is up", last)
			}
			return fmt.Errorf("load the vcenter inventory: %w", last)
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("load the vcenter inventory: not loaded within --timeout %s: raise it for a large inventory, or check that %s answers", c.Duration("timeout"), host)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("load the vcenter inventory: %w", ctx.Err())
		}
	}
	status.Stop()
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
