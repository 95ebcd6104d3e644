package collector

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spanflow/spanflow/collector/indexer"
	"github.com/spanflow/spanflow/collector/output/elasticsearch"
	"github.com/spanflow/spanflow/collector/output/kafka"
	"github.com/spanflow/spanflow/collector/output/ndjson"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/kafkaconn"
	"github.com/spanflow/spanflow/internal/lifecycle"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/yamlconf"
)

// KafkaConnection says how both roles of the scale-out path reach Kafka:
// the collector's kafka output and `spanflow indexer run`. Secrets come
// from files or the environment, never from values.
type KafkaConnection struct {
	Brokers      []string      `yaml:"kafka-brokers" category:"Kafka" help:"bootstrap broker HOST:PORT (repeatable)"`
	Topic        string        `yaml:"kafka-topic" category:"Kafka" help:"base name of the flow topic; the version of the record encoding is appended (spanflow-flows-v1), so collectors and indexers of different encodings never share a topic"`
	TLS          bool          `yaml:"kafka-tls" category:"Kafka" help:"connect to the brokers over TLS"`
	CAFile       string        `yaml:"kafka-ca-file" category:"Kafka" file:"true" help:"PEM file of the CA that signed the brokers' certificates (default: the system's CAs); needs --kafka-tls"`
	CertFile     string        `yaml:"kafka-cert-file" category:"Kafka" file:"true" help:"PEM client certificate, for brokers that authenticate clients by certificate (with --kafka-key-file); needs --kafka-tls"`
	KeyFile      string        `yaml:"kafka-key-file" category:"Kafka" file:"true" help:"PEM key of the client certificate"`
	SASL         string        `yaml:"kafka-sasl" category:"Kafka" help:"SASL mechanism: plain, scram-sha-256 or scram-sha-512 (\"\": none)"`
	UserFile     string        `yaml:"kafka-user-file" category:"Kafka" file:"true" help:"file holding the SASL user; default: $SPANFLOW_KAFKA_USER"`
	PasswordFile string        `yaml:"kafka-password-file" category:"Kafka" file:"true" help:"file holding the SASL password; default: $SPANFLOW_KAFKA_PASSWORD"`
	DialTimeout  time.Duration `yaml:"kafka-dial-timeout" category:"Kafka" help:"bound of one connection attempt to a broker"`
}

// KafkaOutput is the collector's kafka output: it publishes every flow
// record to the topic for the indexers (docs/scale-out.md).
type KafkaOutput struct {
	Connection          KafkaConnection `yaml:",inline"`
	MaxBufferedMessages int             `yaml:"kafka-max-buffered-messages" category:"Kafka" help:"messages (one per exporter per decoded datagram) waiting for the brokers; more are dropped and counted (spanflow_kafka_output_records_total{result=\"buffer_full\"})"`
	MaxBufferedBytes    int             `yaml:"kafka-max-buffered-bytes" category:"Kafka" help:"bytes of the messages waiting for the brokers; more are dropped and counted"`
	Linger              time.Duration   `yaml:"kafka-linger" category:"Kafka" help:"how long a partition's batch waits for more messages"`
	Compression         string          `yaml:"kafka-compression" category:"Kafka" help:"batch compression: none, lz4, zstd, snappy or gzip"`
	DeliveryTimeout     time.Duration   `yaml:"kafka-delivery-timeout" category:"Kafka" help:"drop (and count) a message the brokers have not taken within this; 0: keep it while it fits in the buffer"`
	Partitions          int             `yaml:"kafka-partitions" category:"Kafka" help:"create the topic with this many partitions when it does not exist, trying from start until it does (0: never create it, wait for it)"`
	Replicas            int             `yaml:"kafka-replicas" category:"Kafka" help:"replication factor of a topic the collector creates"`
	DrainTimeout        time.Duration   `yaml:"kafka-drain-timeout" category:"Kafka" help:"at stop, how long to wait for the brokers to take what is buffered"`
}

func defaultKafkaConnection() KafkaConnection {
	k := kafkaconn.DefaultConfiguration()
	return KafkaConnection{Brokers: k.Brokers, Topic: k.Topic, DialTimeout: k.DialTimeout}
}

func defaultKafkaOutput() KafkaOutput {
	k := kafka.DefaultConfiguration()
	return KafkaOutput{Connection: defaultKafkaConnection(), MaxBufferedMessages: k.MaxBufferedRecords, MaxBufferedBytes: k.MaxBufferedBytes,
		Linger: k.Linger, Compression: k.Compression, DeliveryTimeout: k.DeliveryTimeout, Partitions: k.CreatePartitions,
		Replicas: k.CreateReplicas, DrainTimeout: k.DrainTimeout}
}

// Configuration is the client configuration.
func (k KafkaConnection) Configuration() kafkaconn.Configuration {
	return kafkaconn.Configuration{Brokers: nonEmpty(k.Brokers), Topic: k.Topic, TLS: k.TLS, CAFile: k.CAFile, CertFile: k.CertFile,
		KeyFile: k.KeyFile, SASL: k.SASL, UserFile: k.UserFile, PasswordFile: k.PasswordFile, DialTimeout: k.DialTimeout}
}

// KafkaOutput is the configuration of the kafka output.
func (c Configuration) KafkaOutput() kafka.Configuration {
	k := c.Kafka
	o := kafka.DefaultConfiguration()
	o.Connection = k.Connection.Configuration()
	o.MaxBufferedRecords, o.MaxBufferedBytes, o.Linger, o.Compression = k.MaxBufferedMessages, k.MaxBufferedBytes, k.Linger, k.Compression
	o.DeliveryTimeout, o.CreatePartitions, o.CreateReplicas, o.DrainTimeout = k.DeliveryTimeout, k.Partitions, k.Replicas, k.DrainTimeout
	return o
}

// keyedError turns an error whose message starts with a flag's name
// ("kafka-...: ") into SettingErrors.
func keyedErrors(err error, fallback string) []error {
	var errs []error
	for _, e := range yamlconf.Unjoin(err) {
		key, msg, ok := strings.Cut(e.Error(), ": ")
		if !ok || !(strings.HasPrefix(key, "kafka-") || strings.HasPrefix(key, "es-")) || strings.ContainsAny(key, " ,") {
			key, msg = fallback, e.Error()
		}
		errs = append(errs, settingErr(key, errors.New(msg)))
	}
	return errs
}

// IndexerConfiguration is every setting of `spanflow indexer run`: the
// Kafka consumer group, the enrichers and the outputs, as a flat file like
// the collector's.
type IndexerConfiguration struct {
	Kafka          KafkaConnection         `yaml:",inline"`
	Consumer       KafkaConsumer           `yaml:",inline"`
	Output         []string                `yaml:"output" help:"where documents go: elasticsearch (--es-url; the default), stdout (NDJSON), file:PATH (NDJSON, rotated by size); repeatable. Kafka offsets are committed once every output has the batch"`
	OutputMaxBytes int64                   `yaml:"output-max-bytes" help:"rotate a file output when it would grow past this many bytes (0: never); only a regular file is rotated, never a device or a FIFO such as /dev/null"`
	OutputMaxFiles int                     `yaml:"output-max-files" help:"rotated files kept besides the current one (PATH.1 ... PATH.N)"`
	Elasticsearch  ESConfiguration         `yaml:",inline"`
	Enrichment     EnrichmentConfiguration `yaml:",inline"`
	MetricsListen  string                  `yaml:"metrics-listen" help:"serve Prometheus metrics (consumer lag included) at http://ADDR/metrics; \"\" disables"`
}

// KafkaConsumer are the consumer group's settings.
type KafkaConsumer struct {
	Group           string        `yaml:"kafka-group" category:"Kafka" help:"consumer group the indexers share: each partition is consumed by one of them"`
	MaxPollMessages int           `yaml:"kafka-max-poll-messages" category:"Kafka" help:"messages per batch (tens of flows each): the unit that is indexed, then committed"`
	FetchMaxBytes   int           `yaml:"kafka-fetch-max-bytes" category:"Kafka" help:"bound of one fetch from the brokers, in bytes: the consumer's buffer (1 MiB to 100 MiB)"`
	SessionTimeout  time.Duration `yaml:"kafka-session-timeout" category:"Kafka" help:"how long the group waits for a silent indexer (a killed process) before its partitions go to the others (6s at least)"`
	DrainTimeout    time.Duration `yaml:"kafka-drain-timeout" category:"Kafka" help:"at stop, how long to wait for the batch in hand to be indexed and committed; past it the batch is replayed by the partitions' next holder"`
}

// DefaultIndexerSpoolDir is the indexer's --es-spool-dir: it holds its
// dead-letter file, and differs from the collector's so that both run on
// one host with their defaults.
const DefaultIndexerSpoolDir = "/var/lib/spanflow/indexer-es-spool"

// DefaultIndexerConfiguration consumes from a broker on this machine and
// indexes into Elasticsearch, with the enrichment defaults of the
// collector.
func DefaultIndexerConfiguration() IndexerConfiguration {
	c, ic := DefaultConfiguration(), indexer.DefaultConfiguration()
	// A directory of its own: a spool directory is one process's at a
	// time, and an indexer often runs beside a collector.
	c.Elasticsearch.SpoolDir = DefaultIndexerSpoolDir
	return IndexerConfiguration{
		Kafka: defaultKafkaConnection(),
		Consumer: KafkaConsumer{Group: ic.Group, MaxPollMessages: ic.MaxPollMessages, FetchMaxBytes: ic.FetchMaxBytes,
			SessionTimeout: ic.SessionTimeout, DrainTimeout: ic.DrainTimeout},
		OutputMaxBytes: c.Outputs.OutputMaxBytes,
		OutputMaxFiles: c.Outputs.OutputMaxFiles,
		Elasticsearch:  c.Elasticsearch,
		Enrichment:     c.Enrichment,
		MetricsListen:  "127.0.0.1:9110",
	}
}

// LoadFile reads a YAML configuration over c.
func (c *IndexerConfiguration) LoadFile(path string) error { return yamlconf.Load(path, c) }

// outputSpecs are the outputs: as given, else elasticsearch.
func (c IndexerConfiguration) outputSpecs() []string {
	if specs := nonEmpty(c.Output); len(specs) > 0 {
		return specs
	}
	return []string{"elasticsearch"}
}

// collector is the collector configuration holding the indexer's
// enrichment and output settings, to build them the same way.
func (c IndexerConfiguration) collector() Configuration {
	cfg := DefaultConfiguration()
	cfg.Outputs.Output = c.outputSpecs()
	cfg.Outputs.OutputMaxBytes, cfg.Outputs.OutputMaxFiles = c.OutputMaxBytes, c.OutputMaxFiles
	cfg.Elasticsearch, cfg.Enrichment = c.Elasticsearch, c.Enrichment
	return cfg
}

// Indexer is the configuration of the consumer.
func (c IndexerConfiguration) Indexer() indexer.Configuration {
	ic := indexer.DefaultConfiguration()
	ic.Connection = c.Kafka.Configuration()
	k := c.Consumer
	ic.Group, ic.MaxPollMessages, ic.FetchMaxBytes, ic.SessionTimeout, ic.DrainTimeout = k.Group, k.MaxPollMessages, k.FetchMaxBytes, k.SessionTimeout, k.DrainTimeout
	return ic
}

// Validate checks every setting (errors.Join of SettingErrors).
func (c IndexerConfiguration) Validate() error {
	var errs []error
	add := func(key string, err error) { errs = append(errs, settingErr(key, err)) }
	errs = append(errs, keyedErrors(c.Indexer().Validate(), "kafka-brokers")...)
	for _, spec := range c.outputSpecs() {
		kind, _, _ := strings.Cut(spec, ":")
		if !slices.Contains([]string{"elasticsearch", "stdout", "file"}, kind) {
			add("output", fmt.Errorf("%q: an indexer writes to elasticsearch, stdout or file:PATH", spec))
		}
	}
	cfg := c.collector()
	errs = append(errs, cfg.validateOutputs()...)
	errs = append(errs, cfg.validateEnrichment()...)
	if a := c.MetricsListen; a != "" && !strings.Contains(a, ":") {
		add("metrics-listen", fmt.Errorf("%q: want HOST:PORT", a))
	}
	return errors.Join(errs...)
}

// CheckIndexer returns every problem of an indexer configuration file, one
// line each, with the line of the key at fault.
func CheckIndexer(path string) []string {
	cfg := DefaultIndexerConfiguration()
	return checkFile(path, cfg.LoadFile, func() error { return cfg.Validate() })
}

// Indexer is the indexer role: a Kafka consumer group member that
// enriches and indexes what the collectors published.
type Indexer struct {
	group      lifecycle.Group
	components []lifecycle.Component
	consumer   *indexer.Indexer
}

// Reopen opens the NDJSON output files again (after logrotate moved them
// away), and says how many outputs it reopened.
func (ix *Indexer) Reopen() (int, error) { return reopen(ix.components) }

// NewIndexer builds the indexer's components; nothing runs before Start.
func NewIndexer(r *reporter.Reporter, cfg IndexerConfiguration, deps Dependencies) (*Indexer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ix := &Indexer{}
	if cfg.MetricsListen != "" {
		ix.components = append(ix.components, reporter.NewMetricsServer(r, cfg.MetricsListen))
	}
	ccfg := cfg.collector()
	var ideps indexer.Dependencies
	for _, spec := range cfg.outputSpecs() {
		kind, arg, _ := strings.Cut(spec, ":")
		o, err := outputs[kind].build(r.Sub("output "+kind), ccfg, deps, arg)
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", spec, err)
		}
		ix.components = append(ix.components, o)
		var sink indexer.Sink
		switch o := o.(type) {
		case *elasticsearch.Output:
			sink = indexer.SinkFunc(o.IndexNow)
		case *ndjson.Output:
			sink = indexer.WriterSink(o)
		default:
			return nil, fmt.Errorf("output %s: not available in the indexer", spec)
		}
		ideps.Sinks = append(ideps.Sinks, indexer.NamedSink{Name: spec, Sink: sink})
	}
	enr, err := NewEnrichers(r, ccfg)
	if err != nil {
		return nil, err
	}
	ix.components = append(ix.components, enr.Components...)
	ideps.Enrichers = enr.Chain
	if ix.consumer, err = indexer.New(r, cfg.Indexer(), ideps); err != nil {
		return nil, err
	}
	ix.components = append(ix.components, ix.consumer)
	return ix, nil
}

// Start starts the metrics, the outputs, the enrichers, then the consumer.
func (ix *Indexer) Start() error { return ix.group.Start(ix.components...) }

// Stop stops the consumer first (its batch in hand is indexed and
// committed within the drain timeout), the outputs last.
func (ix *Indexer) Stop() error { return ix.group.Stop() }

// Topic is the topic consumed.
func (ix *Indexer) Topic() string { return ix.consumer.Topic() }

// Failed receives the error of an output that failed for good; the
// indexer consumes nothing more and must be stopped.
func (ix *Indexer) Failed() <-chan error { return ix.consumer.Failed() }

var _ flow.Sink = (*kafka.Output)(nil)
