package collector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spanflow/spanflow/collector/forward"
	"github.com/spanflow/spanflow/collector/listen"
	"github.com/spanflow/spanflow/collector/output/elasticsearch"
	"github.com/spanflow/spanflow/collector/output/elasticsearch/setup"
	"github.com/spanflow/spanflow/collector/output/ndjson"
	"github.com/spanflow/spanflow/collector/pipeline"
	"github.com/spanflow/spanflow/collector/rollup"
	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/enrich/interfaces"
	"github.com/spanflow/spanflow/enrich/networks"
	"github.com/spanflow/spanflow/enrich/vsphere"
	"github.com/spanflow/spanflow/internal/esconn"
	"github.com/spanflow/spanflow/internal/secret"
	"github.com/spanflow/spanflow/internal/yamlconf"
)

// Configuration of the collector: every setting of `spanflow collector run`.
// The YAML keys of the --config file are the flag names, and the command's
// flags are made from these fields (help, category and environment
// variable in their tags), so a setting cannot exist in one and not the
// other. Groups are inlined: the file is flat, like the command line.
type Configuration struct {
	Input         InputConfiguration      `yaml:",inline"`
	Outputs       OutputConfiguration     `yaml:",inline"`
	Elasticsearch ESConfiguration         `yaml:",inline"`
	Kafka         KafkaOutput             `yaml:",inline"`
	Enrichment    EnrichmentConfiguration `yaml:",inline"`
	Alerts        AlertConfiguration      `yaml:",inline"`
	Rollups       RollupConfiguration     `yaml:",inline"`
	UI            UIConfiguration         `yaml:",inline"`
	MetricsListen string                  `yaml:"metrics-listen" default:"127.0.0.1:9109 (with --pcap: off unless given)" help:"serve Prometheus metrics at http://ADDR/metrics; \"\" disables"`
}

// InputConfiguration says where flow datagrams come from and how much
// per-exporter state the decoders may keep.
type InputConfiguration struct {
	Pcap           string        `yaml:"pcap" help:"read the flow datagrams (UDP payloads) of this pcap/pcapng capture through the pipeline, then exit"`
	NetFlowListen  []string      `yaml:"netflow-listen" help:"UDP address(es) for NetFlow v5/v9 (and IPFIX); \"\" disables"`
	IPFIXListen    []string      `yaml:"ipfix-listen" help:"UDP address(es) for IPFIX; \"\" disables"`
	IPFIXTCPListen []string      `yaml:"ipfix-tcp-listen" help:"TCP address(es) for IPFIX over TCP; \"\" disables"`
	Streams        StreamInput   `yaml:",inline"`
	SFlowListen    []string      `yaml:"sflow-listen" help:"UDP address(es) for sFlow v5; \"\" disables"`
	Sockets        int           `yaml:"sockets" help:"SO_REUSEPORT sockets (each with a decoding goroutine) per UDP address"`
	ReusePort      bool          `yaml:"listen-reuseport" help:"share the listen ports with other processes (other collectors started with it): the kernel splits the datagrams and connections between them; without it a port another process holds is refused"`
	ReusePortGroup int           `yaml:"listen-reuseport-group" help:"with listen-reuseport: the number of collector processes sharing the UDP ports, each with the same --sockets; a BPF program then picks the process by the exporter's address alone, not its source port, so that its templates and data stay together (Linux); 0 leaves the kernel's hash of address and port"`
	ReceiveBuffer  int           `yaml:"receive-buffer" help:"socket receive buffer in bytes (as root beyond net.core.rmem_max)"`
	ReceiveWait    time.Duration `yaml:"receive-wait" help:"after a UDP read that found fewer than 16 datagrams, wait this long so that the next read takes many (fewer wake-ups at a steady trickle; a busy socket is read on at once; never longer than the receive buffer holds of a 1 Gbit/s burst); 0 reads each datagram as it comes"`
	Allow          []string      `yaml:"allow" help:"accept datagrams only from this exporter network (CIDR); repeatable; default: all"`
	MaxExporters   int           `yaml:"max-exporters" help:"exporters to keep state for; datagrams from more are dropped and counted"`
	MaxTemplates   int           `yaml:"max-templates" help:"NetFlow v9/IPFIX templates kept per exporter; more are refused and counted"`
	MaxHeldSets    int           `yaml:"max-held-sets" help:"data sets held per exporter while their template has not arrived"`
	TemplateWait   time.Duration `yaml:"template-wait" help:"how long a data set is held for its template before it is dropped and counted"`
	State          StateLimits   `yaml:",inline"`
	// ExporterStatsInterval is nil when not given: every minute, or with
	// --pcap none at all.
	ExporterStatsInterval *time.Duration `yaml:"exporter-stats-interval" default:"1m (with --pcap: none)" help:"every this often, write one statistics document (event.kind metric, spanflow.exporter.*) per exporter and observation domain seen; 0 disables (with --pcap: off unless given, then written at the end)"`
}

// StreamInput is IPFIX over TLS and the limits of IPFIX over TCP and TLS,
// which any host that reaches the ports could otherwise exhaust.
type StreamInput struct {
	TLSListen       []string      `yaml:"ipfix-tls-listen" help:"TCP address(es) for IPFIX over TLS (RFC 7011 §11; IANA port 4740), framed and limited as over TCP; needs --ipfix-tls-cert-file and --ipfix-tls-key-file; \"\" disables"`
	TLSCertFile     string        `yaml:"ipfix-tls-cert-file" file:"true" help:"PEM certificate of the collector for IPFIX over TLS, followed by its intermediates"`
	TLSKeyFile      string        `yaml:"ipfix-tls-key-file" file:"true" help:"PEM key of the IPFIX over TLS certificate"`
	TLSClientCAFile string        `yaml:"ipfix-tls-client-ca-file" file:"true" help:"PEM CA certificate(s) of the exporters: an IPFIX over TLS client must present a certificate they signed (mutual TLS); without it any client may connect"`
	MaxConnections  int           `yaml:"ipfix-tcp-max-connections" help:"IPFIX over TCP and TLS connections open at once; more are refused and counted"`
	MaxPerSource    int           `yaml:"ipfix-tcp-max-per-source" help:"IPFIX over TCP and TLS connections open at once from one address; more are refused and counted"`
	IdleTimeout     time.Duration `yaml:"ipfix-tcp-idle-timeout" help:"close an IPFIX over TCP or TLS connection on which no message came for this long"`
}

// StateLimits bound, besides the counts above, what exporters can make the
// collector keep: in bytes, in observation domains and interface names, and
// in time (a silent exporter is forgotten, so spoofed sources do not lock
// real exporters out for good).
type StateLimits struct {
	MaxDomains          int           `yaml:"max-domains" help:"observation domains (source ids) one exporter may have templates in; more are refused and counted"`
	MaxInterfaceNames   int           `yaml:"max-interface-names" help:"interface names one exporter may announce in options records (0: no count limit, the byte bounds still apply)"`
	MaxInterfaceNameLen int           `yaml:"max-interface-name-bytes" help:"longer interface names from options records are cut to this many bytes"`
	MaxExporterBytes    int           `yaml:"max-exporter-bytes" help:"estimated bytes of one exporter's state (templates, names, held data sets); more is refused and counted"`
	MaxStateBytes       int           `yaml:"max-state-bytes" help:"the same for all exporters together"`
	ExporterIdleTimeout time.Duration `yaml:"exporter-idle-timeout" help:"forget an exporter silent this long, with its templates and metric series (0: never)"`
	MaxExporterSeries   int           `yaml:"max-exporter-series" help:"exporters with metric series of their own (label exporter=ADDR), given to those whose datagrams decode; the others, and sources of garbage, count under exporter=\"other\""`
}

// OutputConfiguration says where documents go, besides the Elasticsearch
// settings of ESConfiguration.
type OutputConfiguration struct {
	Output         []string `yaml:"output" help:"where documents go: stdout (NDJSON, the default), file:PATH (NDJSON, rotated by size), elasticsearch (--es-url; the default when --es-url is given), kafka (every flow record to --kafka-brokers for spanflow indexer run, docs/scale-out.md); repeatable"`
	OutputMaxBytes int64    `yaml:"output-max-bytes" help:"rotate a file output when it would grow past this many bytes (0: never); only a regular file is rotated, never a device or a FIFO such as /dev/null"`
	OutputMaxFiles int      `yaml:"output-max-files" help:"rotated files kept besides the current one (PATH.1 ... PATH.N)"`
	Forward        []string `yaml:"forward" help:"re-send every received datagram unchanged to HOST:PORT; repeatable"`
	ForwardSpoof   bool     `yaml:"forward-spoof" help:"forwarded datagrams keep the exporter's source address (IPv4, raw socket: root or CAP_NET_RAW)"`
}

// ESConfiguration is the Elasticsearch output: connection, index setup and
// indexing (docs/elasticsearch.md).
type ESConfiguration struct {
	Connection     ESConnection  `yaml:",inline"`
	Setup          ESSetup       `yaml:",inline"`
	RunSetup       bool          `yaml:"es-setup" category:"Elasticsearch" help:"install the index template (and ILM policy, data stream) at start, or once the cluster answers when it does not at start (flows wait in the spool); refuse to start when the cluster refuses it"`
	Gzip           bool          `yaml:"es-gzip" category:"Elasticsearch" help:"gzip bulk requests"`
	Workers        int           `yaml:"es-workers" category:"Elasticsearch" help:"concurrent bulk requests"`
	FlushBytes     int           `yaml:"es-flush-bytes" category:"Elasticsearch" help:"send a bulk request when it holds this many bytes (uncompressed; at most 64 MiB)"`
	FlushInterval  time.Duration `yaml:"es-flush-interval" category:"Elasticsearch" help:"send a bulk request once its first document has waited this long"`
	QueueSize      int           `yaml:"es-queue-size" category:"Elasticsearch" help:"flow documents waiting in memory before they go to the spool"`
	SpoolDir       string        `yaml:"es-spool-dir" category:"Elasticsearch" help:"directory keeping flows the cluster cannot take now; replayed in order when it is back"`
	SpoolMaxBytes  int64         `yaml:"es-spool-max-bytes" category:"Elasticsearch" help:"bound of the spool; when full, the oldest flows are dropped and counted"`
	DrainTimeout   time.Duration `yaml:"es-drain-timeout" category:"Elasticsearch" help:"at stop, how long to wait for the cluster to take what is in memory before writing it to the spool"`
	DeadLetterFile string        `yaml:"es-dead-letter-file" category:"Elasticsearch" help:"file receiving flows the cluster refuses for their content, with the reason (default: dead-letter.ndjson in the spool directory); a regular file is one process's at a time (locked by FILE.lock); /dev/null drops them"`
	DeadLetterMax  int64         `yaml:"es-dead-letter-max-bytes" category:"Elasticsearch" help:"bound of the dead-letter file; past it refused flows are dropped and counted until the file is moved away (0: no bound)"`
}

// ESConnection says how to reach the cluster; `es setup`, `es prune` and
// `report` take the same settings. Secrets come from the environment or
// from files, never from a value (it would show in ps).
type ESConnection struct {
	URLs                     []string      `yaml:"es-url" category:"Elasticsearch" default:"http://127.0.0.1:9200" help:"Elasticsearch node URL, http:// or https:// (repeat for several nodes)"`
	CAFile                   string        `yaml:"es-ca-file" category:"Elasticsearch" help:"PEM file of the CA that signed the cluster's HTTPS certificate"`
	Fingerprint              string        `yaml:"es-fingerprint" category:"Elasticsearch" help:"SHA-256 fingerprint (hex) of the cluster's CA certificate, as Elasticsearch prints it at first start"`
	APIKeyFile               string        `yaml:"es-api-key-file" category:"Elasticsearch" help:"file holding the API key (base64 id:key); default: $SPANFLOW_ES_API_KEY"`
	UserFile                 string        `yaml:"es-user-file" category:"Elasticsearch" help:"file holding the user name; default: $SPANFLOW_ES_USER"`
	PasswordFile             string        `yaml:"es-password-file" category:"Elasticsearch" help:"file holding the password; default: $SPANFLOW_ES_PASSWORD"`
	CertFile                 string        `yaml:"es-cert-file" category:"Elasticsearch" help:"PEM client certificate, for a cluster that authenticates clients by certificate (with --es-key-file)"`
	KeyFile                  string        `yaml:"es-key-file" category:"Elasticsearch" help:"PEM key of the client certificate"`
	AllowInsecureCredentials bool          `yaml:"es-allow-insecure-credentials" category:"Elasticsearch" help:"send credentials to an http:// URL in clear text (refused without it)"`
	Timeout                  time.Duration `yaml:"es-timeout" category:"Elasticsearch" help:"how long to wait for the cluster's answer to one request"`
}

// ESSetup configures the index template and lifecycle.
type ESSetup struct {
	Shards          int    `yaml:"es-shards" category:"Elasticsearch" help:"primary shards per index"`
	Replicas        int    `yaml:"es-replicas" category:"Elasticsearch" help:"replicas per shard (0 on a single node)"`
	RefreshInterval string `yaml:"es-refresh-interval" category:"Elasticsearch" help:"how soon indexed flows become searchable (Elasticsearch time: 30s, 1m)"`
	BestCompression bool   `yaml:"es-best-compression" category:"Elasticsearch" help:"store with the best_compression codec (smaller, a little slower to index)"`
	Lifecycle       string `yaml:"es-lifecycle" category:"Elasticsearch" help:"auto (data stream + ILM when the cluster has them, else daily indices), data-stream or daily"`
	RetentionDays   int    `yaml:"es-retention-days" category:"Elasticsearch" help:"ILM deletes data stream indices older than this many days"`
	RolloverSize    string `yaml:"es-rollover-size" category:"Elasticsearch" help:"ILM rolls the data stream over when a primary shard reaches this size"`
	RolloverAge     string `yaml:"es-rollover-age" category:"Elasticsearch" help:"ILM rolls the data stream over at this age"`
}

// EnrichmentConfiguration configures the enrichers: vCenter inventory,
// the networks file and interface names.
type EnrichmentConfiguration struct {
	VCenter VCenterConfiguration `yaml:",inline"`
	// VCenterWait is nil when not given: 10s, or 2m with --pcap.
	VCenterWait    *time.Duration `yaml:"vcenter-wait" default:"10s (with --pcap: 2m)" help:"at startup, wait this long for the first vCenter inventory so the first flows are enriched; the flow ports open after it (0: at once)"`
	Networks       string         `yaml:"networks" env:"SPANFLOW_NETWORKS" file:"true" help:"YAML file mapping CIDRs to name, site, role, project and external (default: private ranges are internal)"`
	InterfaceNames string         `yaml:"interface-names" file:"true" help:"YAML file naming exporters' interfaces: EXPORTER_IP: {IFINDEX: NAME}"`
}

// VCenterConfiguration is the vCenter connection and the project rules;
// `spanflow vsphere inventory` takes the same settings.
type VCenterConfiguration struct {
	URL          string   `yaml:"vcenter-url" env:"SPANFLOW_VCENTER_URL" help:"vCenter to take the inventory from, https://vcenter.example.com (http:// for a simulator); empty: no vCenter enrichment"`
	User         string   `yaml:"vcenter-user" env:"SPANFLOW_VCENTER_USER" help:"vCenter user (a read-only role is enough, see docs/vsphere.md)"`
	PasswordFile string   `yaml:"vcenter-password-file" file:"true" help:"file holding the vCenter password (else SPANFLOW_VCENTER_PASSWORD; there is no password flag, ps would show it)"`
	CAFile       string   `yaml:"vcenter-ca" file:"true" help:"PEM file of the CA that signed vCenter's certificate (default: the system's CAs)"`
	Insecure     bool     `yaml:"vcenter-insecure" help:"do not verify vCenter's certificate (only for tests; prefer --vcenter-ca)"`
	ProjectRules []string `yaml:"project-rule" help:"how a VM's project is named, first answer wins (repeatable): tag:CATEGORY, attribute:NAME, folder:LEVEL (1 = top folder, -1 = the VM's own), portgroup:REGEXP (first capture group)"`
	PortgroupVNI []string `yaml:"portgroup-vni" help:"VNI of an overlay port group, PORTGROUP=VNI (repeatable), to tell apart VMs sharing an address on VXLAN/Geneve segments"`
}

// RollupConfiguration is the real-time rollups (docs/rollups.md): rates
// and TCP health per line, project, VM, service and exporter every tick,
// for alert rules, the spanflow-rollups-* index and metrics.
type RollupConfiguration struct {
	Enabled        bool          `yaml:"rollups" category:"Rollups" help:"roll flows up every tick per line, project, VM, service and exporter (docs/rollups.md)"`
	Tick           time.Duration `yaml:"rollup-tick" category:"Rollups" help:"width of a rollup bucket and how often rollups are published"`
	Delay          time.Duration `yaml:"rollup-delay" category:"Rollups" help:"publish each second this late, so records of long flows (up to the exporters' active timeout) are in; bytes for seconds already published are counted late"`
	IndexInterval  time.Duration `yaml:"rollup-index-interval" category:"Rollups" help:"with the elasticsearch output, index the rollups into spanflow-rollups-* every this often; 0 disables"`
	MaxSeries      int           `yaml:"rollup-max-series" category:"Rollups" help:"series kept per scope; traffic of more keys counts under key \"other\" and in spanflow_rollup_series_overflow_records_total"`
	TopTalkers     int           `yaml:"rollup-top-talkers" category:"Rollups" help:"top talkers listed per line and project (from a Space-Saving sketch of rollup-talker-counters counters)"`
	TalkerCounters int           `yaml:"rollup-talker-counters" category:"Rollups" help:"counters of each line's and project's heavy-hitter sketch: its memory bound"`
	TalkerBudget   int           `yaml:"rollup-talker-budget" category:"Rollups" help:"flow records a second fed one by one to the talker sketches; above it, lighter records are sampled (unbiased: a kept record counts for the ones skipped) so that a flood of new sources costs a bounded time; 0 feeds every record"`
	MetricSeries   int           `yaml:"rollup-metric-series" category:"Rollups" help:"keys per scope with Prometheus series (the heaviest by smoothed bytes per second)"`
	BaselineWindow time.Duration `yaml:"rollup-baseline-window" category:"Rollups" help:"time constant of the slow baseline that the drop detector compares with: how long it takes to learn a series' normal level, and to forget it"`
}

// DefaultConfiguration listens on the standard ports and writes NDJSON to
// standard output.
func DefaultConfiguration() Configuration {
	l, d := listen.DefaultConfiguration(), decoders.DefaultConfiguration()
	n, es := ndjson.DefaultConfiguration(), elasticsearch.DefaultConfiguration()
	s := es.Setup
	rc, ic := rollup.DefaultConfiguration(), rollup.DefaultIndexerConfiguration()
	return Configuration{
		Input: InputConfiguration{
			NetFlowListen:  []string{":2055"},
			IPFIXListen:    []string{":4739"},
			IPFIXTCPListen: []string{":4739"},
			SFlowListen:    []string{":6343"},
			Sockets:        l.Sockets,
			ReceiveBuffer:  l.ReceiveBuffer,
			ReceiveWait:    l.ReceiveWait,
			MaxExporters:   d.MaxExporters,
			MaxTemplates:   d.MaxTemplatesPerExporter,
			MaxHeldSets:    d.MaxPendingPerExporter,
			TemplateWait:   d.PendingTimeout,
			State: StateLimits{MaxDomains: d.MaxDomainsPerExporter, MaxInterfaceNames: d.MaxInterfaceNamesPerExporter,
				MaxInterfaceNameLen: d.MaxInterfaceNameBytes, MaxExporterBytes: d.MaxBytesPerExporter,
				MaxStateBytes: d.MaxBytes, ExporterIdleTimeout: d.ExporterIdleTimeout,
				MaxExporterSeries: pipeline.DefaultConfiguration().MaxExporterSeries},
			Streams: StreamInput{MaxConnections: l.MaxTCPConnections, MaxPerSource: l.MaxTCPConnectionsPerSource,
				IdleTimeout: l.TCPIdleTimeout},
		},
		Outputs: OutputConfiguration{OutputMaxBytes: n.MaxBytes, OutputMaxFiles: n.MaxFiles},
		Elasticsearch: ESConfiguration{
			Connection: ESConnection{Timeout: es.Connection.Timeout},
			Setup: ESSetup{Shards: s.Shards, Replicas: s.Replicas, RefreshInterval: s.RefreshInterval,
				BestCompression: s.BestCompression, Lifecycle: s.Lifecycle, RetentionDays: s.RetentionDays,
				RolloverSize: s.RolloverMaxPrimaryShardSize, RolloverAge: s.RolloverMaxAge},
			RunSetup: es.RunSetup, Gzip: es.Connection.Compress, Workers: es.Workers, FlushBytes: es.FlushBytes,
			FlushInterval: es.FlushInterval, QueueSize: es.QueueSize, SpoolDir: es.SpoolDir,
			SpoolMaxBytes: es.SpoolMaxBytes, DrainTimeout: es.DrainTimeout, DeadLetterMax: es.DeadLetterMaxBytes,
		},
		Kafka:  defaultKafkaOutput(),
		Alerts: defaultAlertConfiguration(),
		Rollups: RollupConfiguration{Enabled: true, Tick: rc.Tick, Delay: rc.Delay, IndexInterval: ic.Interval,
			MaxSeries: rc.MaxSeries, TopTalkers: rc.TopTalkers, TalkerCounters: rc.TalkerCounters, MetricSeries: rc.MetricSeries,
			BaselineWindow: rc.BaselineWindow, TalkerBudget: rc.TalkerBudget},
		UI:            defaultUIConfiguration(),
		MetricsListen: DefaultMetricsListen,
	}
}

// DefaultMetricsListen is where the collector serves its metrics unless
// told otherwise; a replay (--pcap) serves none unless told, so that it can
// run beside the collector service.
const DefaultMetricsListen = "127.0.0.1:9109"

// rollups is the rollup engine's configuration; a capture replay ticks by
// the records' time.
func (c Configuration) rollups() rollup.Configuration {
	rc := rollup.DefaultConfiguration()
	r := c.Rollups
	rc.Tick, rc.Delay, rc.MaxSeries, rc.TopTalkers, rc.TalkerCounters, rc.MetricSeries = r.Tick, r.Delay, r.MaxSeries, r.TopTalkers, r.TalkerCounters, r.MetricSeries
	rc.BaselineWindow, rc.TalkerBudget = r.BaselineWindow, r.TalkerBudget
	rc.EventTime = c.Input.Pcap != ""
	return rc
}

// rollupIndex is the rollups indexer's configuration: the Elasticsearch
// output's connection and index settings.
func (c Configuration) rollupIndex(deps Dependencies) rollup.IndexerConfiguration {
	ic := rollup.DefaultIndexerConfiguration()
	es := c.ElasticsearchOutput()
	ic.Connection, ic.Setup, ic.Interval = es.Connection, es.Setup, c.Rollups.IndexInterval
	if deps.ESTransport != nil {
		ic.Connection.Transport = deps.ESTransport
	}
	return ic
}

// Default waits when a setting is not given.
const (
	DefaultExporterStatsInterval = time.Minute
	DefaultVCenterWait           = 10 * time.Second
	// ReplayVCenterWait: a replay is over in moments, so its flows should
	// all be enriched.
	ReplayVCenterWait = 2 * time.Minute
)

// SettingError is a problem with one setting, named by its key (the flag
// name), so that `collector check` can point at its line.
type SettingError struct {
	Key string
	Err error
}

func (e *SettingError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *SettingError) Unwrap() error { return e.Err }

func settingErr(key string, err error) error {
	if err == nil {
		return nil
	}
	return &SettingError{Key: key, Err: err}
}

// Validate checks every setting and returns each problem (errors.Join of
// SettingErrors). Files named by a setting (networks, interface names) are
// read, so a bad one fails at start.
func (c Configuration) Validate() error {
	var errs []error
	add := func(key string, err error) { errs = append(errs, settingErr(key, err)) }
	in := c.Input
	if _, err := pipeline.ParseAllow(nonEmpty(in.Allow)); err != nil {
		add("allow", err)
	}
	l := c.listen()
	if l.Sockets < 1 {
		add("sockets", fmt.Errorf("must be at least 1, not %d", l.Sockets))
	}
	if l.ReceiveBuffer < 0 {
		add("receive-buffer", errors.New("must not be negative"))
	}
	if l.ReceiveWait < 0 || l.ReceiveWait > time.Second {
		add("receive-wait", fmt.Errorf("must be between 0 and 1s, not %s", l.ReceiveWait))
	}
	for key, addrs := range map[string][]string{"netflow-listen": in.NetFlowListen, "ipfix-listen": in.IPFIXListen,
		"ipfix-tcp-listen": in.IPFIXTCPListen, "ipfix-tls-listen": in.Streams.TLSListen, "sflow-listen": in.SFlowListen} {
		for _, a := range nonEmpty(addrs) {
			add(key, checkListen(a))
		}
	}
	errs = append(errs, c.validateStreams()...)
	errs = append(errs, c.Alerts.validate()...)
	if in.Pcap == "" && len(l.UDP) == 0 && len(l.TCP) == 0 && len(l.TLS) == 0 {
		add("netflow-listen", errors.New("nothing to listen on: give a --*-listen address or --pcap FILE"))
	}
	d := c.decoders()
	for key, v := range map[string]int{"max-exporters": d.MaxExporters, "max-templates": d.MaxTemplatesPerExporter, "max-held-sets": d.MaxPendingPerExporter} {
		if v < 1 {
			add(key, fmt.Errorf("must be at least 1, not %d", v))
		}
	}
	if d.PendingTimeout <= 0 {
		add("template-wait", fmt.Errorf("must be positive, not %s", d.PendingTimeout))
	}
	st, before := in.State, len(errs)
	for key, v := range map[string]int{"max-domains": st.MaxDomains, "max-interface-name-bytes": st.MaxInterfaceNameLen, "max-exporter-series": st.MaxExporterSeries} {
		if v < 1 {
			add(key, fmt.Errorf("must be at least 1, not %d", v))
		}
	}
	if st.MaxInterfaceNames < 0 {
		add("max-interface-names", errors.New("must not be negative"))
	}
	if st.ExporterIdleTimeout < 0 {
		add("exporter-idle-timeout", errors.New("must not be negative"))
	}
	if len(errs) == before && d.MaxExporters > 0 && d.MaxTemplatesPerExporter > 0 && d.PendingTimeout > 0 {
		// What is left to the decoders' own check: the byte bounds.
		if err := d.Validate(); err != nil && st.MaxExporterBytes < st.MaxStateBytes {
			add("max-exporter-bytes", err) // below the size of the largest template
		} else if err != nil {
			add("max-state-bytes", err)
		}
	}
	if in.ExporterStatsInterval != nil && *in.ExporterStatsInterval < 0 {
		add("exporter-stats-interval", errors.New("must not be negative"))
	}
	errs = append(errs, c.validateOutputs()...)
	if err := c.forward().Validate(); err != nil {
		add("forward", err)
	}
	errs = append(errs, c.validateEnrichment()...)
	if c.Rollups.Enabled {
		for _, e := range yamlconf.Unjoin(c.rollups().Validate()) {
			key, msg, _ := strings.Cut(e.Error(), ": ")
			add(key, errors.New(msg))
		}
		if c.Rollups.IndexInterval < 0 {
			add("rollup-index-interval", errors.New("must not be negative"))
		} else if c.Rollups.IndexInterval > 0 && c.Rollups.Tick > 0 && // a tick of 0 is refused above
			c.Rollups.IndexInterval%c.Rollups.Tick != 0 {
			add("rollup-index-interval", fmt.Errorf("must be a multiple of rollup-tick (%s)", c.Rollups.Tick))
		}
	}
	errs = append(errs, c.validateUI()...)
	if a := c.MetricsListen; a != "" {
		add("metrics-listen", checkListen(a))
	}
	return errors.Join(errs...)
}

// checkListen says what is wrong with a listen address, as binding it
// would: [HOST]:PORT with a port from 0 to 65535 and a host that is an
// address or a name that resolves.
func checkListen(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q: want [HOST]:PORT", a)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p > 65535 {
		return fmt.Errorf("%q: port %s: want a number from 0 to 65535", a, port)
	}
	if _, err := netip.ParseAddr(host); host == "" || err == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := net.DefaultResolver.LookupHost(ctx, host); err != nil {
		return fmt.Errorf("%q: host %s is not an address and does not resolve", a, host)
	}
	return nil
}

// validateStreams checks the limits of IPFIX over TCP and TLS, and reads
// the TLS files.
func (c Configuration) validateStreams() []error {
	var errs []error
	add := func(key string, err error) { errs = append(errs, settingErr(key, err)) }
	s, l := c.Input.Streams, c.listen()
	for key, v := range map[string]int{"ipfix-tcp-max-connections": s.MaxConnections, "ipfix-tcp-max-per-source": s.MaxPerSource} {
		if v < 1 {
			add(key, fmt.Errorf("must be at least 1, not %d", v))
		}
	}
	if s.IdleTimeout <= 0 {
		add("ipfix-tcp-idle-timeout", fmt.Errorf("must be positive, not %s", s.IdleTimeout))
	}
	if a, b, ok := listen.SharedPort(l.TCP, l.TLS); ok {
		add("ipfix-tls-listen", fmt.Errorf("%q takes the port of ipfix-tcp-listen %q: give IPFIX over TLS its own port (4740)", b, a))
	}
	if len(l.TLS) == 0 {
		return errs
	}
	keys := map[string]string{"TLSCertFile": "ipfix-tls-cert-file", "TLSKeyFile": "ipfix-tls-key-file", "TLSClientCAFile": "ipfix-tls-client-ca-file"}
	if _, err := l.ServerTLS(); err != nil {
		for _, e := range yamlconf.Unjoin(err) {
			key := "ipfix-tls-cert-file"
			var fe *listen.TLSFileError
			if errors.As(e, &fe) {
				key = keys[fe.Field]
			}
			add(key, e)
		}
	}
	return errs
}

func (c Configuration) validateOutputs() []error {
	var errs []error
	add := func(key string, err error) { errs = append(errs, settingErr(key, err)) }
	es := false
	for _, spec := range c.outputSpecs() {
		kind, arg, _ := strings.Cut(spec, ":")
		o, ok := outputs[kind]
		if !ok {
			add("output", fmt.Errorf("unknown output %q: use one of %s", spec, outputNames()))
			continue
		}
		if o.arg != "" && arg == "" {
			add("output", fmt.Errorf("%q needs %s", spec, o.arg))
		}
		es = es || kind == "elasticsearch"
		if kind == "kafka" {
			errs = append(errs, keyedErrors(c.KafkaOutput().Validate(), "output")...)
		}
	}
	n := ndjson.DefaultConfiguration()
	n.MaxBytes, n.MaxFiles = c.Outputs.OutputMaxBytes, c.Outputs.OutputMaxFiles
	if n.MaxBytes < 0 {
		add("output-max-bytes", errors.New("must not be negative"))
	}
	if n.MaxFiles < 0 {
		add("output-max-files", errors.New("must not be negative"))
	}
	if es {
		o := c.ElasticsearchOutput()
		if err := o.Connection.Validate(); err != nil {
			errs = append(errs, keyedErrors(err, "es-url")...)
		} else if err := o.Validate(); err != nil {
			// The output's errors start with the flag's name.
			key, msg, ok := strings.Cut(err.Error(), ": ")
			if !ok || !strings.HasPrefix(key, "es-") {
				key, msg = "output", err.Error()
			}
			add(key, errors.New(msg))
		}
	}
	return errs
}

func (c Configuration) validateEnrichment() []error {
	var errs []error
	add := func(key string, err error) { errs = append(errs, settingErr(key, err)) }
	e := c.Enrichment
	if e.VCenterWait != nil && *e.VCenterWait < 0 {
		add("vcenter-wait", errors.New("must not be negative"))
	}
	if e.VCenter.URL != "" {
		v, err := c.vsphere()
		if err != nil {
			errs = append(errs, err)
		} else if err := v.Validate(); err != nil {
			errs = append(errs, vcenterErr(err))
		}
	} else if _, err := c.vsphere(); err != nil {
		errs = append(errs, err) // project-rule, portgroup-vni
	}
	// The files' problems, one each: "networks: FILE:LINE: ...".
	for _, err := range yamlconf.Unjoin((networks.Configuration{File: e.Networks}).Validate()) {
		add("networks", err)
	}
	icfg := interfaces.DefaultConfiguration()
	icfg.File = e.InterfaceNames
	for _, err := range yamlconf.Unjoin(icfg.Validate()) {
		add("interface-names", err)
	}
	return errs
}

// outputSpecs are the outputs to build: as given, else elasticsearch when
// an Elasticsearch URL is given, else stdout.
func (c Configuration) outputSpecs() []string {
	specs := nonEmpty(c.Outputs.Output)
	switch {
	case len(specs) > 0:
		return specs
	case len(c.Elasticsearch.Connection.URLs) > 0:
		return []string{"elasticsearch"}
	}
	return []string{"stdout"}
}

func (c Configuration) listen() listen.Configuration {
	l := listen.DefaultConfiguration()
	in := c.Input
	l.UDP = nonEmpty(append(append(append([]string{}, in.NetFlowListen...), in.IPFIXListen...), in.SFlowListen...))
	l.TCP = nonEmpty(in.IPFIXTCPListen)
	l.Sockets, l.ReceiveBuffer, l.ShareWithOtherProcesses = in.Sockets, in.ReceiveBuffer, in.ReusePort
	l.ReusePortGroup, l.ReceiveWait = in.ReusePortGroup, in.ReceiveWait
	// Validate reports a bad --allow.
	l.Allow, _ = pipeline.ParseAllow(nonEmpty(in.Allow))
	s := in.Streams
	l.TLS, l.TLSCertFile, l.TLSKeyFile, l.TLSClientCAFile = nonEmpty(s.TLSListen), s.TLSCertFile, s.TLSKeyFile, s.TLSClientCAFile
	l.MaxTCPConnections, l.MaxTCPConnectionsPerSource, l.TCPIdleTimeout = s.MaxConnections, s.MaxPerSource, s.IdleTimeout
	return l
}

func (c Configuration) decoders() decoders.Configuration {
	d := decoders.DefaultConfiguration()
	d.MaxExporters, d.MaxTemplatesPerExporter = c.Input.MaxExporters, c.Input.MaxTemplates
	d.MaxPendingPerExporter, d.PendingTimeout = c.Input.MaxHeldSets, c.Input.TemplateWait
	st := c.Input.State
	d.MaxDomainsPerExporter, d.MaxInterfaceNamesPerExporter, d.MaxInterfaceNameBytes = st.MaxDomains, st.MaxInterfaceNames, st.MaxInterfaceNameLen
	d.MaxBytesPerExporter, d.MaxBytes, d.ExporterIdleTimeout = st.MaxExporterBytes, st.MaxStateBytes, st.ExporterIdleTimeout
	return d
}

func (c Configuration) pipeline() (pipeline.Configuration, error) {
	p := pipeline.DefaultConfiguration()
	var err error
	if p.Allow, err = pipeline.ParseAllow(nonEmpty(c.Input.Allow)); err != nil {
		return p, err
	}
	p.Decoder = c.decoders()
	p.MaxExporterSeries = c.Input.State.MaxExporterSeries
	p.ExporterStatsInterval = DefaultExporterStatsInterval
	if c.Input.Pcap != "" {
		// Held data expires by capture time, as datagrams are read; a
		// replay's statistics cover the whole capture, written at its end,
		// only when asked for.
		p.ExpireInterval, p.ExporterStatsInterval = 0, 0
	}
	if c.Input.ExporterStatsInterval != nil {
		p.ExporterStatsInterval = *c.Input.ExporterStatsInterval
	}
	return p, nil
}

func (c Configuration) forward() forward.Configuration {
	return forward.Configuration{Targets: nonEmpty(c.Outputs.Forward), Spoof: c.Outputs.ForwardSpoof}
}

// ndjsonFile is the configuration of a file output writing to path.
func (c Configuration) ndjsonFile(path string) ndjson.Configuration {
	n := ndjson.DefaultConfiguration()
	n.Path, n.MaxBytes, n.MaxFiles = path, c.Outputs.OutputMaxBytes, c.Outputs.OutputMaxFiles
	return n
}

// Apply returns base with the connection settings: base holds what has
// no setting (retries, transport).
func (e ESConnection) Apply(base esconn.Configuration) esconn.Configuration {
	if len(e.URLs) > 0 {
		base.URLs = e.URLs
	}
	base.CAFile = e.CAFile
	base.Fingerprint = strings.ReplaceAll(e.Fingerprint, ":", "")
	base.APIKeyFile, base.UserFile, base.PasswordFile = e.APIKeyFile, e.UserFile, e.PasswordFile
	base.CertFile, base.KeyFile, base.AllowInsecureCredentials = e.CertFile, e.KeyFile, e.AllowInsecureCredentials
	base.Timeout = e.Timeout
	return base
}

// Configuration returns the index setup's configuration.
func (s ESSetup) Configuration() setup.Configuration {
	return setup.Configuration{Shards: s.Shards, Replicas: s.Replicas, RefreshInterval: s.RefreshInterval,
		BestCompression: s.BestCompression, Lifecycle: s.Lifecycle, RetentionDays: s.RetentionDays,
		RolloverMaxPrimaryShardSize: s.RolloverSize, RolloverMaxAge: s.RolloverAge}
}

// ElasticsearchOutput is the configuration of the Elasticsearch output.
func (c Configuration) ElasticsearchOutput() elasticsearch.Configuration {
	e := c.Elasticsearch
	o := elasticsearch.DefaultConfiguration()
	o.Connection = e.Connection.Apply(o.Connection)
	o.Connection.Compress = e.Gzip
	o.Setup = e.Setup.Configuration()
	o.RunSetup, o.Workers, o.FlushBytes, o.FlushInterval = e.RunSetup, e.Workers, e.FlushBytes, e.FlushInterval
	o.QueueSize, o.SpoolDir, o.SpoolMaxBytes = e.QueueSize, e.SpoolDir, e.SpoolMaxBytes
	o.DeadLetterFile, o.DrainTimeout, o.DeadLetterMaxBytes = e.DeadLetterFile, e.DrainTimeout, e.DeadLetterMax
	return o
}

// VSphere returns the vCenter enricher's configuration, with the password
// read from its file or SPANFLOW_VCENTER_PASSWORD; ok is false when no
// vCenter URL is given.
func (v VCenterConfiguration) VSphere() (cfg vsphere.Configuration, ok bool, err error) {
	cfg = vsphere.DefaultConfiguration()
	// The rules and VNIs are read even without a URL: a mistake in them is
	// said now, not on the day a vCenter is added.
	cfg.ProjectRules = nonEmpty(v.ProjectRules)
	for _, s := range cfg.ProjectRules {
		if _, err := vsphere.ParseProjectRule(s); err != nil {
			return cfg, false, settingErr("project-rule", err)
		}
	}
	for _, s := range nonEmpty(v.PortgroupVNI) {
		name, val, found := strings.Cut(s, "=")
		vni, perr := strconv.ParseUint(val, 10, 24)
		if !found || name == "" || perr != nil {
			return cfg, false, settingErr("portgroup-vni", fmt.Errorf("%q: want PORTGROUP=VNI with VNI below 2^24", s))
		}
		if cfg.VNIs == nil {
			cfg.VNIs = map[string]uint32{}
		}
		cfg.VNIs[name] = uint32(vni)
	}
	if v.URL == "" {
		return cfg, false, nil
	}
	cfg.URL, cfg.User, cfg.CAFile, cfg.Insecure = v.URL, v.User, v.CAFile, v.Insecure
	if cfg.Password, err = secret.Read(v.PasswordFile, "SPANFLOW_VCENTER_PASSWORD"); err != nil {
		return cfg, false, settingErr("vcenter-password-file", err)
	}
	if cfg.Password == "" {
		return cfg, false, settingErr("vcenter-password-file", errors.New("no vcenter password: set SPANFLOW_VCENTER_PASSWORD or --vcenter-password-file"))
	}
	return cfg, true, vcenterErr(cfg.Validate())
}

// vcenterErr keys a problem of the vCenter configuration by its setting.
func vcenterErr(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for prefix, key := range map[string]string{"vcenter CA file": "vcenter-ca", "vcenter user": "vcenter-user",
		"vcenter: give either a CA file or insecure": "vcenter-insecure", "project rule": "project-rule"} {
		if strings.HasPrefix(msg, prefix) {
			return settingErr(key, err)
		}
	}
	return settingErr("vcenter-url", err)
}

// vsphere is VSphere with the start wait of a run or a replay.
func (c Configuration) vsphere() (vsphere.Configuration, error) {
	cfg, _, err := c.Enrichment.VCenter.VSphere()
	cfg.StartWait = DefaultVCenterWait
	if c.Input.Pcap != "" {
		cfg.StartWait = ReplayVCenterWait
	}
	if w := c.Enrichment.VCenterWait; w != nil {
		cfg.StartWait = *w
	}
	return cfg, err
}

// nonEmpty drops blank values: a flag given as "" disables a default list.
func nonEmpty(vals []string) []string {
	var out []string
	for _, v := range vals {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// LoadFile reads a YAML configuration over c. Unknown keys, values of the
// wrong type and bad YAML are errors, every one with its line.
func (c *Configuration) LoadFile(path string) error {
	return yamlconf.Load(path, c)
}

// Check returns every problem of a configuration file, one line each, in
// the order of the file, with the line of the key at fault: keys unknown
// or of the wrong type, then what Validate says of the keys that decoded.
func Check(path string) []string {
	cfg := DefaultConfiguration()
	return checkFile(path, cfg.LoadFile, func() error { return cfg.Validate() })
}

// checkFile loads path with load, then reports the problems of the keys
// that decoded as validate finds them, each with its key's line.
func checkFile(path string, load func(string) error, validate func() error) []string {
	err := load(path)
	var ye *yamlconf.Error
	if err != nil && !errors.As(err, &ye) {
		// Unreadable, or not YAML: nothing was decoded.
		return []string{strings.TrimPrefix(err.Error(), "configuration "+path+": ")}
	}
	lines, _ := yamlconf.KeyLines(path)
	type problem struct {
		line int
		text string
	}
	var problems []problem
	for _, e := range yamlconf.Unjoin(err) {
		line := 0
		if errors.As(e, &ye) {
			line = ye.Line
		}
		problems = append(problems, problem{line, e.Error()})
	}
	for _, e := range yamlconf.Unjoin(validate()) {
		var se *SettingError
		if errors.As(e, &se) {
			if n, ok := lines[se.Key]; ok {
				problems = append(problems, problem{n, fmt.Sprintf("line %d: %s", n, se.Error())})
				continue
			}
		}
		problems = append(problems, problem{1 << 30, e.Error()})
	}
	sort.SliceStable(problems, func(i, j int) bool { return problems[i].line < problems[j].line })
	out := make([]string, len(problems))
	for i, p := range problems {
		out[i] = p.text
	}
	return out
}
