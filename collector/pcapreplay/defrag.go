package pcapreplay

import (
	"errors"
	"net/netip"
	"slices"
)

// defragmenter reassembles IPv4 datagrams from their fragments, in any
// order: flow exporters send records in datagrams larger than the path's
// MTU (jumbo IPFIX, sFlow with many samples).
type defragmenter struct {
	pending map[fragKey]*fragments
}

// fragKey is what the fragments of one datagram share (RFC 791).
type fragKey struct {
	src, dst netip.Addr
	id       uint16
	proto    uint8
}

type fragments struct {
	parts []fragPart // by offset
	end   int        // length of the whole payload, once the last fragment came; else -1
}

type fragPart struct {
	off  int
	data []byte // a copy: the reader's buffer is reused
}

var errFragment = errors.New("ipv4 fragment beyond the largest datagram")

// add takes a fragment. It returns the datagram's whole IP payload once
// every byte of it came (whole is nil until then), or an error for a
// fragment that cannot be part of a datagram.
func (d *defragmenter) add(p *ipPacket) (whole []byte, err error) {
	off := int(p.fragOffset) * 8
	if off+20+len(p.payload) > 0xffff {
		return nil, errFragment
	}
	if d.pending == nil {
		d.pending = map[fragKey]*fragments{}
	}
	k := fragKey{p.src, p.dst, p.id, p.proto}
	f := d.pending[k]
	if f == nil {
		f = &fragments{end: -1}
		d.pending[k] = f
	}
	i, dup := slices.BinarySearchFunc(f.parts, off, func(a fragPart, off int) int { return a.off - off })
	if dup {
		return nil, nil // the same fragment again: the first one counts
	}
	f.parts = slices.Insert(f.parts, i, fragPart{off, slices.Clone(p.payload)})
	if !p.moreFrags {
		f.end = off + len(p.payload)
	}
	if f.end < 0 {
		return nil, nil
	}
	// Complete when the fragments cover the payload without a hole.
	covered := 0
	for _, q := range f.parts {
		if q.off > covered {
			return nil, nil
		}
		covered = max(covered, q.off+len(q.data))
	}
	if covered < f.end {
		return nil, nil
	}
	whole = make([]byte, f.end)
	for _, q := range f.parts {
		copy(whole[q.off:], q.data)
	}
	delete(d.pending, k)
	return whole, nil
}
