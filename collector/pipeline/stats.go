package pipeline

import (
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/spanflow/spanflow/decoders"
	"github.com/spanflow/spanflow/internal/flow"
)

// maxStatsKeys bounds the (exporter, protocol, domain) entries gathered in
// one interval: observation domains come from the datagrams.
const maxStatsKeys = 65536

type statsKey struct {
	addr     netip.Addr // the datagrams' source: the decoder's exporter
	observer netip.Addr // what the records name (the sFlow agent address)
	kind     flow.Kind
	domain   uint32
}

// exporterStats gathers, between two emissions, what each exporter and
// observation domain sent.
type exporterStats struct {
	mu      sync.Mutex
	since   time.Time
	m       map[statsKey]*flow.ExporterStats
	dropped uint64 // datagrams not counted: too many keys
}

func newExporterStats(now time.Time) *exporterStats {
	return &exporterStats{since: now, m: map[statsKey]*flow.ExporterStats{}}
}

// add counts one decoded datagram.
func (s *exporterStats) add(src netip.Addr, res decoders.Result, failed bool) {
	obs := res.Observer
	if !obs.IsValid() {
		obs = src
	}
	k := statsKey{src, obs, res.Kind, res.Domain}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.m[k]
	if st == nil {
		if len(s.m) >= maxStatsKeys {
			s.dropped++
			return
		}
		st = &flow.ExporterStats{}
		s.m[k] = st
	}
	st.Datagrams++
	st.Records += uint64(res.Records)
	st.SequenceLosses += res.Lost
	if failed {
		st.DecodeErrors++
	}
}

// take returns the statistics gathered since the last call as records
// stamped now, in a stable order, and starts a new interval.
func (s *exporterStats) take(now time.Time, templates func(statsKey) int) ([]flow.Record, uint64) {
	s.mu.Lock()
	m, since, dropped := s.m, s.since, s.dropped
	s.m, s.since, s.dropped = make(map[statsKey]*flow.ExporterStats, len(m)), now, 0
	s.mu.Unlock()
	recs := make([]flow.Record, 0, len(m))
	for k, st := range m {
		st.Interval = now.Sub(since)
		st.Templates = uint64(templates(k))
		recs = append(recs, flow.Record{Kind: k.kind, ObserverIP: k.observer, ExporterAddr: k.addr,
			ObservationDomain: k.domain, Received: now, Exporter: st})
	}
	sort.Slice(recs, func(i, j int) bool {
		a, b := &recs[i], &recs[j]
		if c := a.ObserverIP.Compare(b.ObserverIP); c != 0 {
			return c < 0
		}
		if c := a.ExporterAddr.Compare(b.ExporterAddr); c != 0 {
			return c < 0
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.ObservationDomain < b.ObservationDomain
	})
	return recs, dropped
}

// emitStats writes the statistics of the interval ending now to every
// output (not through the enrichers: they describe flows' ends).
func (p *Pipeline) emitStats(now time.Time) {
	recs, dropped := p.stats.take(now, func(k statsKey) int { return p.decoder.DomainTemplates(k.addr, k.kind, k.domain) })
	if dropped > 0 {
		p.log.Warn("exporter_stats_keys", "exporter statistics incomplete: too many exporter/domain pairs in one interval", "datagrams_not_counted", dropped)
	}
	if len(recs) == 0 {
		return
	}
	for _, o := range p.deps.Outputs {
		if err := o.Sink.Write(recs); err != nil {
			p.m.outputErrors.WithLabelValues(o.Name).Inc()
			p.log.Warn("output/"+o.Name, "output failed", "output", o.Name, "err", err)
		}
	}
}

// EmitStats writes the exporter statistics gathered since the last emission
// now (the end of a capture replay); it does nothing when they are disabled.
func (p *Pipeline) EmitStats() {
	if p.stats != nil {
		p.emitStats(time.Now())
	}
}
