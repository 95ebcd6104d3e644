// Package netflow decodes NetFlow v9 and IPFIX datagrams into flow records,
// with goflow2's decoder, keeping the template state of one exporter: its
// templates per observation domain, what its options records say (sampling
// rates, interface names, system init time), and data sets held until their
// template arrives. It sits between the collector's listeners and its
// normalization; the collector keeps one State per exporter address.
package netflow

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	nf "github.com/netsampler/goflow2/v2/decoders/netflow"

	"github.com/spanflow/spanflow/decoders/reason"
	"github.com/spanflow/spanflow/internal/flow"
)

// Limits bound what one exporter can make the collector keep. Zero means
// no limit, except for MaxPending.
type Limits struct {
	MaxTemplates          int           // templates (all domains, those that cannot describe data too) per exporter
	MaxPending            int           // data sets held waiting for their template
	PendingTimeout        time.Duration // how long a data set waits for its template
	MaxDomains            int           // observation domains (per version) with templates
	MaxInterfaceNames     int           // interface names from options records, all domains
	MaxInterfaceNameBytes int           // longer interface names are truncated
	MaxBytes              int           // estimated bytes of the state: templates, domains, options values, held data
}

// DefaultLimits suit a data center: a few templates per exporter, data held
// for a template refresh interval, a few MiB per exporter.
func DefaultLimits() Limits {
	return Limits{MaxTemplates: 1024, MaxPending: 256, PendingTimeout: 30 * time.Second,
		MaxDomains: 256, MaxInterfaceNames: 16384, MaxInterfaceNameBytes: 64, MaxBytes: 4 << 20}
}

// maxSamplers bounds the sampler rates options records can teach one
// exporter (all domains).
const maxSamplers = 4096

// What the state's parts cost, estimated from what Go keeps for them (map
// entries, boxed records, slice backing arrays), for the bytes limits.
const (
	templateBytes  = 160 // one template, beyond its fields
	fieldBytes     = 12  // one field of a template (nf.Field)
	programBytes   = 96  // a template's compiled program and its map entry, beyond its ops
	programOpBytes = 12  // one field of a program (op)
	invalidBytes   = 64  // one template kept only to say that its data is bad
	domainBytes    = 256 // one observation domain's options state, empty
	nameBytes      = 64  // one interface name, beyond its bytes
	samplerBytes   = 48  // one sampler rate
	pendingBytes   = 128 // one held data set, beyond its bytes
)

// Budget is the memory that the states of all exporters share. It is safe
// for concurrent use. Held data sets may take half of it at most: held
// data from many (spoofed) sources must not keep every exporter from
// getting its templates.
type Budget struct {
	max  int64
	used atomic.Int64
	held atomic.Int64 // of used
}

// NewBudget returns a budget of max bytes; 0 is no limit.
func NewBudget(max int) *Budget { return &Budget{max: int64(max)} }

// Used is the bytes taken now.
func (b *Budget) Used() int { return int(b.used.Load()) }

func (b *Budget) take(n int) bool {
	if b.used.Add(int64(n)) > b.max && b.max > 0 {
		b.used.Add(-int64(n))
		return false
	}
	return true
}

func (b *Budget) takeHeld(n int) bool {
	if b.held.Add(int64(n)) > b.max/2 && b.max > 0 {
		b.held.Add(-int64(n))
		return false
	}
	if !b.take(n) {
		b.held.Add(-int64(n))
		return false
	}
	return true
}

func (b *Budget) give(n int, held bool) {
	b.used.Add(-int64(n))
	if held {
		b.held.Add(-int64(n))
	}
}

// Usage says what one exporter's state holds.
type Usage struct {
	Templates        int // templates that describe data
	InvalidTemplates int // templates kept only to count their data as bad
	Domains          int
	InterfaceNames   int
	Samplers         int
	Pending          int // data sets held for a template
	Bytes            int // estimated, as counted against the limits
}

// Info says what one datagram held, for metrics and sequence tracking.
type Info struct {
	Version        uint16 // 9 or 10
	Domain         uint32 // source id / observation domain
	Sequence       uint32
	Records        int          // flow records produced (including held data decoded now)
	OptionsRecords int          // options data records applied
	MessageRecords int          // data records of this datagram decoded now (for IPFIX sequence numbers)
	Held           int          // data sets of this datagram held waiting for a template
	Expired        int          // held data sets dropped because their template never came
	Templates      int          // templates the exporter has after this datagram
	IgnoredSets    int          // sets of a reserved set id, skipped (RFC 7011 §3.3.2)
	Refused        reason.Tally // templates, data sets and options values refused by a limit
}

type domainKey uint64 // version<<32 | observation domain

// domain is the state of one observation domain, kept while it has
// templates.
type domain struct {
	templates  int               // that describe data
	invalid    int               // that cannot
	sampling   uint32            // from options records without a sampler id
	samplers   map[uint64]uint32 // sampler / selector id → rate
	ifNames    map[uint32]string // ifIndex → name
	bytes      int               // of the options values above, counted in State.bytes
	sysInitMs  uint64            // systemInitTimeMilliseconds from options
	hasSysInit bool
	// probe and packetsURL are the identity options record's
	// observationDomainName and spanflow packetsURL (a spanflow exporter's
	// packet ring), counted in bytes.
	probe, packetsURL string
}

// noDomain stands for a domain without state; never written.
var noDomain domain

type pendingSet struct {
	key      uint64 // goflow2 template key
	version  uint16
	domain   uint32
	hdr      header
	data     []byte
	received time.Time
}

// header is what records need from their message header.
type header struct {
	version    uint16
	domain     uint32
	exportSecs uint32
	sysUptime  uint32 // NetFlow v9 only, milliseconds
}

// State is the template state of one exporter. It is not safe for concurrent
// use: the collector serializes the datagrams of one exporter.
type State struct {
	limits    Limits
	shared    *Budget // nil: no total limit
	exporter  netip.Addr
	templates map[uint64]any
	programs  map[uint64]*program // of data templates, compiled when first used (nil: field by field)
	hot       hotTemplate         // the data template of the last data set
	invalid   map[uint64]struct{} // templates that cannot describe data (zero-length fields)
	domains   map[domainKey]*domain
	pending   []pendingSet
	names     int // interface names, all domains
	samplers  int // sampler rates, all domains
	bytes     int // estimated bytes of the above, against limits.MaxBytes and shared
	held      int // of bytes, for pending
	added     []uint64
	err       error        // first limit refusal of the datagram
	refused   reason.Tally // limit refusals of the datagram
	v9        nf.NFv9Packet
	ipfix     nf.IPFIXPacket
	buf       bytes.Buffer
	hdr       *header      // of the record being decoded
	msg       header       // of the datagram being decoded
	extras    []flow.Extra // the records' Extra elements (addExtra)
}

// NewState returns the state of one exporter, whose bytes also count
// against shared (when not nil).
func NewState(exporter netip.Addr, limits Limits, shared *Budget) *State {
	return &State{limits: limits, shared: shared, exporter: exporter, templates: map[uint64]any{},
		programs: map[uint64]*program{}, invalid: map[uint64]struct{}{}, domains: map[domainKey]*domain{}}
}

// Templates is the number of templates the exporter has.
func (s *State) Templates() int { return len(s.templates) }

// DomainTemplates is the number of templates the exporter has for one
// observation domain (source id) of one version (9 or 10).
func (s *State) DomainTemplates(version uint16, domain uint32) int {
	if d := s.domains[domainKey(uint64(version)<<32|uint64(domain))]; d != nil {
		return d.templates
	}
	return 0
}

// Usage says what the state holds.
func (s *State) Usage() Usage {
	return Usage{Templates: len(s.templates), InvalidTemplates: len(s.invalid), Domains: len(s.domains),
		InterfaceNames: s.names, Samplers: s.samplers, Pending: len(s.pending), Bytes: s.bytes}
}

// Release gives the state's bytes back to the shared budget: the exporter
// is forgotten. The state must not be used afterwards.
func (s *State) Release() {
	s.releaseHeld(s.held)
	s.release(s.bytes)
	*s = State{}
}

// reserve takes n bytes for the state, or returns the reason of the limit
// that refuses them.
func (s *State) reserve(n int) string { return s.take(n, false) }

// reserveHeld takes n bytes for a held data set.
func (s *State) reserveHeld(n int) string {
	why := s.take(n, true)
	if why == "" {
		s.held += n
	}
	return why
}

func (s *State) take(n int, held bool) string {
	if s.limits.MaxBytes > 0 && s.bytes+n > s.limits.MaxBytes {
		return reason.ExporterMemoryLimit
	}
	if s.shared != nil {
		ok := false
		if held {
			ok = s.shared.takeHeld(n)
		} else {
			ok = s.shared.take(n)
		}
		if !ok {
			return reason.MemoryLimit
		}
	}
	s.bytes += n
	return ""
}

func (s *State) release(n int) {
	s.bytes -= n
	if s.shared != nil {
		s.shared.give(n, false)
	}
}

func (s *State) releaseHeld(n int) {
	s.bytes -= n
	s.held -= n
	if s.shared != nil {
		s.shared.give(n, true)
	}
}

// refuse counts one item refused by a limit; the first refusal of a
// datagram is its error.
func (s *State) refuse(why, format string, args ...any) {
	s.refused.Add(why)
	if s.err == nil {
		s.err = reason.Errorf(why, format, args...)
	}
}

func keyOf(version uint16, domain uint32) domainKey {
	return domainKey(uint64(version)<<32 | uint64(domain))
}

// Pending is the number of data sets held waiting for a template.
func (s *State) Pending() int { return len(s.pending) }

func templateKey(version uint16, domain uint32, id uint16) uint64 {
	return uint64(version)<<48 | uint64(domain)<<16 | uint64(id)
}

// goflow2's template system interface, backed by this state.
type templateStore State

func (t *templateStore) GetTemplates() nf.FlowBaseTemplateSet {
	return nf.FlowBaseTemplateSet(t.templates)
}

func (t *templateStore) RemoveTemplate(version uint16, domain uint32, id uint16) (any, error) {
	k := templateKey(version, domain, id)
	tpl, ok := t.templates[k]
	if !ok {
		return nil, nf.ErrorTemplateNotFound
	}
	(*State)(t).drop(version, domain, k)
	return tpl, nil
}

// costOf is the estimated bytes of a template kept under k, 0 when none.
func (s *State) costOf(k uint64) int {
	if tpl, ok := s.templates[k]; ok {
		return templateCost(tpl)
	}
	if _, ok := s.invalid[k]; ok {
		return invalidBytes
	}
	return 0
}

func templateCost(tpl any) int {
	switch v := tpl.(type) {
	case nf.TemplateRecord:
		return templateBytes + fieldBytes*len(v.Fields)
	case nf.NFv9OptionsTemplateRecord:
		return templateBytes + fieldBytes*(len(v.Scopes)+len(v.Options))
	case nf.IPFIXOptionsTemplateRecord:
		return templateBytes + fieldBytes*(len(v.Scopes)+len(v.Options))
	}
	return templateBytes
}

// drop forgets the template (valid or not) kept under k, and its domain
// when that was the domain's last.
func (s *State) drop(version uint16, domain uint32, k uint64) {
	n := s.costOf(k)
	if n == 0 {
		return
	}
	dk := keyOf(version, domain)
	d := s.domains[dk]
	s.dropProgram(k)
	if _, ok := s.templates[k]; ok {
		delete(s.templates, k)
		d.templates--
	} else {
		delete(s.invalid, k)
		d.invalid--
	}
	if d.templates+d.invalid == 0 {
		n += domainBytes + d.bytes
		s.names -= len(d.ifNames)
		s.samplers -= len(d.samplers)
		delete(s.domains, dk)
	}
	s.release(n)
}

// errDataTemplate makes goflow2 hand data sets of known data templates
// over raw: decodeData reads them without goflow2's per-field allocations
// (goflow2 boxes every field value in an interface). goflow2 still frames
// the message, parses every template and decodes options data.
var errDataTemplate = fmt.Errorf("%w: data set read by spanflow", nf.ErrorTemplateNotFound)

// errInvalidTemplate makes goflow2 go on with the next set, as for a missing
// template; the collector then counts the set as bad.
var errInvalidTemplate = fmt.Errorf("%w: template cannot describe data", nf.ErrorTemplateNotFound)

func (t *templateStore) GetTemplate(version uint16, domain uint32, id uint16) (any, error) {
	k := templateKey(version, domain, id)
	if tpl, ok := t.templates[k]; ok {
		if _, data := tpl.(nf.TemplateRecord); data {
			return nil, errDataTemplate
		}
		return tpl, nil
	}
	if _, bad := t.invalid[k]; bad {
		return nil, errInvalidTemplate
	}
	return nil, nf.ErrorTemplateNotFound
}

// AddTemplate keeps a template unless a limit refuses it. Refusals are
// counted and the datagram goes on: goflow2 would drop the rest of it on
// an error.
func (t *templateStore) AddTemplate(version uint16, obsDomain uint32, id uint16, tpl any) error {
	s := (*State)(t)
	k := templateKey(version, obsDomain, id)
	var fields [][]nf.Field
	switch v := tpl.(type) {
	case nf.TemplateRecord:
		fields = [][]nf.Field{v.Fields}
	case nf.NFv9OptionsTemplateRecord:
		fields = [][]nf.Field{v.Scopes, v.Options}
	case nf.IPFIXOptionsTemplateRecord:
		fields = [][]nf.Field{v.Scopes, v.Options}
	}
	n, size, varlen := 0, 0, false
	for _, fs := range fields {
		for _, f := range fs {
			n++
			if f.Length == 0xffff {
				varlen = true
			} else {
				size += int(f.Length)
			}
		}
	}
	if n == 0 { // RFC 7011 §8.1: a template with no fields withdraws it
		if version == 10 && id == 2 { // every data template of the domain
			for k, tpl := range s.templates {
				if _, ok := tpl.(nf.TemplateRecord); ok && k>>16 == templateKey(version, obsDomain, 0)>>16 {
					s.drop(version, obsDomain, k)
				}
			}
			for k := range s.invalid {
				if k>>16 == templateKey(version, obsDomain, 0)>>16 {
					s.drop(version, obsDomain, k)
				}
			}
			return nil
		}
		s.drop(version, obsDomain, k)
		return nil
	}
	// goflow2 would loop forever on the data of a template of zero-length
	// fields: never hand it one, but keep its id to count its data as bad.
	invalid := size == 0 && !varlen
	cost := invalidBytes
	if !invalid {
		cost = templateCost(tpl)
	}
	old := s.costOf(k)
	dk := keyOf(version, obsDomain)
	d := s.domains[dk]
	if old == 0 {
		if d == nil && s.limits.MaxDomains > 0 && len(s.domains) >= s.limits.MaxDomains {
			s.refuse(reason.DomainLimit, "template %d of domain %d from %s: exporter already has templates in %d domains",
				id, obsDomain, s.exporter, len(s.domains))
			return nil
		}
		if s.limits.MaxTemplates > 0 && len(s.templates)+len(s.invalid) >= s.limits.MaxTemplates {
			s.refuse(reason.TemplateLimit, "template %d of domain %d from %s: exporter already has %d templates",
				id, obsDomain, s.exporter, len(s.templates)+len(s.invalid))
			return nil
		}
	}
	need := cost - old
	if d == nil {
		need += domainBytes
	}
	if need > 0 {
		if why := s.reserve(need); why != "" {
			// The exporter redefined the template: the old definition would
			// misread its data.
			s.drop(version, obsDomain, k)
			s.refuse(why, "template %d of domain %d from %s: %d fields, %d bytes of state kept for the exporter",
				id, obsDomain, s.exporter, n, s.bytes)
			return nil
		}
	} else {
		s.release(-need)
	}
	if d == nil {
		d = &domain{}
		s.domains[dk] = d
	}
	s.dropProgram(k) // compiled again from the new definition
	if _, ok := s.templates[k]; ok {
		delete(s.templates, k)
		d.templates--
	} else if _, ok := s.invalid[k]; ok {
		delete(s.invalid, k)
		d.invalid--
	}
	if invalid {
		s.invalid[k] = struct{}{}
		d.invalid++
		return nil
	}
	s.templates[k] = tpl
	d.templates++
	s.added = append(s.added, k)
	return nil
}

// Decode decodes one NetFlow v9 or IPFIX datagram and appends its flow
// records to out. Data sets whose template has not arrived are held and
// decoded when it does (their records then come out of a later Decode).
func (s *State) Decode(payload []byte, received time.Time, out []flow.Record) ([]flow.Record, Info, error) {
	var info Info
	if len(payload) < 4 {
		return out, info, reason.Errorf(reason.Short, "datagram of %d bytes from %s", len(payload), s.exporter)
	}
	// The header lives in the state: records point at it while they are
	// decoded, and a local would escape to the heap once per datagram.
	s.msg = header{}
	h := &s.msg
	h.version = binary.BigEndian.Uint16(payload)
	switch h.version {
	case 9:
		if len(payload) < 20 {
			return out, info, reason.Errorf(reason.Short, "netflow v9 header from %s: %d bytes, want 20", s.exporter, len(payload))
		}
		h.sysUptime = binary.BigEndian.Uint32(payload[4:])
		h.exportSecs = binary.BigEndian.Uint32(payload[8:])
		info.Sequence = binary.BigEndian.Uint32(payload[12:])
		h.domain = binary.BigEndian.Uint32(payload[16:])
	case 10:
		if len(payload) < 16 {
			return out, info, reason.Errorf(reason.Short, "ipfix header from %s: %d bytes, want 16", s.exporter, len(payload))
		}
		l := int(binary.BigEndian.Uint16(payload[2:]))
		if l > len(payload) || l < 16 {
			return out, info, reason.Errorf(reason.Short, "ipfix message from %s: length field %d, datagram %d bytes", s.exporter, l, len(payload))
		}
		payload = payload[:l]
		h.exportSecs = binary.BigEndian.Uint32(payload[4:])
		info.Sequence = binary.BigEndian.Uint32(payload[8:])
		h.domain = binary.BigEndian.Uint32(payload[12:])
	default:
		return out, info, reason.Errorf(reason.Version, "netflow version %d from %s", h.version, s.exporter)
	}
	info.Version, info.Domain = h.version, h.domain
	hdrLen := 20
	if h.version == 10 {
		hdrLen = 16
	}
	s.added, s.err, s.refused = s.added[:0], nil, reason.Tally{}
	count := -1 // IPFIX: every set of the message
	if h.version == 9 {
		count = int(binary.BigEndian.Uint16(payload[2:]))
		if n := v9Sets(payload[hdrLen:], count); n != count {
			// goflow2 reads the header's count of sets: give it them all.
			payload = append([]byte(nil), payload...)
			binary.BigEndian.PutUint16(payload[2:], uint16(n))
			count = n
		}
	}
	if !goflow2Only {
		if out, ok := s.decodeKnown(payload[hdrLen:], count, h, received, out, &info); ok {
			return out, info, nil
		}
	}
	if p, ignored, ok := s.stripSets(payload, hdrLen, count, h); ok {
		payload, info.IgnoredSets = p, ignored
	}
	if err := checkTemplates(payload[hdrLen:], h.version); err != nil {
		return out, info, reason.Errorf(reason.Template, "%s from %s: %w", kindName(h.version), s.exporter, err)
	}

	// goflow2 reads the payload in place: nothing of it is kept after
	// Decode (held sets are copies), and no exporter keeps a buffer as big
	// as the biggest datagram it ever sent.
	s.buf = *bytes.NewBuffer(payload)
	s.v9, s.ipfix = nf.NFv9Packet{}, nf.IPFIXPacket{}
	defer s.scrub()
	derr := nf.DecodeMessageVersion(&s.buf, (*templateStore)(s), &s.v9, &s.ipfix)
	var sets []any
	if h.version == 9 {
		sets = s.v9.FlowSets
	} else {
		sets = s.ipfix.FlowSets
	}
	// A fault of the datagram is its error before any limit's refusal: the
	// refusals are counted one by one (Info.Refused), the fault only here.
	var err error
	switch {
	case derr == nil || (errors.Is(derr, nf.ErrorTemplateNotFound) && !errors.Is(derr, errInvalidTemplate)):
		// Missing templates and data sets left to decodeData are not errors.
	case errors.Is(derr, errInvalidTemplate):
		err = reason.Errorf(reason.Template, "%s from %s: data for a template of zero-length fields", kindName(h.version), s.exporter)
	default:
		err = reason.Errorf(reason.Set, "%s from %s: %w", kindName(h.version), s.exporter, derr)
	}
	// Options records first: a data record names its sampler before or
	// after the options record that announces its rate, in the same
	// datagram; either way it gets that rate.
	for _, set := range sets {
		if fs, ok := set.(nf.OptionsDataFlowSet); ok {
			for i := range fs.Records {
				s.applyOptions(h, &fs.Records[i])
				info.OptionsRecords++
				info.MessageRecords++
			}
		}
	}
	var defs *messageDefs // built at the first data set it is asked of
	for idx, set := range sets {
		switch fs := set.(type) {
		case nf.DataFlowSet:
			for i := range fs.Records {
				out = s.appendDataFields(out, h, fs.Records[i].Values, received)
				info.Records++
				info.MessageRecords++
			}
		case nf.RawFlowSet:
			k := templateKey(h.version, h.domain, fs.Id)
			if _, bad := s.invalid[k]; bad {
				if err == nil {
					err = reason.Errorf(reason.Template, "%s from %s: data set %d: template of zero-length fields", kindName(h.version), s.exporter, fs.Id)
				}
				continue
			}
			if fs.Id < 256 {
				continue
			}
			if _, ok := s.templates[k].(nf.TemplateRecord); ok {
				if defs == nil && len(s.added) > 0 {
					defs = newMessageDefs(s.added, sets)
				}
				if defs != nil && defs.heldBefore(k, idx, len(fs.Records) == 0) {
					// The set came before its template in this datagram:
					// goflow2 could not decode it; it was held until now.
					info.Held++
				}
				n := len(out)
				out = s.decodeSet(out, h, k, fs.Records, received)
				info.Records += len(out) - n
				info.MessageRecords += len(out) - n
				continue
			}
			// Refused sets are counted under their limit only: they were
			// never held, so they do not expire (no_template) either.
			if len(s.pending) >= s.limits.MaxPending {
				s.refuse(reason.PendingLimit, "%s from %s: %d data sets already wait for templates", kindName(h.version), s.exporter, len(s.pending))
				continue
			}
			if why := s.reserveHeld(pendingBytes + len(fs.Records)); why != "" {
				s.refuse(why, "%s from %s: data set of %d bytes for template %d, %d bytes of state kept for the exporter",
					kindName(h.version), s.exporter, len(fs.Records), fs.Id, s.bytes)
				continue
			}
			s.pending = append(s.pending, pendingSet{key: k, version: h.version, domain: h.domain, hdr: *h,
				data: bytes.Clone(fs.Records), received: received})
			info.Held++
		}
	}
	out = s.decodePending(out, &info, received)
	info.Templates = len(s.templates)
	info.Refused = s.refused
	if err == nil {
		err = s.err
	}
	return out, info, err
}

// goflow2Only turns decodeKnown off, for the tests that compare it with
// goflow2's path.
var goflow2Only = false

// decodeKnown decodes a message that holds only data sets of known data
// templates, the usual datagram, without goflow2: goflow2 frames a message
// into sets it allocates (a slice, a buffer, an error joined per data set
// it hands over raw), which cost more than the records of a small
// datagram. It reads the sets as goflow2's DecodeMessageCommon does (NetFlow
// v9: at most count sets, the header's count; a set longer than what is
// left is cut to it) and reports false, having changed nothing, for anything else
// (template sets, options data, unknown or invalid templates, a bad set
// header): those take goflow2's path.
func (s *State) decodeKnown(sets []byte, count int, h *header, received time.Time, out []flow.Record, info *Info) ([]flow.Record, bool) {
	rest, n := sets, 0
	for len(rest) > 0 && n != count {
		if len(rest) < 4 {
			return out, false
		}
		id, l := binary.BigEndian.Uint16(rest), int(binary.BigEndian.Uint16(rest[2:]))
		if l < 4 || id < 256 {
			return out, false
		}
		if k := templateKey(h.version, h.domain, id); !(s.hot.ok && s.hot.k == k) {
			if _, ok := s.templates[k].(nf.TemplateRecord); !ok {
				return out, false
			}
		}
		rest = rest[min(l, len(rest)):]
		n++
	}
	if len(rest) > 0 {
		return out, false // sets past the count: checkTemplates looks at them
	}
	rest, n = sets, 0
	for len(rest) > 0 && n != count {
		id, l := binary.BigEndian.Uint16(rest), int(binary.BigEndian.Uint16(rest[2:]))
		end := min(l, len(rest))
		m := len(out)
		out = s.decodeSet(out, h, templateKey(h.version, h.domain, id), rest[4:end], received)
		info.Records += len(out) - m
		info.MessageRecords += len(out) - m
		rest = rest[end:]
		n++
	}
	out = s.decodePending(out, info, received)
	info.Templates = len(s.templates)
	return out, true
}

// v9Sets is how many sets of a NetFlow v9 datagram to read, given its
// header's count. The count is of records (RFC 3954), so a datagram has at
// most that many sets, and goflow2 reads at most that many. softflowd
// 1.1.0 writes the number of its templates when it sends them: the data
// sets behind them were past the count and dropped without a word (a
// short capture gave no flow at all). As nfdump does, every set that the
// datagram holds whole is read; bytes after the sets that are not a whole
// set stay ignored, as before, when the count did not reach them.
func v9Sets(sets []byte, count int) int {
	n := 0
	for len(sets) >= 4 {
		l := int(binary.BigEndian.Uint16(sets[2:]))
		if l < 4 || l > len(sets) {
			break
		}
		sets = sets[l:]
		n++
	}
	return max(n, count)
}

// scrub drops what Decode used for one datagram: the payload, goflow2's
// parsed sets, and scratch space grown by an unusual datagram.
func (s *State) scrub() {
	s.buf = bytes.Buffer{}
	s.hdr = nil
	s.v9, s.ipfix = nf.NFv9Packet{}, nf.IPFIXPacket{}
	if cap(s.added) > 1024 {
		s.added = nil
	}
}

// checkTemplates walks the template and options template sets of a
// message before goflow2 does: goflow2 allocates what a template's field
// count says (12 bytes a field, 786 kB for 65,535) before reading the
// fields, so a 28-byte datagram could make it allocate that much.
func checkTemplates(sets []byte, version uint16) error {
	for len(sets) >= 4 {
		id, l := binary.BigEndian.Uint16(sets), int(binary.BigEndian.Uint16(sets[2:]))
		if l < 4 || l > len(sets) {
			return nil // goflow2 reports it, without allocating for it
		}
		body := sets[4:l]
		sets = sets[l:]
		switch {
		case id == 0 && version == 9, id == 2 && version == 10:
			for len(body) >= 4 {
				tid, n := binary.BigEndian.Uint16(body), int(binary.BigEndian.Uint16(body[2:]))
				var ok bool
				if body, ok = skipFields(body[4:], n, version); !ok {
					return fmt.Errorf("template %d of %d fields in %d bytes", tid, n, len(body))
				}
			}
		case id == 1 && version == 9:
			for len(body) >= 6 {
				tid := binary.BigEndian.Uint16(body)
				n := int(binary.BigEndian.Uint16(body[2:]))/4 + int(binary.BigEndian.Uint16(body[4:]))/4
				var ok bool
				if body, ok = skipFields(body[6:], n, version); !ok {
					return fmt.Errorf("options template %d of %d fields in %d bytes", tid, n, len(body))
				}
			}
		case id == 3 && version == 10:
			for len(body) >= 6 {
				tid := binary.BigEndian.Uint16(body)
				n, scope := int(binary.BigEndian.Uint16(body[2:])), int(binary.BigEndian.Uint16(body[4:]))
				var ok bool
				if body, ok = skipFields(body[6:], max(n, scope), version); !ok {
					return fmt.Errorf("options template %d of %d fields in %d bytes", tid, max(n, scope), len(body))
				}
			}
		}
	}
	return nil
}

// reservedSet reports whether a set id is reserved: neither a template,
// an options template nor a data set. Collectors ignore such sets (RFC 7011
// §3.3.2); goflow2 would stop at them and lose the rest of the message.
func reservedSet(id, version uint16) bool {
	if version == 9 {
		return id >= 2 && id < 256
	}
	return id < 2 || id > 3 && id < 256
}

// withdrawsOptions reports whether an IPFIX options template set holds a
// withdrawal: a record of template id and a field count of 0, 4 bytes
// (RFC 7011 §8.1), which goflow2 reads as the 6-byte header of an options
// template, misreading the rest of the message.
func withdrawsOptions(body []byte) bool {
	for len(body) >= 4 {
		tid, n := binary.BigEndian.Uint16(body), int(binary.BigEndian.Uint16(body[2:]))
		if n == 0 {
			return tid == 3 || tid >= 256 // else padding
		}
		if len(body) < 6 {
			return false
		}
		var ok bool
		if body, ok = skipFields(body[6:], n, 10); !ok {
			return false
		}
	}
	return false
}

// stripSets takes out of a message what goflow2 cannot read but a
// collector must accept: sets of a reserved id (skipped by their length,
// and counted) and IPFIX options template withdrawals (applied here). It
// returns the message without them, and false, having changed nothing,
// when the message has neither (the usual case: no allocation). count is
// the NetFlow v9 header's set count (goflow2 reads that many sets), -1 for
// IPFIX.
func (s *State) stripSets(msg []byte, hdrLen, count int, h *header) ([]byte, int, bool) {
	strip := false
	for rest, i := msg[hdrLen:], 0; len(rest) >= 4 && i != count; i++ {
		id, l := binary.BigEndian.Uint16(rest), int(binary.BigEndian.Uint16(rest[2:]))
		if l < 4 || l > len(rest) {
			break // goflow2 reports it
		}
		if reservedSet(id, h.version) || h.version == 10 && id == 3 && withdrawsOptions(rest[4:l]) {
			strip = true
			break
		}
		rest = rest[l:]
	}
	if !strip {
		return msg, 0, false
	}
	out := append(make([]byte, 0, len(msg)), msg[:hdrLen]...)
	rest, i, ignored, removed := msg[hdrLen:], 0, 0, 0
	for ; len(rest) >= 4 && i != count; i++ {
		id, l := binary.BigEndian.Uint16(rest), int(binary.BigEndian.Uint16(rest[2:]))
		if l < 4 || l > len(rest) {
			break
		}
		set := rest[:l]
		rest = rest[l:]
		switch {
		case reservedSet(id, h.version):
			ignored++
			removed++
		case h.version == 10 && id == 3 && withdrawsOptions(set[4:]):
			start := len(out)
			out = append(out, set[:4]...)
			s.withdrawOptions(h, set[4:], &out)
			if len(out) == start+4 { // only withdrawals
				out = out[:start]
				removed++
			} else {
				binary.BigEndian.PutUint16(out[start+2:], uint16(len(out)-start))
			}
		default:
			out = append(out, set...)
		}
	}
	out = append(out, rest...) // past the count, or what goflow2 reports
	if h.version == 9 {
		binary.BigEndian.PutUint16(out[2:], uint16(count-removed))
	} else {
		binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
	}
	return out, ignored, true
}

// withdrawOptions applies the withdrawals of an IPFIX options template
// set's body (template id 3: every options template of the domain) and
// appends its other records to out.
func (s *State) withdrawOptions(h *header, body []byte, out *[]byte) {
	for len(body) >= 4 {
		tid, n := binary.BigEndian.Uint16(body), int(binary.BigEndian.Uint16(body[2:]))
		if n == 0 {
			switch {
			case tid == 3:
				for k, tpl := range s.templates {
					if _, ok := tpl.(nf.IPFIXOptionsTemplateRecord); ok && k>>16 == templateKey(h.version, h.domain, 0)>>16 {
						s.drop(h.version, h.domain, k)
					}
				}
			case tid >= 256:
				k := templateKey(h.version, h.domain, tid)
				if _, ok := s.templates[k].(nf.IPFIXOptionsTemplateRecord); ok {
					s.drop(h.version, h.domain, k)
				} else if _, ok := s.invalid[k]; ok {
					s.drop(h.version, h.domain, k)
				}
			default:
				*out = append(*out, body...) // padding
				return
			}
			body = body[4:]
			continue
		}
		if len(body) < 6 {
			break
		}
		rest, ok := skipFields(body[6:], n, 10)
		if !ok {
			*out = append(*out, body...) // checkTemplates reports it
			return
		}
		*out = append(*out, body[:len(body)-len(rest)]...)
		body = rest
	}
	*out = append(*out, body...)
}

// skipFields skips n field specifiers, or reports that body is too short.
func skipFields(body []byte, n int, version uint16) ([]byte, bool) {
	if 4*n > len(body) {
		return body, false
	}
	for range n {
		if len(body) < 4 {
			return body, false
		}
		l := 4
		if version == 10 && body[0]&0x80 != 0 {
			l = 8 // with an enterprise number
		}
		if len(body) < l {
			return body, false
		}
		body = body[l:]
	}
	return body, true
}

// decodePending decodes the held sets whose template came, and drops the
// ones that waited too long.
func (s *State) decodePending(out []flow.Record, info *Info, now time.Time) []flow.Record {
	if len(s.pending) == 0 {
		return out
	}
	keep := s.pending[:0]
	for _, p := range s.pending {
		tpl, ok := s.templates[p.key]
		if !ok {
			if s.limits.PendingTimeout > 0 && now.Sub(p.received) > s.limits.PendingTimeout {
				info.Expired++
				s.releaseHeld(pendingBytes + len(p.data))
				continue
			}
			keep = append(keep, p)
			continue
		}
		s.releaseHeld(pendingBytes + len(p.data))
		buf := bytes.NewBuffer(p.data)
		switch t := tpl.(type) {
		case nf.TemplateRecord:
			n := len(out)
			out = s.decodeSet(out, &p.hdr, p.key, p.data, p.received)
			info.Records += len(out) - n
		case nf.NFv9OptionsTemplateRecord:
			recs, _ := nf.DecodeOptionsDataSet(p.version, buf, t.Scopes, t.Options)
			for i := range recs {
				s.applyOptions(&p.hdr, &recs[i])
				info.OptionsRecords++
			}
		case nf.IPFIXOptionsTemplateRecord:
			recs, _ := nf.DecodeOptionsDataSet(p.version, buf, t.Scopes, t.Options)
			for i := range recs {
				s.applyOptions(&p.hdr, &recs[i])
				info.OptionsRecords++
			}
		}
	}
	clear(s.pending[len(keep):])
	s.pending = keep
	return out
}

// messageDefs says, for the data sets of one datagram, which of their
// templates the datagram itself defined, and in which set first: one pass
// over the datagram's sets, then a lookup per data set. (A search of the
// sets per data set took 42 ms on a datagram of 6,000 data sets and 4,000
// template records: BenchmarkTemplatesAndData.)
type messageDefs struct {
	added map[uint64]struct{} // the templates the datagram added
	first map[uint16]int      // template id → index of the first template set defining it
}

func newMessageDefs(added []uint64, sets []any) *messageDefs {
	d := &messageDefs{added: make(map[uint64]struct{}, len(added)), first: map[uint16]int{}}
	for _, k := range added {
		d.added[k] = struct{}{}
	}
	for i, x := range sets {
		if tf, ok := x.(nf.TemplateFlowSet); ok {
			for _, r := range tf.Records {
				if _, ok := d.first[r.TemplateId]; !ok {
					d.first[r.TemplateId] = i
				}
			}
		}
	}
	return d
}

// heldBefore reports whether the data set at index idx, of template k,
// waited for its template: the datagram added the template, in no set
// before this one. (A data set without records cannot be told apart from
// another: it counts as held only when no set of the datagram defines its
// template.)
func (d *messageDefs) heldBefore(k uint64, idx int, empty bool) bool {
	if _, ok := d.added[k]; !ok {
		return false
	}
	at, ok := d.first[uint16(k)]
	if empty {
		return !ok
	}
	return !ok || at > idx
}

// decodeData reads the records of a data set as goflow2's DecodeDataSet
// does (same handling of variable-length fields, padding and truncation),
// straight into flow records.
// decodeSet decodes the records of a data set of the data template kept
// under k: with the template's program when its fields have fixed lengths.
func (s *State) decodeSet(out []flow.Record, h *header, k uint64, data []byte, received time.Time) []flow.Record {
	t := s.dataTemplate(k, h)
	if t.p != nil {
		return s.run(out, t.p, t.d, h, data, received)
	}
	return s.decodeData(out, h, t.fields, data, received)
}

// programCost is the estimated bytes of a program, for the bytes limits.
func programCost(p *program) int { return programBytes + programOpBytes*len(p.ops) }

// dropProgram forgets the program of the template kept under k, if it
// has one, and the last template used.
func (s *State) dropProgram(k uint64) {
	if p := s.programs[k]; p != nil {
		s.release(programCost(p))
	}
	delete(s.programs, k)
	s.hot = hotTemplate{}
}

// hotTemplate is a data template with what decoding its sets needs: its
// fields, its program and its domain's state. The state keeps the last one
// used, so that the sets of an exporter's usual template take no map
// lookup: from many exporters each lookup is a cache miss, four a datagram.
// Anything that changes templates or domains forgets it.
type hotTemplate struct {
	ok     bool
	k      uint64
	fields []nf.Field
	p      *program // nil: decoded field by field
	d      *domain
}

// dataTemplate returns the data template kept under k, which must be one,
// compiling its program when it has none yet.
func (s *State) dataTemplate(k uint64, h *header) *hotTemplate {
	if s.hot.ok && s.hot.k == k {
		return &s.hot
	}
	fields := s.templates[k].(nf.TemplateRecord).Fields
	p, ok := s.programs[k]
	if !ok {
		// A program the exporter's bytes have no room for is not kept:
		// its data is read field by field, as fast as before programs.
		if p = compile(fields); p != nil && s.reserve(programCost(p)) != "" {
			p = nil
		}
		s.programs[k] = p
	}
	s.hot = hotTemplate{ok: true, k: k, fields: fields, p: p, d: s.domain(h)}
	return &s.hot
}

func (s *State) decodeData(out []flow.Record, h *header, fields []nf.Field, data []byte, received time.Time) []flow.Record {
	size := 0
	for _, f := range fields {
		if f.Length != 0xffff {
			size += int(f.Length)
		}
	}
	// One pass per record: each field is applied as it is read (a record
	// cut inside a variable-length field's length is dropped whole). The
	// records of a set share its domain, which no data record changes.
	d := s.domain(h)
	for len(data) > 0 && len(data) >= size {
		var r *flow.Record
		out, r = s.beginRecord(out, h, received)
		var t recordTimes
		for _, f := range fields {
			l := int(f.Length)
			if f.Length == 0xffff {
				if len(data) < 1 {
					return out[:len(out)-1]
				}
				l, data = int(data[0]), data[1:]
				if l == 0xff {
					if len(data) < 2 {
						return out[:len(out)-1]
					}
					l, data = int(binary.BigEndian.Uint16(data)), data[2:]
				}
			}
			l = min(l, len(data))
			pen := f.Pen
			if !f.PenProvided {
				pen = 0
			}
			s.applyField(r, &t, f.Type, pen, data[:l:l], h.version)
			data = data[l:]
		}
		s.finish(r, &t, h, d)
	}
	return out
}

// Expire drops the held data sets older than the pending timeout at now
// and says how many there were (an exporter that went quiet never sends the
// datagram that would expire them in Decode).
func (s *State) Expire(now time.Time) int {
	n := 0
	keep := s.pending[:0]
	for _, p := range s.pending {
		if s.limits.PendingTimeout > 0 && now.Sub(p.received) > s.limits.PendingTimeout {
			n++
			s.releaseHeld(pendingBytes + len(p.data))
			continue
		}
		keep = append(keep, p)
	}
	clear(s.pending[len(keep):])
	s.pending = keep
	return n
}

// Flush drops every held data set (the end of a capture) and says how many
// there were.
func (s *State) Flush() int {
	n := len(s.pending)
	for _, p := range s.pending {
		s.releaseHeld(pendingBytes + len(p.data))
	}
	s.pending = nil
	return n
}

func kindName(version uint16) string {
	if version == 9 {
		return "netflow v9"
	}
	return "ipfix"
}

// domain is the state of the datagram's domain: a domain has state while
// it has templates, and data and options need one.
func (s *State) domain(h *header) *domain {
	if d := s.domains[keyOf(h.version, h.domain)]; d != nil {
		return d
	}
	return &noDomain
}
