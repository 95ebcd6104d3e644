package netflow

import (
	"net/netip"
	"time"

	nf "github.com/netsampler/goflow2/v2/decoders/netflow"

	"github.com/spanflow/spanflow/internal/flow"
)

// A program is a data template of fixed-length fields compiled for its
// records: each field's place in the record and what to do with it, the
// common elements as dense codes handled in the loop, the others through
// applyField. run then takes each record whole, without decodeData's
// call, sparse switch on the element id and slicing per field:
// BenchmarkRollup/decode (20-record IPFIX sets) 100-111 -> 56-57 ns a
// flow. Templates with variable-length fields are decoded field by field
// (decodeData); TestProgramDecodesAsFieldByField compares the two.
type program struct {
	ops  []op
	size int // bytes of a record
}

// op is one field of a compiled template.
type op struct {
	code     opCode
	off, end uint16 // the field's bytes in the record
	typ      uint16 // element id, for opField
	pen      uint32 // enterprise number (0 for IANA and NetFlow v9), for opField
}

type opCode uint8

// The fields decoded in the loop. Each does what applyIANA (or
// applyField, for spanflow's elements) does with the element at that
// length; opField calls applyField.
const (
	opField opCode = iota
	opBytes
	opPackets
	opProto
	opTOS
	opTCPFlags
	opSrcPort
	opDstPort
	opSrc4
	opDst4
	opInIf
	opOutIf
	opEndReason
	opStartMs
	opEndMs
	opRTTClient
	opRTTServer
	opRetransmissions
	opZeroWindows
)

// compile returns the program of a template's fields, or nil when a field
// has a variable length or the records would have none.
func compile(fields []nf.Field) *program {
	p := &program{ops: make([]op, 0, len(fields))}
	for _, f := range fields {
		if f.Length == 0xffff {
			return nil
		}
		if p.size+int(f.Length) > 0xffff {
			return nil
		}
		pen := f.Pen
		if !f.PenProvided {
			pen = 0
		}
		o := op{code: codeOf(f.Type, pen, f.Length), off: uint16(p.size), end: uint16(p.size + int(f.Length)), typ: f.Type, pen: pen}
		p.ops = append(p.ops, o)
		p.size += int(f.Length)
	}
	if p.size == 0 {
		return nil
	}
	return p
}

// codeOf is the code of an element of the given length: opField unless
// the loop decodes it.
func codeOf(typ uint16, pen uint32, length uint16) opCode {
	integer := length == 1 || length == 2 || length == 4 || length == 8
	switch {
	case pen == flow.EnterpriseNumber && integer:
		switch typ {
		case flow.IETCPRTTClientMicroseconds:
			return opRTTClient
		case flow.IETCPRTTServerMicroseconds:
			return opRTTServer
		case flow.IETCPRetransmittedPackets:
			return opRetransmissions
		case flow.IETCPZeroWindowEvents:
			return opZeroWindows
		}
	case pen != 0:
	case typ == 8 && length == 4:
		return opSrc4
	case typ == 12 && length == 4:
		return opDst4
	case !integer:
	default:
		switch typ {
		case 1:
			return opBytes
		case 2:
			return opPackets
		case 4:
			return opProto
		case 5:
			return opTOS
		case 6:
			return opTCPFlags
		case 7:
			return opSrcPort
		case 11:
			return opDstPort
		case 10:
			return opInIf
		case 14:
			return opOutIf
		case 136:
			return opEndReason
		case 152:
			return opStartMs
		case 153:
			return opEndMs
		}
	}
	return opField
}

// run decodes the records of a data set with the program: as many whole
// records as data holds.
func (s *State) run(out []flow.Record, p *program, d *domain, h *header, data []byte, received time.Time) []flow.Record {
	for len(data) >= p.size {
		rec := data[:p.size:p.size]
		data = data[p.size:]
		var r *flow.Record
		out, r = s.beginRecord(out, h, received)
		var t recordTimes
		for i := range p.ops {
			o := &p.ops[i]
			v := rec[o.off:o.end:o.end]
			switch o.code {
			case opBytes:
				r.Bytes, t.hasBytes = be(v), true
			case opPackets:
				r.Packets, t.hasPackets = be(v), true
			case opProto:
				r.Proto = uint8(be(v))
			case opTOS:
				r.TOS = uint8(be(v))
			case opTCPFlags:
				r.TCPFlags, t.hasTCPFlags = uint16(be(v)), true
			case opSrcPort:
				r.SrcPort = uint16(be(v))
			case opDstPort:
				r.DstPort = uint16(be(v))
			case opSrc4:
				// Templates with both IPv4 and IPv6 fields zero the unused ones.
				if a := netip.AddrFrom4([4]byte(v)); !r.SrcAddr.IsValid() || !a.IsUnspecified() {
					r.SrcAddr = a
				}
			case opDst4:
				if a := netip.AddrFrom4([4]byte(v)); !r.DstAddr.IsValid() || !a.IsUnspecified() {
					r.DstAddr = a
				}
			case opInIf:
				r.InIf = uint32(be(v))
			case opOutIf:
				r.OutIf = uint32(be(v))
			case opEndReason:
				r.EndReason = uint8(be(v))
			case opStartMs:
				t.start = time.UnixMilli(int64(be(v)))
			case opEndMs:
				t.end = time.UnixMilli(int64(be(v)))
			case opRTTClient:
				r.TCP.RTTClient = time.Duration(be(v)) * time.Microsecond
			case opRTTServer:
				r.TCP.RTTServer = time.Duration(be(v)) * time.Microsecond
			case opRetransmissions:
				r.TCP.Retransmissions = uint32(be(v))
			case opZeroWindows:
				r.TCP.ZeroWindows = uint32(be(v))
			default:
				s.applyField(r, &t, o.typ, o.pen, v, h.version)
			}
		}
		s.finish(r, &t, h, d)
	}
	return out
}
