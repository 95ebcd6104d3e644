package elasticsearch

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spanflow/spanflow/internal/reporter"
)

type metrics struct {
	documents *prometheus.CounterVec // by result
	dropped   *prometheus.CounterVec // by reason
	bulkFails prometheus.Counter
	replays   *prometheus.CounterVec // by result
	// Resolved once: these are counted per document.
	indexed, replayed, spooled prometheus.Counter
	beyondLong                 prometheus.Counter
}

func newMetrics(r *reporter.Reporter, o *Output) *metrics {
	f := r.Factory("elasticsearch")
	m := &metrics{
		documents: f.CounterVec("documents_total",
			"Flow documents by outcome: indexed, duplicate (already in the cluster), dead_letter (refused for their content), spooled (handed to the spool for replay; those it could not keep are also counted as dropped), replayed (indexed from the spool).",
			"result"),
		dropped: f.CounterVec("documents_dropped_total",
			"Flow documents lost, each under one reason: spool_full (the spool reached its byte bound: oldest documents dropped), disk_full (the spool's filesystem is full: oldest documents dropped), spool_write (another error writing the spool), spool_corrupt (torn spool line), dead_letter_write (the dead-letter file could not be written).",
			"reason"),
		bulkFails: f.Counter("bulk_failures_total", "Bulk requests that failed as a whole (connection, timeout, 429/5xx after retries)."),
		replays:   f.CounterVec("spool_replays_total", "Spool segment replays by result: complete, partial (some documents still refused for now), unreachable.", "result"),
		beyondLong: f.Counter("documents_beyond_long_total",
			"Flow documents holding a number past 2^63-1, Elasticsearch's long (a counter from a buggy exporter): indexed, the value kept in _source and the field listed in _ignored, neither searched nor summed."),
	}
	f.GaugeFunc("spool_documents", "Flow documents waiting in the spool.", func() float64 {
		d, _ := o.spool.Stats()
		return float64(d)
	})
	f.GaugeFunc("spool_bytes", "Bytes of the spool's segment files.", func() float64 {
		_, b := o.spool.Stats()
		return float64(b)
	})
	f.GaugeFunc("bulk_unanswered_seconds", "Age of the oldest bulk request sent and not answered yet, 0 when none: it grows while the cluster accepts requests and does not answer.", func() float64 {
		sent, _ := o.unansweredReqs.oldest()
		if sent.IsZero() {
			return 0
		}
		return time.Since(sent).Seconds()
	})
	f.GaugeFunc("queue_documents", "Flow documents waiting in memory for a bulk request.", func() float64 {
		return float64(o.queued.Load())
	})
	m.indexed = m.documents.WithLabelValues("indexed")
	m.replayed = m.documents.WithLabelValues("replayed")
	m.spooled = m.documents.WithLabelValues("spooled")
	for _, res := range []string{"indexed", "duplicate", "dead_letter", "spooled", "replayed"} {
		m.documents.WithLabelValues(res)
	}
	for _, res := range []string{"complete", "partial", "unreachable"} {
		m.replays.WithLabelValues(res)
	}
	for _, reason := range dropReasons {
		m.dropped.WithLabelValues(string(reason))
	}
	return m
}
