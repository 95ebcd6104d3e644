// Package indexer is the consuming half of the scale-out path: indexers in
// one Kafka consumer group share the partitions of the flow topic that the
// collectors' Kafka output fills, and each
//
//	polls a batch ─▶ decodes (wire encoding) ─▶ enriches ─▶ hands it to its
//	sinks, which return once the batch is durable (Elasticsearch acknowledged)
//	─▶ commits the batch's offsets ─▶ lets a rebalance happen
//
// Offsets are committed only after the sinks acknowledged, so an indexer
// that dies replays its last batch on whichever indexer takes its
// partitions; the Elasticsearch documents' deterministic ids make the
// replay overwrite, not duplicate. Every flow is in the index once. A
// rebalance waits for the batch in hand (franz-go's BlockRebalanceOnPoll),
// so two indexers never hold the same partition's batch at once.
package indexer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/kafkaconn"
	"github.com/spanflow/spanflow/internal/lifecycle"
	"github.com/spanflow/spanflow/internal/reporter"
)

// Sink takes a batch of records and returns once they are durable: the
// offsets are committed after every sink returned nil. It returns an error
// only when ctx ends (the indexer is stopping) or it can never succeed.
type Sink interface {
	Index(ctx context.Context, records []flow.Record) error
}

// SinkFunc is a function as a Sink.
type SinkFunc func(ctx context.Context, records []flow.Record) error

// Index calls f.
func (f SinkFunc) Index(ctx context.Context, records []flow.Record) error { return f(ctx, records) }

// Flusher is a flow.Sink that buffers: Flush returns once what Write took
// is written (the NDJSON outputs: in the file, or on stdout).
type Flusher interface {
	Flush() error
}

// WriterSink is a flow.Sink as a Sink: Write, then Flush when s is a
// Flusher, so the batch is written (not in a buffer) before its offsets are
// committed and before the end-to-end lag is observed.
func WriterSink(s flow.Sink) Sink {
	f, _ := s.(Flusher)
	return SinkFunc(func(_ context.Context, records []flow.Record) error {
		if err := s.Write(records); err != nil {
			return err
		}
		if f != nil {
			return f.Flush()
		}
		return nil
	})
}

// NamedSink is a sink and its name for logs.
type NamedSink struct {
	Name string
	Sink Sink
}

// Configuration of an indexer.
type Configuration struct {
	Connection kafkaconn.Configuration
	// Group is the consumer group the indexers share.
	Group string
	// MaxPollMessages bounds one batch, in Kafka messages (tens of flows
	// each); FetchMaxBytes bounds one fetch from the brokers.
	MaxPollMessages int
	FetchMaxBytes   int
	// SessionTimeout is how long the group waits for a silent indexer
	// before its partitions go to the others (a killed process).
	SessionTimeout time.Duration
	// DrainTimeout bounds, at stop, the wait for the batch in hand to be
	// indexed and committed; past it the batch is left to be replayed.
	DrainTimeout time.Duration
}

// maxFetchMaxBytes bounds FetchMaxBytes: franz-go refuses more than its
// bound of one broker response (BrokerMaxReadBytes, 100 MiB), and the
// fetch request's field is an int32.
const maxFetchMaxBytes = 100 << 20

// DefaultConfiguration is the group spanflow-indexers.
func DefaultConfiguration() Configuration {
	return Configuration{
		Connection:      kafkaconn.DefaultConfiguration(),
		Group:           "spanflow-indexers",
		MaxPollMessages: 1000,
		FetchMaxBytes:   32 << 20,
		SessionTimeout:  10 * time.Second,
		DrainTimeout:    20 * time.Second,
	}
}

// Validate checks the configuration; the messages start with the flag's name.
func (c Configuration) Validate() error {
	errs := []error{c.Connection.Validate()}
	if c.Group == "" {
		errs = append(errs, errors.New("kafka-group: must not be empty"))
	}
	if c.MaxPollMessages < 1 {
		errs = append(errs, fmt.Errorf("kafka-max-poll-messages: must be at least 1, not %d", c.MaxPollMessages))
	}
	if c.FetchMaxBytes < 1<<20 || c.FetchMaxBytes > maxFetchMaxBytes {
		// Past 100 MiB the client refused to start; past 2 GiB the
		// brokers got a negative bound and failed every fetch.
		errs = append(errs, fmt.Errorf("kafka-fetch-max-bytes: must be between 1 MiB and 100 MiB, not %d", c.FetchMaxBytes))
	}
	if c.SessionTimeout < 6*time.Second {
		errs = append(errs, fmt.Errorf("kafka-session-timeout: at least 6s (the brokers' group.min.session.timeout.ms), not %s", c.SessionTimeout))
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, errors.New("kafka-drain-timeout: must not be negative"))
	}
	return errors.Join(errs...)
}

// Dependencies are the enrichers applied before the sinks, and the sinks.
type Dependencies struct {
	Enrichers []flow.Enricher
	Sinks     []NamedSink
}

// Indexer consumes the flow topic in a consumer group: a lifecycle.Component.
type Indexer struct {
	r       *reporter.Reporter
	limited *reporter.Limited
	cfg     Configuration
	deps    Dependencies
	topic   string
	client  *kgo.Client

	// poll ends the polling at Stop; index, DrainTimeout later, the
	// indexing of the batch in hand.
	pollCtx, indexCtx       context.Context
	cancelPoll, cancelIndex context.CancelFunc
	done                    chan struct{}
	failed                  chan error // an output failed for good: the consumer stopped

	mu  sync.Mutex
	lag map[int32]int64 // per partition held: high watermark - next offset, at the last poll

	lastPurge time.Time // the last time the topic was purged from the client (run's goroutine only)

	// outOfRange holds, per partition, the offset the client asked for
	// when the brokers answered OFFSET_OUT_OF_RANGE (retention deleted it):
	// the next records polled from the partition say how many were skipped.
	outOfRange map[int32]int64

	m metrics
}

type metrics struct {
	records    *prometheus.CounterVec // by result
	indexed    prometheus.Counter
	messages   prometheus.Counter
	commits    *prometheus.CounterVec
	endToEnd   prometheus.Observer
	rebalances prometheus.Counter
	kafkaErrs  *prometheus.CounterVec // by stage: connect, group
	skipped    prometheus.Counter
}

var _ lifecycle.Component = (*Indexer)(nil)

// New returns the indexer; Start joins the group.
func New(r *reporter.Reporter, cfg Configuration, deps Dependencies) (*Indexer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(deps.Sinks) == 0 {
		return nil, errors.New("indexer: no output")
	}
	r = r.Sub("indexer")
	ix := &Indexer{r: r, limited: reporter.NewLimited(r.Log, 10*time.Second), cfg: cfg, deps: deps,
		topic: cfg.Connection.TopicName(), lag: map[int32]int64{}, outOfRange: map[int32]int64{}, done: make(chan struct{}), failed: make(chan error, 1)}
	ix.pollCtx, ix.cancelPoll = context.WithCancel(context.Background())
	ix.indexCtx, ix.cancelIndex = context.WithCancel(context.Background())
	f := r.Factory("indexer")
	ix.m.records = f.CounterVec("records_total",
		"Flow records consumed, by result: indexed (acknowledged by every output, offsets then committed), bad_message (records of a message that did not decode, counted as one each message: skipped).",
		"result")
	ix.m.indexed = ix.m.records.WithLabelValues("indexed")
	ix.m.records.WithLabelValues("bad_message")
	ix.m.messages = f.Counter("messages_total", "Kafka messages consumed.")
	ix.m.commits = f.CounterVec("commits_total", "Offset commits by result: ok, failed (the batch is replayed by whoever holds the partition next; its documents' ids make that a no-op).", "result")
	ix.m.commits.WithLabelValues("ok")
	ix.m.commits.WithLabelValues("failed")
	ix.m.rebalances = f.Counter("rebalances_total", "Partition assignments and revocations seen by this indexer.")
	ix.m.kafkaErrs = f.CounterVec("kafka_errors_total", "Failures to reach the Kafka brokers, by stage: connect (a broker did not take the connection), group (joining or keeping the consumer group failed). Nothing is consumed while they last; the client keeps trying.", "stage")
	ix.m.skipped = f.Counter("skipped_messages_total", "Kafka messages deleted by the topic's retention before this indexer read them: the group's offset was before the partition's log start, and consuming resumed there.")
	ix.m.kafkaErrs.WithLabelValues("connect")
	ix.m.kafkaErrs.WithLabelValues("group")
	ix.m.endToEnd = f.HistogramVec("end_to_end_seconds",
		"From the collector's receipt of a flow's datagram to its acknowledgement by the outputs here.",
		[]float64{.05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 300}).WithLabelValues()
	f.GaugeFunc("consumer_lag_messages", "Kafka messages behind the high watermark on the partitions this indexer holds, at its last poll.", func() float64 {
		ix.mu.Lock()
		defer ix.mu.Unlock()
		var n int64
		for _, l := range ix.lag {
			n += l
		}
		return float64(n)
	})
	f.GaugeFunc("partitions", "Partitions of the flow topic this indexer holds.", func() float64 {
		ix.mu.Lock()
		defer ix.mu.Unlock()
		return float64(len(ix.lag))
	})
	return ix, nil
}

// Name names the component in lifecycle errors.
func (ix *Indexer) Name() string { return "indexer" }

// Topic is the topic consumed.
func (ix *Indexer) Topic() string { return ix.topic }

// Failed receives the error of an output that failed for good (a file
// output that cannot write): the indexer then consumes nothing more, and
// the process should stop, leaving the group, so that the partitions it
// held go to the other indexers and a supervisor can restart it; the
// batch it held, not committed, is replayed by the next holder.
func (ix *Indexer) Failed() <-chan error { return ix.failed }

// Start joins the consumer group and starts consuming. Unreachable brokers
// are not an error: the client keeps trying.
func (ix *Indexer) Start() error {
	opts, err := ix.cfg.Connection.Options()
	if err != nil {
		return err
	}
	opts = append(opts,
		kgo.ConsumerGroup(ix.cfg.Group),
		kgo.ConsumeTopics(ix.topic),
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(ix.cfg.SessionTimeout),
		kgo.HeartbeatInterval(ix.cfg.SessionTimeout/5),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxBytes(int32(ix.cfg.FetchMaxBytes)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			ix.m.rebalances.Inc()
			ix.hold(m[ix.topic])
			ix.r.Log.Info("partitions assigned", "partitions", m[ix.topic])
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			ix.m.rebalances.Inc()
			ix.forget(m[ix.topic])
			ix.r.Log.Info("partitions revoked", "partitions", m[ix.topic])
		}),
		// The client retries the brokers and the group for ever, silently:
		// say so, or an indexer pointed at the wrong brokers looks idle.
		kgo.WithHooks(brokerHooks{ix}),
		kgo.WithLogger(outOfRangeLogger{ix}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			ix.m.rebalances.Inc()
			ix.forget(m[ix.topic])
			ix.r.Log.Warn("partitions lost (session expired): their uncommitted batch is replayed by their next holder", "partitions", m[ix.topic])
		}),
	)
	if ix.client, err = kgo.NewClient(opts...); err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	ix.r.Log.Info("indexer consuming", "brokers", ix.cfg.Connection.Brokers, "topic", ix.topic, "group", ix.cfg.Group)
	go ix.run()
	return nil
}

// brokerHooks reports what keeps the indexer from consuming: brokers it
// cannot connect to, a consumer group it cannot join.
type brokerHooks struct{ ix *Indexer }

var (
	_ kgo.HookBrokerConnect    = brokerHooks{}
	_ kgo.HookGroupManageError = brokerHooks{}
)

// OnBrokerConnect warns, once every 10 s, of a connection that failed.
func (h brokerHooks) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err == nil {
		return
	}
	ix := h.ix
	ix.m.kafkaErrs.WithLabelValues("connect").Inc()
	ix.limited.Warn("connect", "cannot connect to the Kafka brokers: nothing is consumed until they answer; "+connectHint(err),
		"brokers", ix.cfg.Connection.Brokers, "broker", net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port))), "err", err)
}

// connectHint says what to check for a failed connection: the SASL or TLS
// settings when the brokers answered and refused them, else the address.
func connectHint(err error) string {
	var certErr *tls.CertificateVerificationError
	var recErr tls.RecordHeaderError
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, kerr.IllegalSaslState),
		errors.Is(err, kerr.UnsupportedSaslMechanism):
		return "the brokers refused the SASL authentication: check kafka-sasl (the mechanism of the brokers' listener, or none), the user and the password"
	case errors.As(err, &certErr), errors.As(err, &recErr), strings.Contains(err.Error(), "TLS"):
		return "the TLS connection failed: check kafka-tls (the brokers' listener may be plaintext, or TLS), kafka-ca-file and the certificates"
	}
	return "check kafka-brokers and that this host reaches them"
}

// OnGroupManageError warns, once every 10 s, that the group could not be
// joined or kept; the client joins again.
func (h brokerHooks) OnGroupManageError(err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
		return // stopping
	}
	ix := h.ix
	ix.m.kafkaErrs.WithLabelValues("group").Inc()
	ix.limited.Warn("group", "cannot join the Kafka consumer group: nothing is consumed until it is joined; check kafka-brokers, kafka-group and the brokers' logs",
		"brokers", ix.cfg.Connection.Brokers, "group", ix.cfg.Group, "err", err)
}

// outOfRangeLogger takes from franz-go's log the one event it does not
// report otherwise: a fetch answered OFFSET_OUT_OF_RANGE, after which the
// client resumes at the partition's log start (ConsumeResetOffset), past
// messages retention deleted before they were indexed. Without it an
// indexer group that fell behind retention (stopped for longer than it,
// or slower than the collectors) skipped them in silence.
type outOfRangeLogger struct{ ix *Indexer }

func (outOfRangeLogger) Level() kgo.LogLevel { return kgo.LogLevelInfo }

func (l outOfRangeLogger) Log(_ kgo.LogLevel, msg string, kv ...any) {
	if !strings.HasPrefix(msg, "received OFFSET_OUT_OF_RANGE") {
		return
	}
	var topic string
	part, prior := int32(-1), int64(-1)
	for i := 0; i+1 < len(kv); i += 2 {
		switch k, _ := kv[i].(string); k {
		case "topic":
			topic, _ = kv[i+1].(string)
		case "partition":
			part, _ = kv[i+1].(int32)
		case "prior_offset":
			prior, _ = kv[i+1].(int64)
		}
	}
	if topic != l.ix.topic || part < 0 || prior < 0 {
		return
	}
	l.ix.mu.Lock()
	l.ix.outOfRange[part] = prior
	l.ix.mu.Unlock()
}

// skippedTo counts, once the first records of a partition after an
// OFFSET_OUT_OF_RANGE arrive, the messages between the offset asked for and
// the first one read.
func (ix *Indexer) skippedTo(part int32, first int64) {
	ix.mu.Lock()
	prior, ok := ix.outOfRange[part]
	delete(ix.outOfRange, part)
	ix.mu.Unlock()
	if !ok || first <= prior {
		return
	}
	ix.m.skipped.Add(float64(first - prior))
	ix.r.Log.Warn("Kafka messages were deleted by the topic's retention before this indexer group read them: skipped, never indexed; keep the retention above the longest time the indexers may be stopped or behind",
		"topic", ix.topic, "partition", part, "from offset", prior, "resumed at", first, "messages", first-prior)
}

// Partitions is how many partitions of the topic this indexer holds.
func (ix *Indexer) Partitions() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return len(ix.lag)
}

// hold counts assigned partitions as held, their lag unknown (0) until
// their first poll: a partition without traffic is held all the same.
func (ix *Indexer) hold(parts []int32) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for _, p := range parts {
		if _, ok := ix.lag[p]; !ok {
			ix.lag[p] = 0
		}
	}
}

func (ix *Indexer) forget(parts []int32) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for _, p := range parts {
		delete(ix.lag, p)
		delete(ix.outOfRange, p)
	}
}

func (ix *Indexer) run() {
	defer close(ix.done)
	var recs []flow.Record
	for {
		fetches := ix.client.PollRecords(ix.pollCtx, ix.cfg.MaxPollMessages)
		if fetches.IsClientClosed() || ix.pollCtx.Err() != nil {
			ix.client.AllowRebalance()
			return
		}
		unknownID := false
		fetches.EachError(func(topic string, p int32, err error) {
			if topic == ix.topic && errors.Is(err, kerr.UnknownTopicID) {
				unknownID = true
				return
			}
			ix.limited.Warn("fetch", "Kafka fetch failed; retrying", "topic", topic, "partition", p, "err", err)
		})
		recs = recs[:0]
		var msgs []*kgo.Record
		stopping := false
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			ix.skippedTo(p.Partition, p.Records[0].Offset)
			last := p.Records[len(p.Records)-1]
			ix.mu.Lock()
			ix.lag[p.Partition] = max(0, p.HighWatermark-last.Offset-1)
			ix.mu.Unlock()
			for _, m := range p.Records {
				if stopping {
					return
				}
				if len(recs) >= indexEvery {
					// Indexed before the poll's end, committed after it:
					// a replay indexes them again (the same ids).
					if !ix.index(recs) {
						stopping = true
						return
					}
					recs = recs[:0]
				}
				var err error
				n := len(recs)
				if recs, err = flow.DecodeWire(m.Value, recs); err != nil {
					ix.m.records.WithLabelValues("bad_message").Inc()
					ix.limited.Warn("bad-message", "Kafka message is not a spanflow flow message: skipped",
						"partition", p.Partition, "offset", m.Offset, "err", err)
					recs = recs[:n]
				}
				msgs = append(msgs, m)
			}
		})
		if stopping {
			ix.client.AllowRebalance()
			return
		}
		if len(msgs) == 0 {
			ix.client.AllowRebalance()
			if unknownID {
				ix.topicReplaced()
			}
			continue
		}
		ix.m.messages.Add(float64(len(msgs)))
		if !ix.index(recs) {
			// Stopping before the outputs acknowledged: not committed,
			// replayed by the partitions' next holder.
			ix.client.AllowRebalance()
			return
		}
		if err := ix.client.CommitRecords(ix.indexCtx, msgs...); err != nil {
			ix.m.commits.WithLabelValues("failed").Inc()
			ix.limited.Warn("commit", "cannot commit Kafka offsets; the batch will be replayed (a no-op in Elasticsearch)", "err", err)
		} else {
			ix.m.commits.WithLabelValues("ok").Inc()
		}
		ix.client.AllowRebalance()
		if cap(recs) > 2*indexEvery {
			recs = nil
		}
	}
}

// purgeEvery bounds how often the topic is purged from the client.
const purgeEvery = 5 * time.Second

// topicReplaced handles fetches refused with UNKNOWN_TOPIC_ID: the topic
// was deleted (and perhaps created again) while the indexer consumed it.
// franz-go consumes only the first instance of a topic it saw and fails
// every fetch of a new one until the topic is purged from the client and
// added again (its README, "Topic recreation"); without that the indexer
// polled errors, indexing nothing, until restarted. The topic is purged
// and added back: its new instance is consumed from the group's offsets,
// from its start when there are none (the brokers drop a deleted topic's
// offsets), or waited for as a topic not created yet. Called between
// batches, with none in hand; at most once every purgeEvery, the polls
// in between waiting a little instead of spinning on the error.
func (ix *Indexer) topicReplaced() {
	if since := time.Since(ix.lastPurge); since < purgeEvery {
		select {
		case <-ix.pollCtx.Done():
		case <-time.After(min(purgeEvery-since, 200*time.Millisecond)):
		}
		return
	}
	ix.lastPurge = time.Now()
	ctx, cancel := context.WithTimeout(ix.pollCtx, 10*time.Second)
	_, err := kafkaconn.TopicID(ctx, ix.client, ix.topic)
	cancel()
	state := "created again"
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		state = "not there yet: waiting for it"
	}
	ix.r.Log.Warn("Kafka topic was deleted: consuming its new instance from its start (what the old one held and was not indexed is lost with it)",
		"topic", ix.topic, "new instance", state)
	ix.client.PurgeTopicsFromClient(ix.topic)
	ix.client.AddConsumeTopics(ix.topic)
}

// indexEvery: a poll's records go to the outputs each time this many are
// decoded. A poll of MaxPollMessages messages of up to 1,024 records each
// (a datagram of tiny IPFIX records) decoded whole came to a million
// records, about half a gigabyte, before the outputs encoded any.
const indexEvery = 16384

// index enriches recs and hands them to every sink; false when stopping
// before they all acknowledged.
func (ix *Indexer) index(recs []flow.Record) bool {
	for _, en := range ix.deps.Enrichers {
		for i := range recs {
			en.Enrich(&recs[i])
		}
	}
	if len(recs) == 0 {
		return true
	}
	for _, s := range ix.deps.Sinks {
		if err := s.Sink.Index(ix.indexCtx, recs); err != nil {
			if ix.indexCtx.Err() == nil {
				ix.r.Log.Error("output failed for good; stopping without committing", "output", s.Name, "err", err)
				select {
				case ix.failed <- fmt.Errorf("output %s: %w", s.Name, err):
				default:
				}
			}
			return false
		}
	}
	ix.m.indexed.Add(float64(len(recs)))
	now := time.Now()
	for i := range recs {
		if t := recs[i].Received; !t.IsZero() {
			ix.m.endToEnd.Observe(now.Sub(t).Seconds())
		}
	}
	return true
}

// Stop ends polling, waits up to the drain timeout for the batch in hand
// to be indexed and committed, then leaves the group.
func (ix *Indexer) Stop() error {
	if ix.client == nil {
		return nil
	}
	ix.cancelPoll()
	select {
	case <-ix.done:
	case <-time.After(ix.cfg.DrainTimeout):
		ix.r.Log.Warn("the batch in hand was not indexed within the drain timeout: left to be replayed")
		ix.cancelIndex()
		<-ix.done
	}
	ix.cancelIndex()
	ix.client.Close()
	return nil
}
