package pipeline

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spanflow/spanflow/internal/reporter"
)

type metrics struct {
	options      *prometheus.CounterVec
	decodeErrors *prometheus.CounterVec
	lost         *prometheus.CounterVec
	held         *prometheus.CounterVec
	templates    *prometheus.GaugeVec
	drops        *prometheus.CounterVec
	outputErrors *prometheus.CounterVec
	badHeaders   *prometheus.CounterVec
	discards     *prometheus.CounterVec
	unknown      *prometheus.CounterVec
	ignoredSets  *prometheus.CounterVec

	mu           sync.RWMutex
	exporters    map[netip.Addr]*exporterMetrics
	maxExporters int
	own          int // exporters with series of their own
}

// exporterMetrics caches one exporter's counters, so the hot path does not
// hash label values per datagram. Its datagrams and records, counted for
// every datagram, are plain counters in the struct, which the datagram
// touches anyway, made samples at scrape time (exporterCounts): as
// prometheus counters they were two more cache lines per exporter and
// datagram, 2 % of the profile of 500 exporters.
type exporterMetrics struct {
	name                   string        // the exporter label's value
	counts                 [8]kindCounts // by flow.Kind
	lost                   [8]prometheus.Counter
	options, held, expired prometheus.Counter
	badHeaders             prometheus.Counter
	discards               prometheus.Counter
	unknownSamples         prometheus.Counter
	ignoredSets            prometheus.Counter
	templates              prometheus.Gauge
	other                  bool // stands for every exporter past the label limit

	// templatesMu orders setTemplates' updates; lastTemplates is the
	// templates gauge's value, -1 before the first.
	templatesMu   sync.Mutex
	lastTemplates atomic.Int64

	// errs are the decode error counters by reason the exporter has
	// counted in (a label set each, which prune deletes).
	errsMu sync.Mutex
	errs   map[string]prometheus.Counter
}

// decodeErrorsOf is e's decode error counter for reason why.
func (m *metrics) decodeErrorsOf(e *exporterMetrics, why string) prometheus.Counter {
	e.errsMu.Lock()
	defer e.errsMu.Unlock()
	c := e.errs[why]
	if c == nil {
		c = m.decodeErrors.WithLabelValues(e.name, why)
		if e.errs == nil {
			e.errs = map[string]prometheus.Counter{}
		}
		e.errs[why] = c
	}
	return c
}

// setTemplates sets the templates gauge to n when it is not n already:
// every datagram brings the number, which rarely changes, and a gauge
// written per datagram is one more cache line per exporter (1 % of the
// 500-exporter streams' profile). Updates go under a lock so that the
// gauge always holds the last value lastTemplates says it does.
func (e *exporterMetrics) setTemplates(n int) {
	if e.lastTemplates.Load() == int64(n) {
		return
	}
	e.templatesMu.Lock()
	defer e.templatesMu.Unlock()
	e.lastTemplates.Store(int64(n))
	if templatesHook != nil {
		templatesHook(n)
	}
	e.templates.Set(float64(n))
}

// templatesHook, when set (by a test), runs between the two writes of
// setTemplates.
var templatesHook func(n int)

// kindCounts are an exporter's datagrams and records of one protocol.
type kindCounts struct{ datagrams, records atomic.Uint64 }

// exporterCounts makes the samples of every exporter's datagrams and
// records: what the counter vectors of the same names gave, every
// protocol of every exporter with series, zeros included.
type exporterCounts struct {
	m                  *metrics
	datagrams, records *prometheus.Desc
}

func (c exporterCounts) Describe(ch chan<- *prometheus.Desc) { ch <- c.datagrams; ch <- c.records }

func (c exporterCounts) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.RLock()
	defer c.m.mu.RUnlock()
	for _, e := range c.m.exporters {
		for k := 1; k <= 4; k++ {
			n := &e.counts[k]
			ch <- prometheus.MustNewConstMetric(c.datagrams, prometheus.CounterValue, float64(n.datagrams.Load()), e.name, kindLabels[k])
			ch <- prometheus.MustNewConstMetric(c.records, prometheus.CounterValue, float64(n.records.Load()), e.name, kindLabels[k])
		}
	}
}

func newMetrics(r *reporter.Reporter, maxExporters int) *metrics {
	f := r.Factory("collector")
	m := &metrics{
		options:      f.CounterVec("options_records_total", "NetFlow v9/IPFIX options records applied (sampling, interface names).", "exporter"),
		decodeErrors: f.CounterVec("decode_errors_total", "Datagrams (or held data sets) that did not decode, by exporter and reason.", "exporter", "reason"),
		lost:         f.CounterVec("sequence_lost_total", "Datagrams (NetFlow v9, sFlow) or records (NetFlow v5, IPFIX) missing according to sequence numbers.", "exporter", "protocol"),
		held:         f.CounterVec("held_sets_total", "Data sets held because their template had not arrived, by outcome (held, expired).", "exporter", "outcome"),
		templates:    f.GaugeVec("templates", "NetFlow v9/IPFIX templates kept per exporter.", "exporter"),
		drops:        f.CounterVec("drops_total", "Datagrams dropped before decoding, by reason (not_allowed, exporter_limit).", "reason"),
		outputErrors: f.CounterVec("output_errors_total", "Write errors, by output.", "output"),
		badHeaders:   f.CounterVec("sflow_bad_sampled_headers_total", "sFlow sampled headers that did not decode (the record keeps what the sample says).", "exporter"),
		discards:     f.CounterVec("sflow_drop_notifications_total", "sFlow drop notifications (discarded packets, sample type 5) decoded into records.", "exporter"),
		unknown:      f.CounterVec("sflow_unknown_samples_total", "sFlow samples of a format spanflow does not read (not enterprise 0 formats 1-5), skipped by their length.", "exporter"),
		ignoredSets:  f.CounterVec("ignored_sets_total", "NetFlow v9/IPFIX sets of a reserved set id, skipped by their length (RFC 7011 §3.3.2).", "exporter"),
		exporters:    map[netip.Addr]*exporterMetrics{},
		maxExporters: maxExporters,
	}
	f.Register(exporterCounts{m: m,
		datagrams: f.Desc("datagrams_total", "Flow datagrams received, by exporter and protocol.", "exporter", "protocol"),
		records:   f.Desc("records_total", "Records decoded (flows and interface counters), by exporter and protocol.", "exporter", "protocol")})
	return m
}

var kindLabels = [8]string{"unknown", "netflow_v5", "netflow_v9", "ipfix", "sflow", "", "", ""}

// exporter returns the series of exporter a. An exporter gets series of
// its own once it has sent a datagram that decodes (proven), up to
// maxExporters of them; before that, and past the bound, it counts under
// "other": spoofed sources sending garbage would otherwise make a series set
// each, and a scrape of hundreds of thousands of lines.
func (m *metrics) exporter(a netip.Addr, proven bool) *exporterMetrics {
	m.mu.RLock()
	e := m.exporters[a]
	m.mu.RUnlock()
	if e != nil {
		return e
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e = m.exporters[a]; e != nil {
		return e
	}
	l := a.String()
	if !proven || m.own >= m.maxExporters {
		a, l = netip.Addr{}, "other"
		if e = m.exporters[a]; e != nil {
			return e
		}
	}
	e = &exporterMetrics{
		name: l, other: l == "other",
		options: m.options.WithLabelValues(l), held: m.held.WithLabelValues(l, "held"),
		expired: m.held.WithLabelValues(l, "expired"), templates: m.templates.WithLabelValues(l),
		badHeaders: m.badHeaders.WithLabelValues(l), discards: m.discards.WithLabelValues(l),
		unknownSamples: m.unknown.WithLabelValues(l),
		ignoredSets:    m.ignoredSets.WithLabelValues(l),
	}
	e.lastTemplates.Store(-1)
	for k := 1; k <= 4; k++ {
		e.lost[k] = m.lost.WithLabelValues(l, kindLabels[k])
	}
	m.exporters[a] = e
	if !e.other {
		m.own++
	}
	return e
}

// prune deletes the series of the exporters the decoder no longer keeps
// (they went silent), so the label values follow the exporters there are.
// Each series is deleted by its full label set, which the exporter's
// counters name: deleting by the exporter label alone searched every
// series of the metric, for each exporter, under the lock every datagram
// takes (0.45 s for 1,000 exporters going silent together).
func (m *metrics) prune(has func(netip.Addr) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for a, e := range m.exporters {
		if e.other || has(a) {
			continue
		}
		delete(m.exporters, a)
		m.own--
		l := e.name
		m.options.DeleteLabelValues(l)
		m.templates.DeleteLabelValues(l)
		m.badHeaders.DeleteLabelValues(l)
		m.discards.DeleteLabelValues(l)
		m.unknown.DeleteLabelValues(l)
		m.ignoredSets.DeleteLabelValues(l)
		m.held.DeleteLabelValues(l, "held")
		m.held.DeleteLabelValues(l, "expired")
		for k := range e.lost {
			if e.lost[k] != nil {
				m.lost.DeleteLabelValues(l, kindLabels[k])
			}
		}
		e.errsMu.Lock()
		for why := range e.errs {
			m.decodeErrors.DeleteLabelValues(l, why)
		}
		e.errsMu.Unlock()
	}
}
