// Package demo runs the whole of spanflow on one machine, in one process:
//
//	simulated vCenter (vcsim) ─────────────────────────────┐ inventory
//	traffic (ERSPAN II from 12 hosts) ─▶ exporter ─IPFIX/UDP 127.0.0.1─▶ collector ─▶ NDJSON file
//	                                                        enrich: vsphere,   └─▶ Elasticsearch (--es-url)
//	                                                        networks, interfaces
//
// then reads the NDJSON file back and prints what a network team would ask
// first: the top VM conversations, the east-west / north-south split, the
// busiest lines and TCP health per project. It is what `spanflow demo`
// (and `make demo`) runs; the components are the real ones: the collector
// is collector.Collector built from the Configuration a production file
// would give (collectorConfiguration), the exporter is exporter.Exporter.
package demo

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	elasticsearch8 "github.com/elastic/go-elasticsearch/v8"
	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/spanflow/spanflow/collector"
	"github.com/spanflow/spanflow/collector/output/elasticsearch"
	"github.com/spanflow/spanflow/collector/pipeline"
	"github.com/spanflow/spanflow/enrich/networks"
	"github.com/spanflow/spanflow/exporter"
	"github.com/spanflow/spanflow/internal/esconn"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/lifecycle"
	"github.com/spanflow/spanflow/internal/reporter"
)

// Result is what a run did.
type Result struct {
	Configuration     Configuration
	Estate            *Estate
	Base              time.Time // time origin of the traffic
	OutputPath        string
	VCenterURL        string
	ObservationDomain uint32
	Exporter          exporter.Summary
	MirroredBytes     uint64
	Datagrams         uint64 // IPFIX datagrams the collector handled
	Records           uint64 // flow records the collector wrote
	Interrupted       bool
	Summary           *Summary
	ESIndexed         int64 // documents of this run found in Elasticsearch; -1 when not asked
	CollectorAddr     string

	vcenter        *VCenter
	collectorDir   string // the collector's files and spool, removed at the end
	esTransport    *http.Transport
	trafficStarted bool
}

// Streams are where a run writes: the summary (stdout) and the progress
// and steps (stderr).
type Streams struct {
	Out, Err io.Writer
	// ErrIsTerminal redraws the progress line in place.
	ErrIsTerminal bool
}

// Run runs the demo until the traffic ends or ctx is cancelled (Ctrl-C),
// then prints the summary. Everything it started is stopped before it
// returns, on success and on failure.
func Run(ctx context.Context, r *reporter.Reporter, cfg Configuration, streams Streams) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ipfixAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Port))
	vcAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.VCenterPort))
	if err := checkFree("udp", ipfixAddr, "--port"); err != nil {
		return nil, err
	}
	if err := checkFree("tcp", vcAddr, "--vcenter-port"); err != nil {
		return nil, err
	}
	if cfg.ESURL != "" {
		if err := pingES(ctx, cfg.ESURL); err != nil {
			return nil, err
		}
	}
	res := &Result{Configuration: cfg, Estate: DefaultEstate(), ESIndexed: -1, OutputPath: cfg.Output}
	if res.OutputPath == "" {
		dir, err := os.MkdirTemp("", "spanflow-demo-")
		if err != nil {
			return nil, fmt.Errorf("make a directory for the flows: %w", err)
		}
		res.OutputPath = filepath.Join(dir, "flows.ndjson")
	}
	res.ObservationDomain = cfg.ObservationDomain
	if res.ObservationDomain == 0 {
		res.ObservationDomain = uint32(time.Now().Unix())
	}

	var group lifecycle.Group
	err := run(ctx, r, &group, res, ipfixAddr, vcAddr, streams)
	if stopErr := group.Stop(); stopErr != nil && err == nil {
		err = stopErr
	}
	if res.collectorDir != "" {
		os.RemoveAll(res.collectorDir)
	}
	if res.esTransport != nil {
		res.esTransport.CloseIdleConnections()
	}
	if err != nil && ctx.Err() != nil && !res.trafficStarted {
		// Ctrl-C while starting: not a failure, there is just nothing to show.
		res.Interrupted = true
		fmt.Fprintf(streams.Err, "spanflow demo: interrupted before the traffic started; everything is stopped\n")
		return res, nil
	}
	if err != nil {
		return res, err
	}
	if res.Summary, err = Summarize(res.OutputPath, uint64(res.ObservationDomain)); err != nil {
		return res, err
	}
	if cfg.ESURL != "" {
		if res.ESIndexed, err = countIndexed(cfg.ESURL, res.ObservationDomain); err != nil {
			return res, err
		}
	}
	printResult(streams.Out, res)
	return res, nil
}

// run starts the components in order (the caller stops them in reverse):
// the simulated vCenter, the collector following it, then plays the
// traffic through the exporter and waits for the collector to have handled
// every datagram.
func run(ctx context.Context, r *reporter.Reporter, group *lifecycle.Group, res *Result, ipfixAddr, vcAddr string, streams Streams) error {
	if err := startVCenter(r, group, res, vcAddr, streams); err != nil {
		return err
	}
	col, err := startCollector(ctx, r, group, res, ipfixAddr, streams)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err // Ctrl-C while starting: no traffic, no summary
	}
	return playTraffic(ctx, r, group, res, col, streams)
}

// startVCenter starts the simulated vCenter.
func startVCenter(r *reporter.Reporter, group *lifecycle.Group, res *Result, vcAddr string, streams Streams) error {
	estate := res.Estate
	fmt.Fprintf(streams.Err, "spanflow demo: starting a simulated vCenter (%d clusters, %d hosts, %d VMs in %d projects) on %s\n",
		len(estate.Clusters), len(estate.Hosts), len(estate.VMs), len(estate.Projects), vcAddr)
	vc := newVCenter(r.Sub("vcsim"), estate, vcAddr)
	if err := group.Start(vc); err != nil {
		return err
	}
	res.VCenterURL = vc.URL()
	res.vcenter = vc
	return nil
}

// collectorConfiguration is the collector as the demo runs it: what
// `spanflow collector run --config` would read from a file, with the
// estate's networks, interface names and vCenter password in files of
// dir. It listens on ipfixAddr only and writes the NDJSON file (and
// Elasticsearch with --es-url).
func collectorConfiguration(res *Result, ipfixAddr, dir string) (collector.Configuration, error) {
	cfg := collector.DefaultConfiguration()
	in := &cfg.Input
	in.NetFlowListen, in.IPFIXListen, in.IPFIXTCPListen, in.SFlowListen, in.Sockets = []string{ipfixAddr}, nil, nil, nil, 1
	cfg.MetricsListen = ""
	cfg.Outputs.Output, cfg.Outputs.OutputMaxBytes = []string{"file:" + res.OutputPath}, 0
	if url := res.Configuration.ESURL; url != "" {
		cfg.Outputs.Output = append(cfg.Outputs.Output, "elasticsearch")
		cfg.Elasticsearch.Connection.URLs = []string{url}
		cfg.Elasticsearch.SpoolDir = filepath.Join(dir, "es-spool")
		cfg.Elasticsearch.DrainTimeout = 10 * time.Second
	}
	user, password := res.vcenter.Credentials()
	vc := &cfg.Enrichment.VCenter
	vc.URL, vc.User, vc.ProjectRules = res.VCenterURL, user, res.Estate.ProjectRules
	vc.PasswordFile = filepath.Join(dir, "vcenter-password")
	wait := time.Minute
	cfg.Enrichment.VCenterWait = &wait
	cfg.Enrichment.Networks = filepath.Join(dir, "networks.yaml")
	cfg.Enrichment.InterfaceNames = filepath.Join(dir, "interface-names.yaml")

	nets := map[string]networks.Network{}
	for _, n := range res.Estate.Networks {
		nets[n.Prefix.String()] = n
	}
	names := map[uint32]string{}
	for _, h := range res.Estate.Hosts {
		names[h.IfIndex] = h.LineName()
	}
	for path, v := range map[string]any{cfg.Enrichment.Networks: nets, cfg.Enrichment.InterfaceNames: map[string]map[uint32]string{"127.0.0.1": names}} {
		b, err := yaml.Marshal(v)
		if err != nil {
			return cfg, err
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return cfg, err
		}
	}
	return cfg, os.WriteFile(vc.PasswordFile, []byte(password), 0o600)
}

// startCollector starts the collector (it waits for the vCenter inventory)
// with a progress counter after its outputs.
func startCollector(ctx context.Context, r *reporter.Reporter, group *lifecycle.Group, res *Result, ipfixAddr string, streams Streams) (*runningCollector, error) {
	dir, err := os.MkdirTemp("", "spanflow-demo-collector-")
	if err != nil {
		return nil, err
	}
	res.collectorDir = dir
	cfg, err := collectorConfiguration(res, ipfixAddr, dir)
	if err != nil {
		return nil, fmt.Errorf("write the collector's files: %w", err)
	}
	col := &runningCollector{}
	deps := collector.Dependencies{Outputs: []pipeline.Output{{Name: "progress", Sink: counter{&col.records}}}}
	if cfg.Elasticsearch.Connection.URLs != nil {
		// Our own transport (as esconn would build it), so the output's
		// keep-alive connections are closed when the demo ends.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = cfg.Elasticsearch.Connection.Timeout
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		deps.ESTransport, res.esTransport = t, t
	}
	if col.Collector, err = collector.New(r, cfg, deps); err != nil {
		return nil, err
	}
	if err := group.Start(col.Collector); err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, &PortInUseError{Network: "udp", Addr: ipfixAddr, Flag: "--port"}
		}
		return nil, err
	}
	vs := col.VSphere()
	wait, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = vs.WaitLoaded(wait)
	cancel()
	if err != nil {
		if last := vs.LastError(); last != nil {
			err = fmt.Errorf("%w (last error: %v)", err, last)
		}
		return nil, fmt.Errorf("load the simulated vCenter's inventory: %w", err)
	}
	vms := 0
	if s := vs.Snapshot(); s != nil {
		vms = len(s.VMs())
	}
	fmt.Fprintf(streams.Err, "spanflow demo: collector loaded %d VMs from %s\n", vms, res.VCenterURL)
	res.CollectorAddr = col.Addrs()[0].String()
	return col, nil
}

// runningCollector is the collector, with the records it wrote counted
// for the progress line.
type runningCollector struct {
	*collector.Collector
	records atomic.Uint64
}

// playTraffic runs the exporter over the paced traffic, with the progress
// line, then waits for the collector to have handled every datagram.
func playTraffic(ctx context.Context, r *reporter.Reporter, group *lifecycle.Group, res *Result, col *runningCollector, streams Streams) error {
	cfg := res.Configuration

	// The exporter, in its own process in real life: its own metrics.
	xr := r.Sub("exporter").With(prometheus.NewRegistry())
	xcfg := exporter.DefaultConfiguration()
	xcfg.Collectors = []string{res.CollectorAddr}
	xcfg.ActiveTimeout, xcfg.IdleTimeout = exporter.Duration(cfg.ActiveTimeout), exporter.Duration(cfg.IdleTimeout)
	xcfg.ObservationDomain = res.ObservationDomain
	x, err := exporter.New(xr, xcfg, nil)
	if err != nil {
		return err
	}
	res.Base = time.Now().Truncate(time.Millisecond).Add(100 * time.Millisecond)
	traffic := NewTraffic(res.Estate, TrafficConfiguration{Seed: cfg.Seed, Rate: cfg.Rate, Duration: cfg.Duration, Base: res.Base})
	src := newPacedSource(ctx, traffic)
	if cfg.Pcap != "" {
		if src.copy, err = newPcapWriter(cfg.Pcap); err != nil {
			return err
		}
	}
	fmt.Fprintf(streams.Err, "spanflow demo: mirroring %s of traffic (%s packets/s) through the exporter to the collector at %s\n",
		cfg.Duration, Group(uint64(cfg.Rate)), xcfg.Collectors[0])
	prog := &progress{w: streams.Err, tty: streams.ErrIsTerminal, duration: cfg.Duration, packets: src.packets.Load, records: &col.records}
	if err := group.Start(prog); err != nil {
		return err
	}
	res.trafficStarted = true
	res.Exporter, err = x.Run(ctx, src)
	prog.Stop()
	if ctx.Err() != nil {
		fmt.Fprintf(streams.Err, "spanflow demo: interrupted: the flows metered so far are exported, written and summarized\n")
	}
	res.MirroredBytes = src.bytes.Load()
	res.Interrupted = ctx.Err() != nil
	if err != nil {
		if src.copy != nil {
			src.copy.close()
		}
		return fmt.Errorf("exporter: %w", err)
	}
	if src.copy != nil {
		if err := src.copy.close(); err != nil {
			return err
		}
	}

	// Every datagram sent is handled before the collector stops (loopback
	// UDP does not lose them unless the socket buffer overflows).
	deadline := time.Now().Add(5 * time.Second)
	for col.Datagrams() < res.Exporter.Messages && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	res.Datagrams, res.Records = col.Datagrams(), col.records.Load()
	if res.Datagrams < res.Exporter.Messages {
		fmt.Fprintf(streams.Err, "spanflow demo: warning: the collector handled %d of the %d IPFIX messages sent (kernel drops: %d)\n",
			res.Datagrams, res.Exporter.Messages, col.KernelDrops())
	}
	return nil
}

// counter is an output that counts records, for the progress line.
type counter struct{ n *atomic.Uint64 }

func (c counter) Write(records []flow.Record) error {
	c.n.Add(uint64(len(records)))
	return nil
}

// esClient returns a client for url on its own transport, closed by the
// returned function.
func esClient(url string) (*elasticsearch8.Client, func(), error) {
	cfg := elasticsearch.DefaultConfiguration().Connection
	cfg.URLs = []string{url}
	t := http.DefaultTransport.(*http.Transport).Clone()
	cfg.Transport = t
	client, err := esconn.New(cfg)
	return client, t.CloseIdleConnections, err
}

// pingES checks the cluster answers before anything starts.
func pingES(ctx context.Context, url string) error {
	client, done, err := esClient(url)
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := esconn.Ping(ctx, client); err != nil {
		return fmt.Errorf("--es-url %s: %w", url, err)
	}
	return nil
}

// countIndexed refreshes the flow indices and counts this run's documents.
func countIndexed(url string, domain uint32) (int64, error) {
	client, done, err := esClient(url)
	if err != nil {
		return 0, err
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := client.Indices.Refresh(client.Indices.Refresh.WithContext(ctx), client.Indices.Refresh.WithIndex(IndexPattern))
	if err != nil {
		return 0, fmt.Errorf("refresh %s: %w", IndexPattern, err)
	}
	res.Body.Close()
	q := fmt.Sprintf(`{"query":{"term":{"netflow.observation_domain_id":%d}}}`, domain)
	res, err = client.Count(client.Count.WithContext(ctx), client.Count.WithIndex(IndexPattern), client.Count.WithBody(strings.NewReader(q)))
	if err != nil {
		return 0, fmt.Errorf("count this run's documents: %w", err)
	}
	defer res.Body.Close()
	if res.IsError() {
		return 0, fmt.Errorf("count this run's documents: %s", res.String())
	}
	var body struct {
		Count int64 `json:"count"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		return 0, fmt.Errorf("count this run's documents: %w", err)
	}
	return body.Count, nil
}

// IndexPattern is where the collector's Elasticsearch output writes.
const IndexPattern = "spanflow-flows-*"

func printResult(w io.Writer, res *Result) {
	s, x := res.Summary, res.Exporter
	cfg := res.Configuration
	fmt.Fprintln(w)
	what := fmt.Sprintf("%s of traffic", cfg.Duration)
	if res.Interrupted {
		what = "traffic until interrupted"
	}
	fmt.Fprintf(w, "spanflow demo: %s mirrored from %d ESXi hosts: %s packets, %s bytes\n",
		what, len(res.Estate.Hosts), Group(x.Frames), Group(res.MirroredBytes))
	fmt.Fprintf(w, "  exporter: %s flows in %s IPFIX messages to %s (observation domain %d)\n",
		Group(x.Flows), Group(x.Messages), res.CollectorAddr, res.ObservationDomain)
	fmt.Fprintf(w, "  collector: %s flow documents, %s with a vCenter VM on at least one end, written to\n    %s\n",
		Group(s.Total.Flows), Group(s.WithVM), res.OutputPath)
	if s.Other > 0 {
		fmt.Fprintf(w, "    (which also holds %s documents of earlier runs, left out below)\n", Group(s.Other))
	}
	fmt.Fprintln(w)
	s.Print(w)
	if cfg.Pcap != "" {
		fmt.Fprintf(w, "\nThe mirrored traffic is in %s: meter it again with\n  spanflow exporter run --pcap %s --collector HOST:PORT\n", cfg.Pcap, cfg.Pcap)
	}
	if cfg.ESURL != "" {
		fmt.Fprintf(w, "\nElasticsearch: %s documents of this run in %s at %s\n", Group(uint64(res.ESIndexed)), IndexPattern, cfg.ESURL)
		fmt.Fprintf(w, "  Kibana: install the dashboards, then open Dashboards > \"spanflow: Overview\" (time: last 15 minutes):\n")
		fmt.Fprintf(w, "    spanflow dashboards install --kibana-url %s\n", cfg.KibanaURL)
		fmt.Fprintf(w, "  Only this run: filter on netflow.observation_domain_id : %d\n", res.ObservationDomain)
	}
	fmt.Fprintf(w, "\nNext: docs/quickstart.md points the exporter at a real mirror port and the collector at\nyour vCenter and Elasticsearch.\n")
}
