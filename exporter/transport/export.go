package transport

import (
	"errors"
	"sync"

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
	records []uint64 // SendBatch's flow records per message
	// narrow rewrites the messages for the collectors of compat=pmacct
	// (nil when there are none); narrowTCP says which TCP ones are.
	narrow    *narrower
	narrowTCP []bool
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
		c, _ := ParseCollector(a)
		if c.Compat == CompatPmacct && m.narrow == nil {
			m.narrow = newNarrower()
		}
		if c.Scheme == "udp" {
			udp = append(udp, a)
			continue
		}
		t, err := NewTCP(r, a, c.Scheme, c.Addr, cfg)
		if err != nil {
			m.Close()
			return nil, err
		}
		m.tcp = append(m.tcp, t)
		m.narrowTCP = append(m.narrowTCP, c.Compat == CompatPmacct)
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
	var narrowed []byte
	if m.narrow != nil {
		narrowed = m.narrow.rewrite(msg)
	}
	for i, t := range m.tcp {
		if m.narrowTCP[i] {
			t.Send(narrowed)
		} else {
			t.Send(msg)
		}
	}
	if m.udp != nil {
		records, _ := m.counter.inspect(msg)
		err = m.udp.send(msg, narrowed, records)
	}
	return err
}

// SendBatch gives msgs, in order, to every collector (ipfix.BatchTransport):
// the UDP ones with one sendmmsg per collector. It returns how many sends
// failed (only UDP sends can) and the first error.
func (m *Transports) SendBatch(msgs [][]byte) (failed int, err error) {
	var narrowed [][]byte
	if m.narrow != nil {
		narrowed = make([][]byte, len(msgs))
		for i, msg := range msgs {
			narrowed[i] = m.narrow.rewrite(msg)
		}
	}
	for i, t := range m.tcp {
		send := msgs
		if m.narrowTCP[i] {
			send = narrowed
		}
		for _, msg := range send {
			t.Send(msg)
		}
	}
	if m.udp == nil {
		return 0, nil
	}
	m.records = m.records[:0]
	for _, msg := range msgs {
		n, _ := m.counter.inspect(msg)
		m.records = append(m.records, n)
	}
	return m.udp.sendBatch(msgs, narrowed, m.records)
}

// TCP returns the TCP and TLS collectors.
func (m *Transports) TCP() []*TCP { return m.tcp }

// Close sends what the TCP queues hold, all collectors at once, for at
// most DrainTimeout, then closes everything.
func (m *Transports) Close() error {
	errs := make([]error, len(m.tcp)+1)
	var wg sync.WaitGroup
	for i, t := range m.tcp {
		wg.Go(func() { errs[i] = t.Close() })
	}
	wg.Wait()
	if m.udp != nil {
		errs[len(m.tcp)] = m.udp.Close()
	}
	return errors.Join(errs...)
}

// Delivery is what became of the flow records given to one collector.
type Delivery struct {
	Collector string // as configured
	Transport string // udp, tcp or tls
	// Records were sent (UDP) or acknowledged by the collector's kernel on
	// a connection it accepted (TCP, TLS); DroppedRecords were not: the
	// queue was full, they were still queued or unacknowledged at Close,
	// or (UDP) the kernel refused to send them.
	Records, DroppedRecords uint64
	// Resets are connections the collector reset: records its kernel had
	// acknowledged but it had not read, if any, were lost, in no counter.
	Resets uint64
}

// Deliveries returns each collector's delivery counts, in the order
// configured for each transport (TCP and TLS, then UDP).
func (m *Transports) Deliveries() []Delivery {
	var out []Delivery
	for _, t := range m.tcp {
		s := t.Stats()
		out = append(out, Delivery{Collector: t.name, Transport: t.transport(), Records: s.Records, DroppedRecords: s.DroppedRecords, Resets: s.Resets})
	}
	if u := m.udp; u != nil {
		u.mu.Lock()
		for i, name := range m.udpIdx {
			out = append(out, Delivery{Collector: name, Transport: "udp", Records: u.per[i].Records, DroppedRecords: u.per[i].DroppedRecords})
		}
		u.mu.Unlock()
	}
	return out
}

// collectorMetrics reports per collector (label "collector", as configured).
type collectorMetrics struct{ m *Transports }

var (
	descMessages = prometheus.NewDesc("spanflow_export_collector_messages_sent_total",
		"IPFIX messages delivered to the collector (UDP: sent; TCP, TLS: acknowledged by its kernel on a connection it accepted).", []string{"collector", "transport"}, nil)
	descRecords = prometheus.NewDesc("spanflow_export_collector_records_sent_total",
		"IPFIX flow records delivered to the collector (UDP: sent; TCP, TLS: acknowledged by its kernel on a connection it accepted).", []string{"collector", "transport"}, nil)
	descErrors = prometheus.NewDesc("spanflow_export_collector_send_errors_total",
		"Failed sends (UDP) or failed connects, refused handshakes and broken connections (TCP, TLS).", []string{"collector", "transport"}, nil)
	descDroppedMsgs = prometheus.NewDesc("spanflow_export_collector_dropped_messages_total",
		"IPFIX messages not delivered: the queue was full, or still queued or unacknowledged at stop (TCP, TLS); the kernel refused to send (UDP).", []string{"collector", "transport"}, nil)
	descDroppedRecs = prometheus.NewDesc("spanflow_export_collector_dropped_records_total",
		"IPFIX flow records in the messages not delivered.", []string{"collector", "transport"}, nil)
	descResets = prometheus.NewDesc("spanflow_export_collector_resets_total",
		"Connections the collector reset instead of closing in order: records its kernel had acknowledged but it had not read, if any, were lost, in no counter.", []string{"collector", "transport"}, nil)
	descResent = prometheus.NewDesc("spanflow_export_collector_resent_messages_total",
		"IPFIX messages sent again after a connection broke before the collector acknowledged them.", []string{"collector", "transport"}, nil)
	descQueue = prometheus.NewDesc("spanflow_export_collector_queue_messages",
		"IPFIX messages waiting for the collector.", []string{"collector", "transport"}, nil)
	descUp = prometheus.NewDesc("spanflow_export_collector_connected",
		"1 while connected to the collector (TCP and TLS collectors).", []string{"collector", "transport"}, nil)
)

func (c *collectorMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMessages, descRecords, descErrors, descDroppedMsgs, descDroppedRecs, descResets, descResent, descQueue, descUp} {
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
			ch <- prometheus.MustNewConstMetric(descDroppedMsgs, prometheus.CounterValue, float64(per[i].Errors), name, "udp")
			ch <- prometheus.MustNewConstMetric(descDroppedRecs, prometheus.CounterValue, float64(per[i].DroppedRecords), name, "udp")
		}
	}
	for _, t := range c.m.tcp {
		s, tr := t.Stats(), t.transport()
		up := 0.0
		if s.Connected {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descMessages, prometheus.CounterValue, float64(s.Messages), t.name, tr)
		ch <- prometheus.MustNewConstMetric(descRecords, prometheus.CounterValue, float64(s.Records), t.name, tr)
		ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(s.Errors), t.name, tr)
		ch <- prometheus.MustNewConstMetric(descDroppedMsgs, prometheus.CounterValue, float64(s.DroppedMessages), t.name, tr)
		ch <- prometheus.MustNewConstMetric(descDroppedRecs, prometheus.CounterValue, float64(s.DroppedRecords), t.name, tr)
		ch <- prometheus.MustNewConstMetric(descResets, prometheus.CounterValue, float64(s.Resets), t.name, tr)
		ch <- prometheus.MustNewConstMetric(descResent, prometheus.CounterValue, float64(s.Resent), t.name, tr)
		ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(s.Queued), t.name, tr)
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, t.name, tr)
	}
}
