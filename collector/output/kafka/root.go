// Package kafka is the collector output that publishes every flow record to
// Kafka for the indexers (`spanflow indexer run`), the scale-out path:
//
//	collector pipeline ─▶ Write (wire encoding, one message per exporter's
//	run of records, keyed by the exporter) ─▶ franz-go's bounded buffer ─▶ brokers
//
// Keying by the exporter's address keeps one exporter's records in order on
// one partition. The buffer is bounded (--kafka-max-buffered-*): while the
// brokers are away, or the topic is not there yet, records wait in it, and
// what does not fit is dropped and counted, never held without limit. The producer is idempotent (franz-go's
// default with acks=all), so its retries do not duplicate messages; the
// indexers' deterministic document ids make any replay a no-op.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/kafkaconn"
	"github.com/spanflow/spanflow/internal/lifecycle"
	"github.com/spanflow/spanflow/internal/reporter"
)

// Configuration of the Kafka output.
type Configuration struct {
	Connection kafkaconn.Configuration
	// MaxBufferedRecords and MaxBufferedBytes bound what waits for the
	// brokers: Kafka messages (one per exporter per decoded datagram, tens
	// of flows each) and their bytes.
	MaxBufferedRecords int
	MaxBufferedBytes   int
	// Linger is how long a partition's batch waits for more messages.
	Linger time.Duration
	// Compression is none, lz4, zstd, snappy or gzip.
	Compression string
	// DeliveryTimeout drops (and counts) a message not accepted by the
	// brokers within it; 0 keeps retrying while it fits in the buffer.
	DeliveryTimeout time.Duration
	// CreatePartitions, when positive, creates the topic with that many
	// partitions at start if it does not exist (replication
	// CreateReplicas).
	CreatePartitions int
	CreateReplicas   int
	// DrainTimeout bounds, at stop, the wait for the buffered messages.
	DrainTimeout time.Duration
}

// DefaultConfiguration bounds the buffer to 64 MiB.
func DefaultConfiguration() Configuration {
	return Configuration{
		Connection:         kafkaconn.DefaultConfiguration(),
		MaxBufferedRecords: 100_000,
		MaxBufferedBytes:   64 << 20,
		Linger:             5 * time.Millisecond,
		Compression:        "lz4",
		CreatePartitions:   8,
		CreateReplicas:     1,
		DrainTimeout:       10 * time.Second,
	}
}

// Validate checks the configuration; the messages start with the flag's name.
func (c Configuration) Validate() error {
	errs := []error{c.Connection.Validate()}
	if c.MaxBufferedRecords < 1 {
		errs = append(errs, fmt.Errorf("kafka-max-buffered-messages: must be at least 1, not %d", c.MaxBufferedRecords))
	}
	if c.MaxBufferedBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("kafka-max-buffered-bytes: must be at least 1 MiB, not %d", c.MaxBufferedBytes))
	}
	if _, err := codec(c.Compression); err != nil {
		errs = append(errs, err)
	}
	if c.Linger < 0 || c.DeliveryTimeout < 0 || c.DrainTimeout < 0 {
		errs = append(errs, errors.New("kafka-linger, kafka-delivery-timeout, kafka-drain-timeout: must not be negative"))
	}
	if c.CreatePartitions < 0 {
		errs = append(errs, fmt.Errorf("kafka-partitions: must not be negative, not %d", c.CreatePartitions))
	}
	if c.CreateReplicas < 1 || c.CreateReplicas > 32767 {
		errs = append(errs, fmt.Errorf("kafka-replicas: must be from 1 to 32767, not %d", c.CreateReplicas))
	}
	return errors.Join(errs...)
}

func codec(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "none":
		return kgo.NoCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	}
	return kgo.NoCompression(), fmt.Errorf("kafka-compression: %q: use none, lz4, zstd, snappy or gzip", name)
}

// Output publishes records to Kafka: a flow.Sink and a lifecycle.Component.
type Output struct {
	r       *reporter.Reporter
	limited *reporter.Limited
	cfg     Configuration
	topic   string
	client  *kgo.Client
	ctx     context.Context // cancelled at the end of Stop: aborts what is still buffered
	cancel  context.CancelFunc
	mu      sync.RWMutex // Write shares it; Stop takes it to refuse later writes
	stopped bool
	wg      sync.WaitGroup // ensureTopic

	topicReady atomic.Bool // ensureTopic found or created the topic

	// A topic deleted and created again: franz-go keeps the first
	// instance's id and fails its records with UNKNOWN_TOPIC_ID until the
	// topic is purged from the client; purging fails what it held. Those
	// records are parked here (bounded) and produced again after the purge.
	parkMu  sync.Mutex
	parked  []parkedMsg
	parkedN int64         // records in parked
	purge   chan struct{} // a record met the new instance: purge, then produce the parked
	knownID [16]byte      // the instance of the topic produced to (ensureTopic's goroutine only)

	records  *prometheus.CounterVec // by result: sent (acknowledged), dropped reasons
	sent     prometheus.Counter
	messages prometheus.Counter
	inFlight atomic.Int64 // records handed to the client and not settled
}

var (
	_ flow.Sink           = (*Output)(nil)
	_ lifecycle.Component = (*Output)(nil)
)

// New returns the output; Start connects.
func New(r *reporter.Reporter, cfg Configuration) (*Output, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r = r.Sub("kafka")
	o := &Output{r: r, limited: reporter.NewLimited(r.Log, 10*time.Second), cfg: cfg, topic: cfg.Connection.TopicName()}
	o.ctx, o.cancel = context.WithCancel(context.Background())
	o.purge = make(chan struct{}, 1)
	f := r.Factory("kafka_output")
	o.records = f.CounterVec("records_total",
		"Flow records by outcome: sent (acknowledged by the brokers), buffer_full (dropped: the bounded buffer was full, the brokers too slow or away), delivery_failed (dropped: refused by the brokers, or not accepted within kafka-delivery-timeout), stopped (dropped: still buffered when the drain timeout ended the stop).",
		"result")
	for _, res := range []string{"sent", "buffer_full", "delivery_failed", "stopped"} {
		o.records.WithLabelValues(res)
	}
	o.sent = o.records.WithLabelValues("sent")
	o.messages = f.Counter("messages_total", "Kafka messages produced (one per exporter per batch of records), acknowledged or not.")
	f.GaugeFunc("buffered_messages", "Kafka messages waiting for the brokers' acknowledgement.", func() float64 {
		if o.client == nil {
			return 0
		}
		return float64(o.client.BufferedProduceRecords())
	})
	f.GaugeFunc("topic_ready", "1 once the topic is found or created; until then records wait in the buffer and the output keeps trying.", func() float64 {
		if o.topicReady.Load() {
			return 1
		}
		return 0
	})
	f.GaugeFunc("buffered_records", "Flow records waiting for the brokers' acknowledgement.", func() float64 {
		return float64(o.inFlight.Load())
	})
	return o, nil
}

// Name names the component in lifecycle errors.
func (o *Output) Name() string { return "Kafka output" }

// Topic is the topic records go to.
func (o *Output) Topic() string { return o.topic }

// Start builds the client and makes sure of the topic in the background.
// Unreachable brokers and a topic not there yet are not errors: records
// wait in the bounded buffer.
func (o *Output) Start() error {
	opts, err := o.cfg.Connection.Options()
	if err != nil {
		return err
	}
	comp, _ := codec(o.cfg.Compression)
	opts = append(opts,
		kgo.DefaultProduceTopic(o.topic),
		kgo.MaxBufferedRecords(o.cfg.MaxBufferedRecords),
		kgo.MaxBufferedBytes(o.cfg.MaxBufferedBytes),
		kgo.ProducerLinger(o.cfg.Linger),
		kgo.ProducerBatchCompression(comp),
		// murmur2 of the key, as the Java client: one exporter, one partition.
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		// By default franz-go fails a topic's records after 4 metadata
		// refreshes that do not know it: with the brokers back before
		// the topic was created, every record was lost. They wait in the
		// buffer instead, for ensureTopic or the operator to create it,
		// or for a topic just created to reach every broker's metadata.
		kgo.UnknownTopicRetries(-1),
	)
	if o.cfg.DeliveryTimeout > 0 {
		opts = append(opts, kgo.RecordDeliveryTimeout(o.cfg.DeliveryTimeout))
	}
	if o.client, err = kgo.NewClient(opts...); err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	o.wg.Add(1)
	go o.ensureTopic()
	o.r.Log.Info("publishing flow records", "brokers", o.cfg.Connection.Brokers, "topic", o.topic)
	return nil
}

// ensureTopic makes sure the topic exists, creating it when
// CreatePartitions is positive, and tries again (1 s, doubling to 30 s)
// until it does: franz-go does not create topics, and the brokers may be
// away at start.
func (o *Output) ensureTopic() {
	defer o.wg.Done()
	why := "creating it failed"
	if o.cfg.CreatePartitions == 0 {
		why = "it does not exist, and kafka-partitions is 0: create it"
	}
	failed, gone := false, false
	for backoff := time.Second; ; backoff = min(2*backoff, 30*time.Second) {
		ctx, cancel := context.WithTimeout(o.ctx, 15*time.Second)
		var err error
		if o.cfg.CreatePartitions > 0 {
			err = kafkaconn.EnsureTopic(ctx, o.client, o.topic, int32(o.cfg.CreatePartitions), int16(o.cfg.CreateReplicas))
		} else {
			err = kafkaconn.CheckTopic(ctx, o.client, o.topic)
		}
		cancel()
		if err == nil {
			o.topicReady.Store(true)
			changed := o.adoptID(o.lookUpID())
			if failed {
				o.r.Log.Info("Kafka topic ready: the records held for it are being delivered", "topic", o.topic)
				if gone && changed {
					o.purgeAndReplay()
				}
				o.client.ForceMetadataRefresh()
			}
			if !o.watchTopic() {
				return
			}
			failed, gone, backoff = true, true, time.Second/2 // doubled to 1 s by the loop
			continue
		}
		if o.ctx.Err() != nil {
			return
		}
		failed = true
		o.limited.Warn("topic", "Kafka topic not ready ("+why+"): records wait in the bounded buffer, the rest are dropped as buffer_full; trying again",
			"topic", o.topic, "brokers", o.cfg.Connection.Brokers, "retry_in", backoff, "err", err)
		select {
		case <-o.ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

// topicCheckEvery is how often a ready topic is looked up again.
var topicCheckEvery = 30 * time.Second

// watchTopic looks the topic up every topicCheckEvery until the output
// stops (false) or the brokers say that it is gone (true): deleted by an
// operator or a retention tool. franz-go then holds its records without
// end, so they would wait, and then be dropped as buffer_full, until a
// restart; ensureTopic creates it again instead (or, with
// kafka-partitions 0, says that it must be). A lookup that fails otherwise
// (brokers away) changes nothing.
//
// A topic deleted and created again by someone else between two lookups
// has a new id: franz-go, which keeps producing to the first instance,
// holds or refuses every record until the topic is purged from the client,
// and purgeAndReplay does that. A record refused by the new instance
// wakes the lookup through o.purge.
func (o *Output) watchTopic() bool {
	missing := 0
	for {
		wait := topicCheckEvery
		if missing > 0 {
			wait = 2 * time.Second
		}
		select {
		case <-o.ctx.Done():
			return false
		case <-time.After(wait):
		case <-o.purge:
		}
		ctx, cancel := context.WithTimeout(o.ctx, 15*time.Second)
		id, err := kafkaconn.TopicID(ctx, o.client, o.topic)
		cancel()
		switch {
		case errors.Is(err, kerr.UnknownTopicOrPartition):
			// A topic just created may not be in every broker's metadata
			// yet: it is gone when three lookups two seconds apart say so.
			if missing++; missing < 3 {
				continue
			}
			o.topicReady.Store(false)
			o.r.Log.Warn("Kafka topic is gone (deleted?): records wait in the bounded buffer until it is there again", "topic", o.topic, "creating", o.cfg.CreatePartitions > 0)
			return true
		case err == nil:
			missing = 0
			if changed := o.adoptID(id); changed || o.parkedCount() > 0 {
				if changed {
					o.r.Log.Warn("Kafka topic was deleted and created again: producing to the new one", "topic", o.topic)
				}
				o.purgeAndReplay()
			}
		}
	}
}

// lookUpID returns the topic's id, zero when it cannot be had.
func (o *Output) lookUpID() [16]byte {
	ctx, cancel := context.WithTimeout(o.ctx, 15*time.Second)
	defer cancel()
	id, _ := kafkaconn.TopicID(ctx, o.client, o.topic)
	return id
}

// adoptID records the topic's id (zero: not known, kept as it was) and
// says whether it is another instance's than the one produced to.
func (o *Output) adoptID(id [16]byte) (changed bool) {
	if id == ([16]byte{}) {
		return false
	}
	changed = o.knownID != ([16]byte{}) && id != o.knownID
	o.knownID = id
	return changed
}

// parkedCount is how many messages wait for purgeAndReplay.
func (o *Output) parkedCount() int {
	o.parkMu.Lock()
	defer o.parkMu.Unlock()
	return len(o.parked)
}

// signalPurge wakes watchTopic, at most once until it looks.
func (o *Output) signalPurge() {
	select {
	case o.purge <- struct{}{}:
	default:
	}
}

// purgeAndReplay makes the client forget the topic's first instance, so
// that it produces to the one there now, and produces again the records
// that the old instance refused or the purge failed.
func (o *Output) purgeAndReplay() {
	o.client.PurgeTopicsFromClient(o.topic)
	// The purge fails what the client held through the promises, which
	// park it: give them a moment to run before taking the parked.
	time.Sleep(100 * time.Millisecond)
	o.parkMu.Lock()
	recs := o.parked
	o.parked, o.parkedN = nil, 0
	o.parkMu.Unlock()
	for _, p := range recs {
		o.client.TryProduce(o.ctx, p.msg, o.promise(p.n))
	}
}

// parkedMsg is a message waiting for purgeAndReplay, and its record count.
type parkedMsg struct {
	msg *kgo.Record
	n   int64
}

// maxParked bounds the records parked while a topic's new instance is
// adopted (the buffer's own bound, in messages).
func (o *Output) maxParked() int { return o.cfg.MaxBufferedRecords }

// park keeps a message the old instance of the topic refused, for
// purgeAndReplay; false when the bound is reached or the output stops.
func (o *Output) park(msg *kgo.Record, n int64) bool {
	if o.ctx.Err() != nil {
		return false
	}
	o.parkMu.Lock()
	ok := len(o.parked) < o.maxParked()
	if ok {
		o.parked = append(o.parked, parkedMsg{msg, n})
		o.parkedN += n
	}
	o.parkMu.Unlock()
	if ok {
		o.signalPurge()
	}
	return ok
}

// errPurgedText is the text of franz-go's (unexported) error for what a
// purge failed.
const errPurgedText = "topic purged while buffered"

// refusedByNewInstance says a record failed because the topic was deleted
// and created again: the client knew its first instance.
func refusedByNewInstance(err error) bool {
	return errors.Is(err, kerr.UnknownTopicID) || err.Error() == errPurgedText
}

// Write publishes the records, one message per run of records of one
// exporter, and never waits: a full buffer drops the message and counts its
// records.
func (o *Output) Write(records []flow.Record) error {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.stopped || o.client == nil {
		return errors.New("Kafka output is not running")
	}
	for len(records) > 0 {
		n := 1
		for n < len(records) && records[n].ExporterAddr == records[0].ExporterAddr {
			n++
		}
		for m := 0; m < n; m += maxMessageRecords {
			o.publish(records[m:min(n, m+maxMessageRecords)])
		}
		records = records[n:]
	}
	return nil
}

// A message holds at most maxMessageRecords records and, unless it holds
// one, maxMessageBytes: the brokers refuse a message past their
// message.max.bytes (1 MiB by default), and one datagram of tiny IPFIX
// records decodes to 65,000 records. All of them in one message were all
// refused (TestLargeWriteSplit).
const (
	maxMessageRecords = 1024
	maxMessageBytes   = 768 << 10
)

func (o *Output) publish(recs []flow.Record) {
	key := recs[0].ExporterAddr.As16()
	if !recs[0].ExporterAddr.IsValid() {
		key = recs[0].ObserverIP.As16()
	}
	value := flow.AppendWire(make([]byte, 0, 64+len(recs)*112), recs)
	if len(value) > maxMessageBytes && len(recs) > 1 {
		half := len(recs) / 2
		o.publish(recs[:half])
		o.publish(recs[half:])
		return
	}
	msg := &kgo.Record{Key: key[:], Value: value}
	n := int64(len(recs))
	o.inFlight.Add(n)
	o.messages.Inc()
	o.client.TryProduce(o.ctx, msg, o.promise(n))
}

// promise settles a message of n records.
func (o *Output) promise(n int64) func(*kgo.Record, error) {
	return func(msg *kgo.Record, err error) {
		if err != nil && refusedByNewInstance(err) && o.park(msg, n) {
			return // still in flight: produced again after the purge
		}
		o.inFlight.Add(-n)
		switch {
		case err == nil:
			o.sent.Add(float64(n))
		case errors.Is(err, kgo.ErrMaxBuffered):
			o.records.WithLabelValues("buffer_full").Add(float64(n))
			o.limited.WarnCount("buffer-full", "Kafka output buffer full: flow records dropped since the last such line (brokers away or too slow; see kafka-max-buffered-*)", "records", n)
		case errors.Is(err, context.Canceled), errors.Is(err, kgo.ErrClientClosed):
			o.records.WithLabelValues("stopped").Add(float64(n))
		default:
			o.records.WithLabelValues("delivery_failed").Add(float64(n))
			o.limited.WarnCount("delivery-failed", "Kafka did not take flow records: dropped since the last such line", "records", n, "err", err)
		}
	}
}

// Stop refuses later writes, waits up to the drain timeout for what is
// buffered, then closes the client (what is left is counted as stopped).
func (o *Output) Stop() error {
	o.mu.Lock()
	o.stopped = true
	o.mu.Unlock()
	if o.client == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.cfg.DrainTimeout)
	defer cancel()
	err := o.client.Flush(ctx)
	o.cancel()
	o.wg.Wait()
	o.client.Close()
	o.parkMu.Lock()
	if o.parkedN > 0 {
		o.records.WithLabelValues("stopped").Add(float64(o.parkedN))
		o.inFlight.Add(-o.parkedN)
	}
	o.parked, o.parkedN = nil, 0
	o.parkMu.Unlock()
	// Close fails what is still buffered, but franz-go calls the records'
	// promises from a goroutine of its own, after Close may have returned:
	// wait for them, so that every record is counted when Stop returns
	// (on a busy machine TestBufferBoundWithBrokersAway found none of the
	// 500 buffered ones counted yet).
	for deadline := time.Now().Add(5 * time.Second); o.inFlight.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if err != nil {
		o.r.Log.Warn("Kafka brokers did not take every buffered record before the drain timeout", "err", err)
	}
	return nil
}
