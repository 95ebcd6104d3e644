package ipfix

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
)

// Transport takes finished messages; it may keep msg only until Send returns.
type Transport interface {
	Send(msg []byte) error
}

// Statistics is what the options record reports about the metering process.
type Statistics struct {
	Packets, Octets uint64 // observed
	Ignored         uint64 // packets not metered (not decodable, not IP, dropped)
}

// Counters says what the encoder sent.
type Counters struct {
	Messages   uint64
	Records    uint64 // flow records (statistics records not included)
	Octets     uint64
	SendErrors uint64
}

// Encoder builds IPFIX messages from flow records. It is the flow table's
// sink (meter.Sink).
// Not safe for concurrent use.
type Encoder struct {
	cfg       Configuration
	transport Transport
	max       int
	stats     Statistics // what the statistics record reports
	hasStats  bool       // SetStatistics was called: send the record

	msg         []byte
	set         int    // offset of the open set header, or -1
	setID       uint16 // template id of the open data set
	msgRecords  uint32 // data records in the message being built
	msgFlows    uint64 // flow records among them
	seq         uint32
	sinceTmpl   int       // messages since the templates were last sent
	lastTmpl    time.Time // export time the templates were last sent
	sentTmpl    bool
	templates   []byte // template sets, built once
	optionsSize int
	counters    Counters
	// kinds holds the template of each record of the batch Write encodes,
	// as its shape × 2 + 1 for IPv6.
	kinds []uint8
	// compact: the templates have every shape; else only the full ones.
	compact bool
	// sizes are the record lengths of the data templates by shape and IP
	// version.
	sizes [shapes][2]int
	// pub is what metrics read: counters change once per message, and the
	// encoder belongs to the pipeline goroutine.
	pubMu sync.Mutex
	pub   Counters
	// sender sends the messages, when SendInBackground started it;
	// sendFailed counts the messages it could not send (metrics read it
	// while it runs).
	sender     *sender
	sendFailed atomic.Uint64
}

// New returns an encoder. Every method that may send a message takes the
// export time, now: the exporter gives its flow time (the capture's time
// when reading a file), so that a capture gives the same messages on every
// run.
func New(r *reporter.Reporter, cfg Configuration, transport Transport) (*Encoder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Encoder{cfg: cfg, transport: transport, max: cfg.MTU - headroom, set: -1}
	e.msg = make([]byte, 0, e.max)
	e.optionsSize = 4 + recordLength(optionsScope) + recordLength(optionsFields)
	e.sizes = recordSizes(cfg.ObservationPoints)
	identity, interfaces := cfg.ProbeName != "" || cfg.PacketsURL != "", len(cfg.Interfaces) > 0
	// The templates, statistics, identity and interfaces go at the start
	// of a message with room for one flow record after them.
	headWith := func(templates []byte) int {
		head := 16 + len(templates) + 4 + e.optionsSize + 4 + 4 + 6 + len(cfg.ProbeName) + len(cfg.PacketsURL) + 3
		if interfaces {
			head += 4 + 3
			for _, i := range cfg.Interfaces {
				head += 4 + 1 + len(i.Name)
			}
		}
		return head
	}
	fits := func(head int) bool { return head+4+e.sizes[ShapeFull][1] <= e.max }
	// The smaller templates take 360 more bytes of templates: where the
	// MTU leaves no room for them (576, or a long identity), every record
	// goes in the full templates, as before they existed.
	e.compact = true
	e.templates = buildTemplates(true, cfg.ObservationPoints, identity, interfaces)
	if !fits(headWith(e.templates)) {
		e.compact = false
		e.templates = buildTemplates(false, false, identity, interfaces)
	}
	if head := headWith(e.templates); !fits(head) {
		return nil, fmt.Errorf("probe name, packets url and interface names: %d bytes with the templates, more than an mtu of %d takes: shorten them or raise the mtu", head, cfg.MTU)
	}
	if r != nil {
		f := r.Factory("ipfix")
		get := func(f func(Counters) uint64) func() float64 {
			return func() float64 {
				e.pubMu.Lock()
				c := e.pub
				e.pubMu.Unlock()
				return float64(f(e.withSendErrors(c)))
			}
		}
		f.CounterFunc("messages_total", "IPFIX messages sent (handed to the transports).", get(func(c Counters) uint64 { return c.Messages }))
		f.CounterFunc("records_total", "IPFIX flow records sent.", get(func(c Counters) uint64 { return c.Records }))
		f.CounterFunc("octets_total", "IPFIX message octets sent.", get(func(c Counters) uint64 { return c.Octets }))
		f.CounterFunc("send_errors_total", "IPFIX messages the transport failed to send.", get(func(c Counters) uint64 { return c.SendErrors }))
	}
	return e, nil
}

// SetStatistics sets what the statistics options record, sent with the
// templates, reports from now on. Until it is called no statistics record is
// sent.
func (e *Encoder) SetStatistics(s Statistics) { e.stats, e.hasStats = s, true }

// Counters returns what was sent so far (sending in the background: what
// was handed to the sender, with the failures it met so far).
func (e *Encoder) Counters() Counters { return e.withSendErrors(e.counters) }

// withSendErrors adds to c the failures the background sender met.
func (e *Encoder) withSendErrors(c Counters) Counters {
	c.SendErrors += e.sendFailed.Load()
	return c
}

func appendField(b []byte, f Field) []byte {
	if f.Enterprise != 0 {
		b = binary.BigEndian.AppendUint16(b, f.ID|0x8000)
		b = binary.BigEndian.AppendUint16(b, f.Length)
		return binary.BigEndian.AppendUint32(b, f.Enterprise)
	}
	b = binary.BigEndian.AppendUint16(b, f.ID)
	return binary.BigEndian.AppendUint16(b, f.Length)
}

// buildTemplates returns a template set (the full shape, and the others
// when compact, with observationPointId when points, IPv4 and IPv6) and an
// options template set (statistics, and identity and interfaces when
// asked).
func buildTemplates(compact, points, identity, interfaces bool) []byte {
	var b []byte
	start := len(b)
	b = append(b, 0, 2, 0, 0) // template set
	n := Shape(1)
	if compact {
		n = shapes
	}
	for s := range n {
		for _, v6 := range []bool{false, true} {
			fs := shapeFields(s, v6, points)
			b = binary.BigEndian.AppendUint16(b, TemplateID(s, v6))
			b = binary.BigEndian.AppendUint16(b, uint16(len(fs)))
			for _, f := range fs {
				b = appendField(b, f)
			}
		}
	}
	binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	start = len(b)
	b = append(b, 0, 3, 0, 0) // options template set
	appendOptionsTemplate := func(id uint16, scope, fields []Field) {
		b = binary.BigEndian.AppendUint16(b, id)
		b = binary.BigEndian.AppendUint16(b, uint16(len(scope)+len(fields)))
		b = binary.BigEndian.AppendUint16(b, uint16(len(scope)))
		for _, f := range scope {
			b = appendField(b, f)
		}
		for _, f := range fields {
			b = appendField(b, f)
		}
	}
	appendOptionsTemplate(TemplateOptions, optionsScope, optionsFields)
	if identity {
		appendOptionsTemplate(TemplateIdentity, identityScope, identityFields)
	}
	if interfaces {
		appendOptionsTemplate(TemplateInterface, interfaceScope, interfaceFields)
	}
	binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	return b
}

// Write encodes records at export time now (meter.Sink). Records of one
// template go together, in the order given, so that a message has few
// sets (a set header is 4 bytes).
func (e *Encoder) Write(now time.Time, records []flow.Record) error {
	var firstErr error
	kinds := e.kinds[:0]
	var used [2 * shapes]bool
	for i := range records {
		k := uint8(e.shapeOf(&records[i]))*2 + uint8(b2i(isV6(&records[i])))
		kinds = append(kinds, k)
		used[k] = true
	}
	e.kinds = kinds
	for k := range uint8(2 * shapes) {
		if !used[k] {
			continue
		}
		for i, ki := range kinds {
			if ki == k {
				if err := e.encode(now, &records[i], Shape(k/2), k%2 == 1); err != nil && firstErr == nil {
					firstErr = err
				}
			}
		}
	}
	return firstErr
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func isV6(r *flow.Record) bool { return r.SrcAddr.Is6() && !r.SrcAddr.Is4In6() }

// Encode adds one record at export time now, sending the message first when
// the record does not fit.
func (e *Encoder) Encode(now time.Time, r *flow.Record) error {
	return e.encode(now, r, e.shapeOf(r), isV6(r))
}

// shapeOf is the shape of r's template: ShapeOf's, or full when the
// templates are not compact.
func (e *Encoder) shapeOf(r *flow.Record) Shape {
	if !e.compact {
		return ShapeFull
	}
	return ShapeOf(r, e.cfg.ObservationPoints)
}

func (e *Encoder) encode(now time.Time, r *flow.Record, s Shape, v6 bool) error {
	id, size := TemplateID(s, v6), e.sizes[s][b2i(v6)]
	var err error
	if len(e.msg) == 0 {
		e.begin(now)
	}
	need := size
	if e.set < 0 || e.setID != id {
		need += 4
	}
	if len(e.msg)+need > e.max {
		err = e.finish(now)
		e.begin(now)
	}
	if e.set < 0 || e.setID != id {
		e.openSet(id)
	}
	e.msg = appendRecord(e.msg, r, s, v6, e.compact && e.cfg.ObservationPoints)
	e.msgRecords++
	e.msgFlows++
	return err
}

// recordSizes are the record lengths of the data templates by shape and
// IP version (with observationPointId in each when points).
func recordSizes(points bool) (r [shapes][2]int) {
	for s := range shapes {
		r[s] = [2]int{recordLength(shapeFields(s, false, points)), recordLength(shapeFields(s, true, points))}
	}
	return r
}

// begin starts a message at export time now: header, then the templates
// and a statistics record when they are due.
func (e *Encoder) begin(now time.Time) {
	e.msg = e.msg[:0]
	e.msg = append(e.msg, make([]byte, 16)...)
	e.set, e.msgRecords, e.msgFlows = -1, 0, 0
	if !e.sentTmpl || e.sinceTmpl >= e.cfg.TemplateRefreshMessages || now.Sub(e.lastTmpl) >= e.cfg.TemplateRefreshInterval {
		e.msg = append(e.msg, e.templates...)
		e.sentTmpl, e.sinceTmpl, e.lastTmpl = true, 0, now
		e.appendOptions()
		e.appendIdentity()
		e.appendInterfaces()
	}
}

// appendInterfaces adds an interface options record per capture
// interface, in one set.
func (e *Encoder) appendInterfaces() {
	if len(e.cfg.Interfaces) == 0 {
		return
	}
	e.closeSet()
	start := len(e.msg)
	b := binary.BigEndian.AppendUint16(e.msg, TemplateInterface)
	b = append(b, 0, 0)
	for _, i := range e.cfg.Interfaces {
		b = binary.BigEndian.AppendUint32(b, i.Index)
		b = appendVarString(b, i.Name)
		e.msgRecords++
	}
	for (len(b)-start)%4 != 0 { // padding (RFC 7011 §3.3.1)
		b = append(b, 0)
	}
	binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	e.msg = b
}

// appendIdentity adds the identity options record, when there is one.
func (e *Encoder) appendIdentity() {
	if e.cfg.ProbeName == "" && e.cfg.PacketsURL == "" {
		return
	}
	e.closeSet()
	start := len(e.msg)
	b := binary.BigEndian.AppendUint16(e.msg, TemplateIdentity)
	b = append(b, 0, 0)
	b = binary.BigEndian.AppendUint32(b, e.cfg.ObservationDomain)
	b = appendVarString(b, e.cfg.ProbeName)
	b = appendVarString(b, e.cfg.PacketsURL)
	for (len(b)-start)%4 != 0 { // padding (RFC 7011 §3.3.1), so the set ends aligned
		b = append(b, 0)
	}
	binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	e.msg = b
	e.msgRecords++
}

// appendVarString appends s as a variable-length field (RFC 7011 §7).
func appendVarString(b []byte, s string) []byte {
	if len(s) < 255 {
		b = append(b, byte(len(s)))
	} else {
		b = append(b, 255)
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	}
	return append(b, s...)
}

func (e *Encoder) appendOptions() {
	if !e.hasStats {
		return
	}
	s := e.stats
	e.closeSet()
	b := e.msg
	b = binary.BigEndian.AppendUint16(b, TemplateOptions)
	b = binary.BigEndian.AppendUint16(b, uint16(e.optionsSize))
	b = binary.BigEndian.AppendUint32(b, e.cfg.ObservationDomain)
	b = binary.BigEndian.AppendUint64(b, s.Packets)
	b = binary.BigEndian.AppendUint64(b, s.Octets)
	b = binary.BigEndian.AppendUint64(b, s.Ignored)
	b = binary.BigEndian.AppendUint64(b, e.counters.Records)
	b = binary.BigEndian.AppendUint64(b, e.counters.Messages)
	e.msg = b
	e.msgRecords++
}

func (e *Encoder) openSet(id uint16) {
	e.closeSet()
	e.set, e.setID = len(e.msg), id
	e.msg = binary.BigEndian.AppendUint16(e.msg, id)
	e.msg = append(e.msg, 0, 0)
}

func (e *Encoder) closeSet() {
	if e.set < 0 {
		return
	}
	binary.BigEndian.PutUint16(e.msg[e.set+2:], uint16(len(e.msg)-e.set))
	e.set = -1
}

// Flush sends the message being built, if it holds anything, with export
// time now. Sending in the background, it hands it over with those
// finished before, without waiting for them to be sent.
func (e *Encoder) Flush(now time.Time) error {
	err := e.finish(now)
	if e.sender != nil {
		e.sender.handOver()
	}
	return err
}

// Push hands the messages finished so far to the background sender
// without waiting for a batch to fill (the message being built stays); it
// does nothing when sending in the pipeline's goroutine. The pipeline
// pushes every few thousand frames and whenever the capture is idle, so
// that a finished message does not wait for the next tick.
func (e *Encoder) Push() {
	if e.sender != nil {
		e.sender.handOver()
	}
}

// finish completes the message being built, if it holds anything, with
// export time now, and sends it (or queues it for the background sender).
func (e *Encoder) finish(now time.Time) error {
	if len(e.msg) <= 16 {
		return nil
	}
	e.closeSet()
	h := e.msg[:16]
	binary.BigEndian.PutUint16(h[0:], 10)
	binary.BigEndian.PutUint16(h[2:], uint16(len(e.msg)))
	binary.BigEndian.PutUint32(h[4:], uint32(now.Unix()))
	binary.BigEndian.PutUint32(h[8:], e.seq)
	binary.BigEndian.PutUint32(h[12:], e.cfg.ObservationDomain)
	e.seq += e.msgRecords
	e.counters.Messages++
	e.counters.Records += e.msgFlows
	e.counters.Octets += uint64(len(e.msg))
	e.sinceTmpl++
	var err error
	if e.sender != nil {
		e.sender.queue(e.msg)
	} else {
		err = e.transport.Send(e.msg)
	}
	e.msg = e.msg[:0]
	e.set, e.msgRecords, e.msgFlows = -1, 0, 0
	if err != nil {
		e.counters.SendErrors++
	}
	e.pubMu.Lock()
	e.pub = e.counters
	e.pubMu.Unlock()
	if err != nil {
		return sendError(err)
	}
	return nil
}

func sendError(err error) error { return fmt.Errorf("send ipfix message: %w", err) }

// Close sends what is pending, then a last message with the templates and
// the final statistics, so a collector sees the totals; both with export
// time now. Sending in the background, it waits until every message was
// sent and stops the sender.
func (e *Encoder) Close(now time.Time) error {
	err := e.finish(now)
	e.sentTmpl = false
	e.begin(now)
	if err2 := e.finish(now); err == nil {
		err = err2
	}
	if s := e.sender; s != nil {
		err = s.stop()
		e.sender = nil
	}
	return err
}

// appendRecord writes r in the data template of shape s (the fields of
// shapeFields, in order; observationPointId in every shape when points).
func appendRecord(b []byte, r *flow.Record, s Shape, v6, points bool) []byte {
	if v6 {
		src, dst := r.SrcAddr.As16(), r.DstAddr.As16()
		b = append(b, src[:]...)
		b = append(b, dst[:]...)
	} else {
		src, dst := r.SrcAddr.Unmap().As4(), r.DstAddr.Unmap().As4()
		b = append(b, src[:]...)
		b = append(b, dst[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, r.SrcPort)
	b = binary.BigEndian.AppendUint16(b, r.DstPort)
	b = append(b, r.Proto, r.TOS)
	b = binary.BigEndian.AppendUint16(b, r.TCPFlags)
	b = append(b, r.ICMPType, r.ICMPCode)
	b = binary.BigEndian.AppendUint64(b, r.Bytes)
	b = binary.BigEndian.AppendUint64(b, r.Packets)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Start.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, uint64(r.End.UnixMilli()))
	b = append(b, r.EndReason)
	if s == ShapeFull {
		b = binary.BigEndian.AppendUint16(b, r.VLAN)
		b = binary.BigEndian.AppendUint16(b, r.InnerVLAN)
	}
	b = append(b, r.SrcMAC[:]...)
	b = append(b, r.DstMAC[:]...)
	b = binary.BigEndian.AppendUint32(b, r.InIf)
	b = binary.BigEndian.AppendUint32(b, r.OutIf)
	if s == ShapeFull {
		b = binary.BigEndian.AppendUint64(b, r.SegmentID)
	}
	if s == ShapeFull || points {
		b = binary.BigEndian.AppendUint32(b, uint32(r.ObservationPoint))
	}
	if s == ShapePlain {
		return b
	}
	b = binary.BigEndian.AppendUint32(b, uint32(r.TCP.RTTClient.Microseconds()))
	b = binary.BigEndian.AppendUint32(b, uint32(r.TCP.RTTServer.Microseconds()))
	b = binary.BigEndian.AppendUint32(b, r.TCP.Retransmissions)
	b = binary.BigEndian.AppendUint32(b, r.TCP.ZeroWindows)
	return append(b, biflowDirection(r))
}

// biflowDirection is r's biflowDirection (RFC 5103), which the meter
// gives a TCP record whose opener it saw (flow.ExtraBiflowDirection); 0,
// arbitrary, otherwise.
func biflowDirection(r *flow.Record) uint8 {
	for i := range r.Extra {
		if x := &r.Extra[i]; x.Name == flow.ExtraBiflowDirection && !x.IsStr && x.Raw == nil && x.Num <= 0xff {
			return uint8(x.Num)
		}
	}
	return 0
}
