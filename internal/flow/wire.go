package flow

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"
)

// The wire encoding carries records between processes (collector ─▶ Kafka ─▶
// indexer): every field of a Record, lossless, compact (varints, addresses
// in 4 or 16 bytes, absent parts in one byte), and versioned. A message is
//
//	'S' 'F' WireVersion count(uvarint) record...
//
// A change of layout takes a new WireVersion; the Kafka topic's name carries
// the version, so old and new collectors and indexers never read each
// other's messages by mistake.

// WireVersion is the version of the layout AppendWire writes.
const WireVersion = 1

// ErrWire is wrapped by every error of DecodeWire.
var ErrWire = errors.New("bad flow message")

// AppendWire appends the message holding recs to b.
func AppendWire(b []byte, recs []Record) []byte {
	b = append(b, 'S', 'F', WireVersion)
	b = binary.AppendUvarint(b, uint64(len(recs)))
	for i := range recs {
		b = appendRecord(b, &recs[i])
	}
	return b
}

func appendRecord(b []byte, r *Record) []byte {
	b = append(b, byte(r.Kind))
	b = appendWireAddr(b, r.ObserverIP)
	b = binary.AppendUvarint(b, uint64(r.ObservationDomain))
	b = binary.AppendUvarint(b, r.ObservationPoint)
	b = appendWireTime(b, r.Received)
	b = appendWireTime(b, r.Start)
	b = appendWireTime(b, r.End)
	b = appendWireAddr(b, r.SrcAddr)
	b = appendWireAddr(b, r.DstAddr)
	b = binary.BigEndian.AppendUint16(b, r.SrcPort)
	b = binary.BigEndian.AppendUint16(b, r.DstPort)
	b = append(b, r.Proto)
	b = append(b, r.SrcMAC[:]...)
	b = append(b, r.DstMAC[:]...)
	b = binary.AppendUvarint(b, uint64(r.VLAN))
	b = binary.AppendUvarint(b, uint64(r.InnerVLAN))
	b = binary.AppendUvarint(b, r.SegmentID)
	b = append(b, r.TOS)
	b = binary.AppendUvarint(b, uint64(r.TCPFlags))
	b = append(b, r.ICMPType, r.ICMPCode)
	b = binary.AppendUvarint(b, r.Bytes)
	b = binary.AppendUvarint(b, r.Packets)
	b = binary.AppendUvarint(b, uint64(r.SamplingRate))
	b = binary.AppendUvarint(b, uint64(r.InIf))
	b = binary.AppendUvarint(b, uint64(r.OutIf))
	b = appendWireString(b, r.InIfName)
	b = appendWireString(b, r.OutIfName)
	b = append(b, byte(r.InIfSpecial), byte(r.OutIfSpecial))
	b = binary.AppendUvarint(b, uint64(r.InIfCount))
	b = binary.AppendUvarint(b, uint64(r.OutIfCount))
	b = append(b, boolByte(r.NoPorts)|boolByte(r.NoTCPFlags)<<1)
	if d := r.Discard; d != nil {
		b = append(b, 1)
		b = binary.AppendUvarint(b, uint64(d.Reason))
		b = append(b, boolByte(d.Notification))
		b = binary.AppendUvarint(b, uint64(d.Unreported))
	} else {
		b = append(b, 0)
	}
	b = append(b, r.EndReason)
	b = binary.AppendVarint(b, int64(r.TCP.RTTClient))
	b = binary.AppendVarint(b, int64(r.TCP.RTTServer))
	b = binary.AppendUvarint(b, uint64(r.TCP.Retransmissions))
	b = binary.AppendUvarint(b, uint64(r.TCP.ZeroWindows))
	b = appendEndpoint(b, &r.Src)
	b = appendEndpoint(b, &r.Dst)
	b = appendWireString(b, r.Locality)
	b = appendWireString(b, r.Direction)
	if c := r.Counters; c != nil {
		b = append(b, 1)
		for _, v := range []uint64{uint64(c.Index), uint64(c.Type), c.Speed, uint64(c.Direction), uint64(c.Status),
			c.InOctets, c.InUcastPkts, c.InMulticastPkts, c.InBroadcastPkts, c.InDiscards, c.InErrors, c.InUnknownProtos,
			c.OutOctets, c.OutUcastPkts, c.OutMulticastPkts, c.OutBroadcastPkts, c.OutDiscards, c.OutErrors, uint64(c.Promiscuous)} {
			b = binary.AppendUvarint(b, v)
		}
	} else {
		b = append(b, 0)
	}
	if e := r.Exporter; e != nil {
		b = append(b, 1)
		b = binary.AppendVarint(b, int64(e.Interval))
		for _, v := range []uint64{e.Datagrams, e.Records, e.SequenceLosses, e.Templates, e.DecodeErrors} {
			b = binary.AppendUvarint(b, v)
		}
	} else {
		b = append(b, 0)
	}
	if s := r.SFlowCounters; s != nil {
		b = append(b, 1)
		b = appendWireString(b, s.Structure)
		b = binary.AppendUvarint(b, uint64(s.SourceType))
		b = binary.AppendUvarint(b, uint64(s.SourceIndex))
		b = binary.AppendUvarint(b, uint64(len(s.Values)))
		for _, v := range s.Values {
			b = appendWireString(b, v.Name)
			b = append(b, byte(v.Kind))
			b = binary.AppendUvarint(b, v.Num)
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(v.Float))
			b = appendWireString(b, v.Str)
		}
	} else {
		b = append(b, 0)
	}
	b = appendWireAddr(b, r.ExporterAddr)
	b = binary.AppendUvarint(b, uint64(len(r.Extra)))
	for _, x := range r.Extra {
		b = appendWireString(b, x.Name)
		b = binary.AppendUvarint(b, x.Num)
		b = appendWireString(b, x.Str)
		flags := boolByte(x.IsStr)
		if x.Raw != nil {
			flags |= 2
		}
		b = append(b, flags)
		if x.Raw != nil {
			b = binary.AppendUvarint(b, uint64(len(x.Raw)))
			b = append(b, x.Raw...)
		}
	}
	return b
}

func appendEndpoint(b []byte, e *Endpoint) []byte {
	if v := e.VSphere; v != nil {
		b = append(b, 1)
		for _, s := range []string{v.VMName, v.VMUUID, v.HostName, v.ClusterName, v.DatacenterName, v.NetworkName, v.Project} {
			b = appendWireString(b, s)
		}
	} else {
		b = append(b, 0)
	}
	if n := e.Network; n != nil {
		b = append(b, 1)
		for _, s := range []string{n.Name, n.Site, n.Role, n.Project} {
			b = appendWireString(b, s)
		}
	} else {
		b = append(b, 0)
	}
	return b
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// appendWireAddr writes the length (0: no address, 4 or 16) then the bytes; a
// zone is not kept (flow addresses have none).
func appendWireAddr(b []byte, a netip.Addr) []byte {
	switch {
	case !a.IsValid():
		return append(b, 0)
	case a.Is4():
		v := a.As4()
		return append(append(b, 4), v[:]...)
	}
	v := a.As16()
	return append(append(b, 16), v[:]...)
}

// appendWireTime writes 0 for the zero time, else 1, the Unix seconds and the
// nanoseconds: any year round-trips, not only those UnixNano holds.
func appendWireTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

func appendWireString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// DecodeWire appends the records of message b to recs. A message of
// another version, or cut or malformed, is an error wrapping ErrWire; the
// records decoded before the fault are not returned.
func DecodeWire(b []byte, recs []Record) ([]Record, error) {
	if len(b) < 3 || b[0] != 'S' || b[1] != 'F' {
		return recs, fmt.Errorf("%w: no spanflow header", ErrWire)
	}
	if b[2] != WireVersion {
		return recs, fmt.Errorf("%w: version %d, this build reads %d", ErrWire, b[2], WireVersion)
	}
	d := wireReader{b: b[3:]}
	n := d.uvarint()
	// Every record takes well over 32 bytes: a count beyond that is a lie.
	if n > uint64(len(d.b))/32+1 {
		return recs, fmt.Errorf("%w: %d records announced in %d bytes", ErrWire, n, len(d.b))
	}
	start := len(recs)
	for i := uint64(0); i < n && d.err == nil; i++ {
		recs = append(recs, Record{})
		d.record(&recs[len(recs)-1])
	}
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%d bytes after the last record", len(d.b))
	}
	if d.err != nil {
		clear(recs[start:])
		return recs[:start], fmt.Errorf("%w: %w", ErrWire, d.err)
	}
	return recs, nil
}

// wireReader reads a message; its first fault sticks in err and every later
// read returns zero values.
type wireReader struct {
	b   []byte
	err error
}

var errShort = errors.New("cut short")

func (d *wireReader) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil
}

func (d *wireReader) byte() byte {
	if len(d.b) < 1 {
		d.fail(errShort)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *wireReader) bytes(n int) []byte {
	if n < 0 || len(d.b) < n {
		d.fail(errShort)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *wireReader) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errors.New("bad varint"))
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *wireReader) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(errors.New("bad varint"))
		return 0
	}
	d.b = d.b[n:]
	return v
}

// u32, u16 read a uvarint that must fit.
func (d *wireReader) u32() uint32 {
	v := d.uvarint()
	if v > math.MaxUint32 {
		d.fail(fmt.Errorf("value %d out of range", v))
	}
	return uint32(v)
}

func (d *wireReader) u16() uint16 {
	v := d.uvarint()
	if v > math.MaxUint16 {
		d.fail(fmt.Errorf("value %d out of range", v))
	}
	return uint16(v)
}

func (d *wireReader) be16() uint16 {
	if b := d.bytes(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (d *wireReader) flag() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail(errors.New("bad presence byte"))
	return false
}

func (d *wireReader) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail(errShort)
		return ""
	}
	return string(d.bytes(int(n)))
}

func (d *wireReader) addr() netip.Addr {
	switch d.byte() {
	case 0:
		return netip.Addr{}
	case 4:
		if b := d.bytes(4); b != nil {
			return netip.AddrFrom4([4]byte(b))
		}
	case 16:
		if b := d.bytes(16); b != nil {
			return netip.AddrFrom16([16]byte(b))
		}
	default:
		d.fail(errors.New("bad address length"))
	}
	return netip.Addr{}
}

func (d *wireReader) time() time.Time {
	if !d.flag() {
		return time.Time{}
	}
	sec, ns := d.varint(), d.uvarint()
	if ns >= 1e9 {
		d.fail(errors.New("bad nanoseconds"))
		return time.Time{}
	}
	return time.Unix(sec, int64(ns)).UTC()
}

func (d *wireReader) record(r *Record) {
	r.Kind = Kind(d.byte())
	r.ObserverIP = d.addr()
	r.ObservationDomain = d.u32()
	r.ObservationPoint = d.uvarint()
	r.Received, r.Start, r.End = d.time(), d.time(), d.time()
	r.SrcAddr, r.DstAddr = d.addr(), d.addr()
	r.SrcPort, r.DstPort = d.be16(), d.be16()
	r.Proto = d.byte()
	copy(r.SrcMAC[:], d.bytes(6))
	copy(r.DstMAC[:], d.bytes(6))
	r.VLAN, r.InnerVLAN = d.u16(), d.u16()
	r.SegmentID = d.uvarint()
	r.TOS = d.byte()
	r.TCPFlags = d.u16()
	r.ICMPType, r.ICMPCode = d.byte(), d.byte()
	r.Bytes, r.Packets = d.uvarint(), d.uvarint()
	r.SamplingRate = d.u32()
	r.InIf, r.OutIf = d.u32(), d.u32()
	r.InIfName, r.OutIfName = d.string(), d.string()
	r.InIfSpecial, r.OutIfSpecial = IfSpecial(d.byte()), IfSpecial(d.byte())
	r.InIfCount, r.OutIfCount = d.u32(), d.u32()
	bits := d.byte()
	r.NoPorts, r.NoTCPFlags = bits&1 != 0, bits&2 != 0
	if d.flag() {
		r.Discard = &Discard{Reason: d.u32(), Notification: d.flag(), Unreported: d.u32()}
	}
	r.EndReason = d.byte()
	r.TCP.RTTClient, r.TCP.RTTServer = time.Duration(d.varint()), time.Duration(d.varint())
	r.TCP.Retransmissions, r.TCP.ZeroWindows = d.u32(), d.u32()
	d.endpoint(&r.Src)
	d.endpoint(&r.Dst)
	r.Locality, r.Direction = d.string(), d.string()
	if d.flag() {
		c := &IfCounters{}
		c.Index, c.Type, c.Speed, c.Direction, c.Status = d.u32(), d.u32(), d.uvarint(), d.u32(), d.u32()
		for _, p := range []*uint64{&c.InOctets, &c.InUcastPkts, &c.InMulticastPkts, &c.InBroadcastPkts, &c.InDiscards, &c.InErrors,
			&c.InUnknownProtos, &c.OutOctets, &c.OutUcastPkts, &c.OutMulticastPkts, &c.OutBroadcastPkts, &c.OutDiscards, &c.OutErrors} {
			*p = d.uvarint()
		}
		c.Promiscuous = d.u32()
		r.Counters = c
	}
	if d.flag() {
		e := &ExporterStats{Interval: time.Duration(d.varint())}
		e.Datagrams, e.Records, e.SequenceLosses, e.Templates, e.DecodeErrors = d.uvarint(), d.uvarint(), d.uvarint(), d.uvarint(), d.uvarint()
		r.Exporter = e
	}
	if d.flag() {
		s := &CounterSet{Structure: d.string(), SourceType: d.u32(), SourceIndex: d.u32()}
		n := d.uvarint()
		if n > uint64(len(d.b))/11 { // a value takes at least 11 bytes
			d.fail(fmt.Errorf("%d counter values announced in %d bytes", n, len(d.b)))
			return
		}
		if n > 0 {
			s.Values = make([]CounterValue, n)
		}
		for i := range s.Values {
			v := &s.Values[i]
			v.Name, v.Kind, v.Num = d.string(), CounterKind(d.byte()), d.uvarint()
			if b := d.bytes(8); b != nil {
				v.Float = math.Float64frombits(binary.BigEndian.Uint64(b))
			}
			v.Str = d.string()
		}
		r.SFlowCounters = s
	}
	r.ExporterAddr = d.addr()
	n := d.uvarint()
	if n > uint64(len(d.b))/4 { // an extra takes at least 4 bytes
		d.fail(fmt.Errorf("%d extra elements announced in %d bytes", n, len(d.b)))
		return
	}
	if n > 0 {
		r.Extra = make([]Extra, n)
	}
	for i := range r.Extra {
		x := &r.Extra[i]
		x.Name, x.Num, x.Str = d.string(), d.uvarint(), d.string()
		flags := d.byte()
		if flags > 3 {
			d.fail(errors.New("bad extra flags"))
			return
		}
		x.IsStr = flags&1 != 0
		if flags&2 != 0 {
			n := d.uvarint()
			if n > uint64(len(d.b)) {
				d.fail(errShort)
				return
			}
			x.Raw = append([]byte{}, d.bytes(int(n))...)
		}
	}
}

func (d *wireReader) endpoint(e *Endpoint) {
	if d.flag() {
		v := &VSphere{}
		for _, p := range []*string{&v.VMName, &v.VMUUID, &v.HostName, &v.ClusterName, &v.DatacenterName, &v.NetworkName, &v.Project} {
			*p = d.string()
		}
		e.VSphere = v
	}
	if d.flag() {
		n := &NetworkInfo{}
		for _, p := range []*string{&n.Name, &n.Site, &n.Role, &n.Project} {
			*p = d.string()
		}
		e.Network = n
	}
}
