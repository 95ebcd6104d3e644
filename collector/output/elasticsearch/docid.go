package elasticsearch

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/netip"
	"strings"

	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/mdsum"
)

// DocumentID is the deterministic _id of a record's document: the first 128
// bits of the SHA-256 of the fields that identify a flow report (exporter,
// observation domain and point, times, endpoints, counters, interfaces,
// the direction the exporter saw it in).
// The same record delivered twice — a bulk retry, a spool replay, an
// exporter resending a datagram — gets the same id, so the cluster holds it
// once. The receive time is not part of it (a resent datagram arrives
// later), except when the record has no end time, because @timestamp is
// then the receive time.
//
// SHA-256 replaced FNV-1a (128-bit), which hashes a byte at a time and was
// a sixth of the output's CPU: with the SHA extensions of current x86 and
// ARM servers it is three to four times faster here, and no one can craft
// a flow whose id overwrites another's. Its cost is per 64-byte block, so
// the fields are written compactly (identityOf): an IPv4 flow report
// without MACs takes one block, one with MACs or IPv6 addresses two, where
// fixed-width fields took three.
func DocumentID(r *flow.Record) string {
	var h idHasher
	var b [idLen]byte
	return string(h.appendID(b[:0], r))
}

// idLen is the length of a document id: 128 bits in unpadded base64url,
// whose characters JSON holds as they are.
const idLen = 22

// idHasher computes document ids with a SHA-256 digest of its own: it pads
// the identity in its buffer and mdsum sums it, without sha256.Sum256's
// copies: 70-71 ns against 48-49 for one block (micro-benchmark, same run).
// A digest whose state cannot be read falls back to sha256.Sum256;
// TestIDHasherIsSHA256 compares the two. Not safe for concurrent use: the
// output keeps one per encoder.
type idHasher struct {
	d       mdsum.Digest
	noState bool   // the digest's state cannot be read: sha256.Sum256
	in      []byte // the identity, padded
	st      []byte // the digest's marshaled state
}

// appendID appends r's DocumentID to b.
func (h *idHasher) appendID(b []byte, r *flow.Record) []byte {
	in := identityOf(h.in[:0], r)
	// The padding goes after the identity in the same buffer, kept for
	// the next id however far it grew.
	padded := mdsum.Pad(in)
	h.in = padded[:0]
	var sum [16]byte
	if h.d == nil && !h.noState {
		d, ok := sha256.New().(mdsum.Digest)
		h.d, h.noState = d, !ok
	}
	if h.d == nil || !mdsum.Sum(h.d, mdsum.MagicSHA256, padded, &h.st, sum[:]) {
		full := sha256.Sum256(padded[:len(in)])
		sum = [16]byte(full[:16])
	}
	return base64.RawURLEncoding.AppendEncode(b, sum[:])
}

// docWriter is what one Write call encodes with: the output pools them.
type docWriter struct {
	enc flow.Encoder
	ids idHasher
}

// Bits of identityOf's mask: the fields a flow report often leaves zero,
// written only when they are not.
const (
	hasDomain = 1 << iota
	hasPoint
	hasTOS
	hasICMP
	hasEndReason
	hasSrcMAC
	hasDstMAC
	hasVLAN
	hasInnerVLAN
	hasSegment
	hasTCPFlags
	hasSampling
	hasInIf
	hasOutIf
	hasDirection
)

// directionElements are the information elements (netflow.* names) that
// say in which direction an exporter saw a flow: a router exporting at
// ingress and at egress, or a vSphere distributed switch, reports the same
// flow once per direction, with the same addresses, times and counters.
// Their value is part of the identity, or one report overwrites the other.
var directionElements = [...]string{"flow_direction", "biflow_direction", "vmware_flow_direction"}

// direction finds the direction elements of r: which are there (a bit per
// directionElements entry) and their values.
func direction(r *flow.Record) (present uint8, values [len(directionElements)]uint64) {
	for i := range r.Extra {
		e := &r.Extra[i]
		if e.IsStr || e.Raw != nil || !strings.HasSuffix(e.Name, "direction") {
			continue
		}
		for j, name := range directionElements {
			if e.Name == name {
				present |= 1 << j
				values[j] = e.Num
			}
		}
	}
	return present, values
}

// identityOf appends to b the fields DocumentID hashes, in an encoding
// that tells any two different sets of them apart (each field is either of
// fixed width or a self-delimiting varint, in a fixed order, and the mask
// says which of the optional ones follow).
func identityOf(b []byte, r *flow.Record) []byte {
	var mask uint16
	dirs, dirValues := direction(r)
	set := func(bit uint16, on bool) {
		if on {
			mask |= bit
		}
	}
	set(hasDomain, r.ObservationDomain != 0)
	set(hasPoint, r.ObservationPoint != 0)
	set(hasTOS, r.TOS != 0)
	set(hasICMP, r.ICMPType != 0 || r.ICMPCode != 0)
	set(hasEndReason, r.EndReason != 0)
	set(hasSrcMAC, r.SrcMAC != flow.MAC{})
	set(hasDstMAC, r.DstMAC != flow.MAC{})
	set(hasVLAN, r.VLAN != 0)
	set(hasInnerVLAN, r.InnerVLAN != 0)
	set(hasSegment, r.SegmentID != 0)
	set(hasTCPFlags, r.TCPFlags != 0)
	set(hasSampling, r.SamplingRate != 0)
	set(hasInIf, r.InIf != 0)
	set(hasOutIf, r.OutIf != 0)
	set(hasDirection, dirs != 0)

	b = append(b, byte(r.Kind))
	b = binary.BigEndian.AppendUint16(b, mask)
	b = appendAddr(b, r.ObserverIP)
	// Start, then end as its distance from start (a few bytes where the
	// absolute time takes eight).
	start, end := r.Start, r.End
	if end.IsZero() {
		end = r.Received
	}
	switch {
	case start.IsZero():
		b = append(b, 0)
	default:
		b = append(b, 1)
		b = binary.BigEndian.AppendUint64(b, uint64(start.UnixNano()))
	}
	switch {
	case end.IsZero():
		b = append(b, 0)
	case start.IsZero():
		b = append(b, 1)
		b = binary.BigEndian.AppendUint64(b, uint64(end.UnixNano()))
	default:
		b = append(b, 2)
		b = binary.AppendVarint(b, end.UnixNano()-start.UnixNano())
	}
	b = appendAddr(b, r.SrcAddr)
	b = appendAddr(b, r.DstAddr)
	b = binary.AppendUvarint(b, uint64(r.SrcPort))
	b = binary.AppendUvarint(b, uint64(r.DstPort))
	b = append(b, r.Proto)
	b = binary.AppendUvarint(b, r.Bytes)
	b = binary.AppendUvarint(b, r.Packets)

	if mask&hasDomain != 0 {
		b = binary.AppendUvarint(b, uint64(r.ObservationDomain))
	}
	if mask&hasPoint != 0 {
		b = binary.AppendUvarint(b, r.ObservationPoint)
	}
	if mask&hasTOS != 0 {
		b = append(b, r.TOS)
	}
	if mask&hasICMP != 0 {
		b = append(b, r.ICMPType, r.ICMPCode)
	}
	if mask&hasEndReason != 0 {
		b = append(b, r.EndReason)
	}
	if mask&hasSrcMAC != 0 {
		b = append(b, r.SrcMAC[:]...)
	}
	if mask&hasDstMAC != 0 {
		b = append(b, r.DstMAC[:]...)
	}
	if mask&hasVLAN != 0 {
		b = binary.AppendUvarint(b, uint64(r.VLAN))
	}
	if mask&hasInnerVLAN != 0 {
		b = binary.AppendUvarint(b, uint64(r.InnerVLAN))
	}
	if mask&hasSegment != 0 {
		b = binary.AppendUvarint(b, r.SegmentID)
	}
	if mask&hasTCPFlags != 0 {
		b = binary.AppendUvarint(b, uint64(r.TCPFlags))
	}
	if mask&hasSampling != 0 {
		b = binary.AppendUvarint(b, uint64(r.SamplingRate))
	}
	if mask&hasInIf != 0 {
		b = binary.AppendUvarint(b, uint64(r.InIf))
	}
	if mask&hasOutIf != 0 {
		b = binary.AppendUvarint(b, uint64(r.OutIf))
	}
	if mask&hasDirection != 0 {
		b = append(b, dirs)
		for j := range directionElements {
			if dirs&(1<<j) != 0 {
				b = binary.AppendUvarint(b, dirValues[j])
			}
		}
	}
	// Interface counter and exporter statistics documents are not flows:
	// what tells two of them apart (the interface, the counters) is here.
	if c := r.Counters; c != nil {
		b = append(b, 'C')
		b = binary.AppendUvarint(b, uint64(c.Index))
		for _, v := range []uint64{c.InOctets, c.OutOctets, c.InUcastPkts, c.OutUcastPkts, c.InDiscards, c.OutDiscards,
			c.InErrors, c.OutErrors, uint64(c.Status)} {
			b = binary.AppendUvarint(b, v)
		}
	}
	if e := r.Exporter; e != nil {
		b = append(b, 'E')
		for _, v := range []uint64{uint64(e.Interval), e.Datagrams, e.Records, e.SequenceLosses, e.Templates, e.DecodeErrors} {
			b = binary.AppendUvarint(b, v)
		}
	}
	return b
}

// appendAddr writes an address as its family and its bytes: 5 bytes for
// IPv4 (and an IPv4-mapped IPv6 address, the same flow to an exporter), 17
// for IPv6, 1 for none.
func appendAddr(b []byte, a netip.Addr) []byte {
	a = a.Unmap()
	switch {
	case a.Is4():
		v := a.As4()
		return append(append(b, 4), v[:]...)
	case a.Is6():
		v := a.As16()
		return append(append(b, 6), v[:]...)
	}
	return append(b, 0)
}
