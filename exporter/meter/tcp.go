package meter

import "github.com/spanflow/spanflow/exporter/decode"

// The TCP state machine of a flow and its reverse: end on FIN from both
// sides or RST, handshake RTT, retransmissions, zero windows.

// TCP flag bits.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

func seqLT(a, b uint32) bool { return int32(a-b) < 0 }

func (t *Table) tcp(p *decode.Packet, i uint32, e *entry, ts int64) {
	f := p.TCPFlags
	e.tcpFlags |= f
	if p.TCPPartial {
		return // no sequence number or window captured
	}
	// Retransmissions: a segment occupying sequence space that ends at or
	// before the highest end seen already, except a keep-alive: one byte
	// (Windows, BSD) just before the next sequence number, as Wireshark
	// tells it. A zero-window probe of one byte of new data, sent again and
	// again while the window stays shut, is one too from its second copy on
	// (the first moved the end past it).
	segLen := p.Payload
	if segLen == 1 && f&(tcpSYN|tcpFIN|tcpRST) == 0 && e.state&stSeqInit != 0 && p.TCPSeq+1 == e.nextSeq {
		segLen = 0
	}
	if f&tcpSYN != 0 {
		segLen++
	}
	if f&tcpFIN != 0 {
		segLen++
	}
	switch end := p.TCPSeq + segLen; {
	case e.state&stSeqInit == 0:
		e.state |= stSeqInit
		e.nextSeq = end
	case segLen > 0 && !seqLT(e.nextSeq, end):
		e.retrans++
	case seqLT(e.nextSeq, end):
		// A segment ahead, or one without data (an ACK, a RST) whose
		// sequence number shows that segments the mirror did not see were
		// sent: their resending, or late arrival, is a retransmission (as
		// Wireshark has it).
		e.nextSeq = end
	}
	if p.TCPWindow == 0 && f&(tcpRST|tcpSYN|tcpFIN) == 0 { // as Wireshark has it
		e.zeroWin++
	}
	us := uint32(ts / 1000)
	switch {
	case f&(tcpSYN|tcpACK) == tcpSYN:
		if e.state&stSYNACK == 0 {
			e.state |= stSYN
			e.hsTime = us
		}
	case f&(tcpSYN|tcpACK) == tcpSYN|tcpACK:
		e.state |= stSYNACK
		e.hsTime = us
		switch _, r := t.reverseAt(i, e); {
		case r == nil:
			t.holdUnpaired(i, e)
		case r.state&stSYN != 0 && r.rttServer == 0:
			if rtt, ok := since(us, r.hsTime); ok {
				r.rttServer, e.rttServer = rtt, rtt
			}
		}
	case f&tcpACK != 0 && e.state&(stSYN|stHSDone) == stSYN:
		e.state |= stHSDone
		if _, r := t.reverseAt(i, e); r != nil && r.state&stSYNACK != 0 {
			if rtt, ok := since(us, r.hsTime); ok {
				r.rttClient, e.rttClient = rtt, rtt
				if r.rttServer == 0 {
					// The server's entry was found only now (its
					// SYN-ACK came in another segment, or before the
					// SYN): SYN to SYN-ACK.
					if rtt, ok := since(r.hsTime, e.hsTime); ok {
						r.rttServer = rtt
					}
				}
				if e.rttServer == 0 {
					e.rttServer = r.rttServer
				}
			}
		}
	}
	if f&(tcpFIN|tcpRST) == 0 {
		return
	}
	e.state |= stFIN
	ri, r := t.reverseAt(i, e)
	if f&tcpRST == 0 && (r == nil || r.state&stFIN == 0) {
		return
	}
	t.close(i, e)
	if r != nil {
		t.close(ri, r)
	}
}

// since is the time in µs from then to now, both µs timestamps that wrap
// every 71 minutes; not ok when then is later than now (a reordered
// capture).
func since(now, then uint32) (uint32, bool) {
	d := now - then
	return d, int32(d) >= 0
}

// close marks a TCP flow ended; it leaves the table closeGrace later.
func (t *Table) close(i uint32, e *entry) {
	if e.state&stClosed != 0 {
		return
	}
	t.unlink(&t.open, i, e)
	e.state |= stClosed
	t.pushBack(&t.closed, i, e)
}

// reverseAt returns the entry of the other direction of entry i (e) and
// its index, or nil: from rev when known, else by a lookup whose result is
// kept in rev for both. When no entry has the reverse key, a server whose
// SYN-ACK found none either (held in unpaired) and whose key is the
// reverse but for segment id and VLANs is the other direction. An entry
// paired so, across segments, is looked up again each time: when the
// reverse key itself comes (a mirror of both hops sees each direction in
// both segments), its entry takes the pair over, and the entry it leaves
// has no reverse any more (rev[a] == b implies rev[b] == a, so that expire
// leaves no reverse to a freed entry).
func (t *Table) reverseAt(i uint32, e *entry) (uint32, *entry) {
	if r := t.rev[i]; r != none && !t.lookupReverse {
		if re := t.at(r); re.key.segment == e.key.segment && re.key.vlan == e.key.vlan && re.key.ivlan == e.key.ivlan {
			return r, re
		}
	}
	k := e.key
	k.src, k.dst = e.key.dst, e.key.src
	k.sport, k.dport = e.key.dport, e.key.sport
	r := t.lookup(&k, uint32(k.hash(t.seed)))
	if r == none {
		if r := t.rev[i]; r != none { // paired across segments (lookupReverse)
			return r, t.at(r)
		}
		if len(t.unpaired) == 0 {
			return none, nil
		}
		lk := looseKey(&k)
		var ok bool
		if r, ok = t.unpaired[lk]; !ok || r == i {
			return none, nil
		}
		delete(t.unpaired, lk)
		if t.rev[r] != none { // paired since it was held
			return none, nil
		}
	}
	if x := t.rev[i]; x != none && x != r {
		t.rev[x] = none
	}
	if x := t.rev[r]; x != none && x != i {
		t.rev[x] = none
	}
	t.rev[i], t.rev[r] = r, i
	return r, t.at(r)
}

// maxUnpaired bounds unpaired: about 6 MiB of SYN-ACKs waiting for their
// client's ACK in another segment. A flood of unanswered SYN-ACKs (or a
// mirror of one direction only) fills it; the handshakes that find it
// full have no RTT when their directions come in different segments.
const maxUnpaired = 1 << 16

// looseKey is k without its segment id and VLANs.
func looseKey(k *key) key {
	lk := *k
	lk.segment, lk.vlan, lk.ivlan = 0, 0, 0
	return lk
}

// holdUnpaired keeps server entry i, whose SYN-ACK found no reverse
// entry, for its client's ACK to find.
func (t *Table) holdUnpaired(i uint32, e *entry) {
	if t.unpaired == nil {
		t.unpaired = make(map[key]uint32)
	}
	lk := looseKey(&e.key)
	if _, ok := t.unpaired[lk]; ok || len(t.unpaired) < maxUnpaired {
		t.unpaired[lk] = i
	}
}

// forgetUnpaired removes entry i from unpaired, where it may be held.
func (t *Table) forgetUnpaired(i uint32, e *entry) {
	lk := looseKey(&e.key)
	if r, ok := t.unpaired[lk]; ok && r == i {
		delete(t.unpaired, lk)
	}
}
