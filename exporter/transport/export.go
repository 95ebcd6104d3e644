package transport

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spanflow/spanflow/internal/reporter"
)

// Transports sends each message to every collector: the UDP ones from one
// socket, each TCP or TLS one through its own queue and writer, so that a
// collector that is away never holds up the others.
type Transports struct {
	counter recordCounter // flow records per message, for the UDP collectors' counts
	udp     *UDP
	tcp     []*TCP
	udpIdx  []string // UDP collectors as configured
}

// New opens the transports of the configured collectors.
func New(r *reporter.Reporter, cfg Configuration) (*Transports, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	m := &Transports{counter: newRecordCounter()}
	var udp []string
	for _, a := range cfg.Collectors {
		scheme, addr, _ := SplitCollector(a)
		if scheme == "udp" {
			udp = append(udp, a)
			continue
		}
		t, err := NewTCP(r, a, scheme, addr, cfg)
		if err != nil {
			m.Close()
			return nil, err
		}
		m.tcp = append(m.tcp, t)
	}
	if len(udp) > 0 {
		u, err := NewUDP(r, Configuration{Collectors: udp})
		if err != nil {
			m.Close()
			return nil, err
		}
		m.udp, m.udpIdx = u, udp
	}
	r.Registry.MustRegister(&collectorMetrics{m})
	return m, nil
}

// Send gives msg to every collector. Only UDP sends can fail here (TCP
// queues count their drops).
func (m *Transports) Send(msg []byte) error {
	var err error
	for _, t := range m.tcp {
		t.Send(msg)
	}
	if m.udp != nil {
		records, _ := m.counter.inspect(msg)
		err = m.udp.send(msg, records)
	}
	return err
}

// TCP returns the TCP and TLS collectors.
func (m *Transports) TCP() []*TCP { return m.tcp }

// Close sends what the TCP queues hold (at most 5 s), then closes everything.
func (m *Transports) Close() error {
	var errs []error
	for _, t := range m.tcp {
		errs = append(errs, t.Close())
	}
	if m.udp != nil {
		errs = append(errs, m.udp.Close())
	}
	return errors.Join(errs...)
}

// collectorMetrics reports per collector (label "collector", as configured).
type collectorMetrics struct{ m *Transports }

var (
	descMessages = prometheus.NewDesc("spanflow_export_collector_messages_sent_total",
		"IPFIX messages delivered to the collector (UDP: sent; TCP: acknowledged by its kernel).", []string{"collector", "transport"}, nil)
	descRecords = prometheus.NewDesc("spanflow_export_collector_records_sent_total",
		"IPFIX flow records delivered to the collector (UDP: sent; TCP: acknowledged by its kernel).", []string{"collector", "transport"}, nil)
	descErrors = prometheus.NewDesc("spanflow_export_collector_send_errors_total",
		"Failed sends (UDP) or failed connects and broken connections (TCP).", []string{"collector", "transport"}, nil)
	descDroppedMsgs = prometheus.NewDesc("spanflow_export_collector_dropped_messages_total",
		"IPFIX messages dropped because the collector was away and its queue full.", []string{"collector", "transport"}, nil)
	descDroppedRecs = prometheus.NewDesc("spanflow_export_collector_dropped_records_total",
		"IPFIX flow records in the dropped messages.", []string{"collector", "transport"}, nil)
	descResent = prometheus.NewDesc("spanflow_export_collector_resent_messages_total",
		"IPFIX messages sent again after a connection broke before the collector acknowledged them.", []string{"collector", "transport"}, nil)
	descQueue = prometheus.NewDesc("spanflow_export_collector_queue_messages",
		"IPFIX messages waiting for the collector.", []string{"collector", "transport"}, nil)
	descUp = prometheus.NewDesc("spanflow_export_collector_connected",
		"1 while connected to the collector (TCP and TLS collectors).", []string{"collector", "transport"}, nil)
)

func (c *collectorMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMessages, descRecords, descErrors, descDroppedMsgs, descDroppedRecs, descResent, descQueue, descUp} {
		ch <- d
	}
}

func (c *collectorMetrics) Collect(ch chan<- prometheus.Metric) {
	if u := c.m.udp; u != nil {
		u.mu.Lock()
		per := append([]Stats(nil), u.per...)
		u.mu.Unlock()
		for i, name := range c.m.udpIdx {
			ch <- prometheus.MustNewConstMetric(descMessages, prometheus.CounterValue, float64(per[i].Sent), name, "udp")
			ch <- prometheus.MustNewConstMetric(descRecords, prometheus.CounterValue, float64(per[i].Records), name, "udp")
			ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(per[i].Errors), name, "udp")
		}
	}
	for _, t := range c.m.tcp {
		s := t.Stats()
		tr := "tcp"
		if t.tls != nil {
			tr = "tls"
		}
		up := 0.0
		if s.Connected {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descMessages, prometheus.CounterValue, float64(s.Messages), t.name, tr)
		ch <- prometheus.MustNewConstMetric(descRecords, prometheus.CounterValue, float64(s.Records), t.name, tr)
		ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(s.Errors), t.name, tr)
		ch <- prometheus.MustNewConstMetric(descDroppedMsgs, prometheus.CounterValue, float64(s.DroppedMessages), t.name, tr)
		ch <- prometheus.MustNewConstMetric(descDroppedRecs, prometheus.CounterValue, float64(s.DroppedRecords), t.name, tr)
		ch <- prometheus.MustNewConstMetric(descResent, prometheus.CounterValue, float64(s.Resent), t.name, tr)
		ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(s.Queued), t.name, tr)
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, t.name, tr)
	}
}
