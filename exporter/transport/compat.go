package transport

import (
	"encoding/binary"
	"sync"
)

// narrower rewrites an IPFIX stream for the collectors of compat=pmacct:
// tcpControlBits (IE 6), which the exporter sends in the 2 octets of its
// type (unsigned16 since RFC 7125), goes in 1 octet, the reduced-size
// encoding RFC 7011 §6.2 allows. pmacct's nfacctd reads the element only
// in 1 octet and reports flags 0 otherwise. The high octet holds only NS
// (0x100), which such collectors do not know.
//
// It learns the templates from the stream (one per observation domain)
// and leaves alone a template where the element is not 2 octets or
// follows a variable-length field, and data sets of templates it has not
// seen. Messages only get shorter, so they still fit the MTU; sequence
// numbers count records, which stay the same.
type narrower struct {
	mu        sync.Mutex // pipelines that share a transport send from several goroutines
	templates map[templateKey]narrowing
}

type templateKey struct {
	domain uint32
	id     uint16
}

// narrowing is what a data template's records become: the octet at off
// (the high octet of tcpControlBits) goes; length is the record length
// before.
type narrowing struct {
	off, length int
}

func newNarrower() *narrower { return &narrower{templates: map[templateKey]narrowing{}} }

const ieTCPControlBits = 6

// rewrite returns msg with tcpControlBits in 1 octet (a new slice; msg
// itself is left as it is). Anything it cannot read goes unchanged.
func (n *narrower) rewrite(msg []byte) []byte {
	if len(msg) < 16 || binary.BigEndian.Uint16(msg) != 10 {
		return append([]byte(nil), msg...)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	domain := binary.BigEndian.Uint32(msg[12:])
	out := make([]byte, 16, len(msg))
	copy(out, msg[:16])
	b := msg[16:]
	for len(b) >= 4 {
		id, l := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if l < 4 || l > len(b) {
			break
		}
		set := b[:l]
		switch {
		case id == 2:
			out = n.templateSet(out, domain, set)
		case id >= 256:
			out = n.dataSet(out, domain, id, set)
		default:
			out = append(out, set...)
		}
		b = b[l:]
	}
	out = append(out, b...) // what could not be read, as it was
	binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
	return out
}

// templateSet appends the template set with tcpControlBits narrowed, and
// learns its templates: one is narrowed when its fields all have a fixed
// length and tcpControlBits is one of them, in 2 octets.
func (n *narrower) templateSet(out []byte, domain uint32, set []byte) []byte {
	start := len(out)
	out = append(out, set...)
	t := out[start+4:]
	for len(t) >= 4 {
		tid, count := binary.BigEndian.Uint16(t), int(binary.BigEndian.Uint16(t[2:]))
		k := templateKey{domain, tid}
		delete(n.templates, k)
		if count == 0 { // a withdrawal, or padding
			break
		}
		p, length, off, at := 4, 0, -1, 0
		for i := 0; i < count && p+4 <= len(t); i++ {
			fid, flen := binary.BigEndian.Uint16(t[p:]), binary.BigEndian.Uint16(t[p+2:])
			if fid == ieTCPControlBits && flen == 2 && off < 0 {
				off, at = length, p+2
			}
			if flen == 0xFFFF {
				off = -2 // records of variable length: left alone
			}
			length += int(flen)
			p += 4
			if fid&0x8000 != 0 {
				p += 4
			}
		}
		if off >= 0 && p <= len(t) {
			n.templates[k] = narrowing{off: off, length: length}
			binary.BigEndian.PutUint16(t[at:], 1)
		}
		t = t[min(p, len(t)):]
	}
	return out
}

// dataSet appends a data set, each record without the high octet of
// tcpControlBits when its template was narrowed (and without padding).
func (n *narrower) dataSet(out []byte, domain uint32, id uint16, set []byte) []byte {
	nw, ok := n.templates[templateKey{domain, id}]
	if !ok || nw.length == 0 {
		return append(out, set...)
	}
	start := len(out)
	out = append(out, set[:4]...)
	for r := set[4:]; len(r) >= nw.length; r = r[nw.length:] {
		out = append(out, r[:nw.off]...)
		out = append(out, r[nw.off+1:nw.length]...)
	}
	binary.BigEndian.PutUint16(out[start+2:], uint16(len(out)-start))
	return out
}
