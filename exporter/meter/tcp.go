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
		if _, r := t.reverseAt(i, e); r != nil && r.state&stSYN != 0 && r.rttServer == 0 {
			if rtt, ok := since(us, r.hsTime); ok {
				r.rttServer, e.rttServer = rtt, rtt
			}
		}
	case f&tcpACK != 0 && e.state&(stSYN|stHSDone) == stSYN:
		e.state |= stHSDone
		if _, r := t.reverseAt(i, e); r != nil && r.state&stSYNACK != 0 {
			if rtt, ok := since(us, r.hsTime); ok {
				r.rttClient, e.rttClient = rtt, rtt
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
// kept in rev for both.
func (t *Table) reverseAt(i uint32, e *entry) (uint32, *entry) {
	if r := t.rev[i]; r != none && !t.lookupReverse {
		return r, t.at(r)
	}
	k := e.key
	k.src, k.dst = e.key.dst, e.key.src
	k.sport, k.dport = e.key.dport, e.key.sport
	r := t.lookup(&k, uint32(k.hash(t.seed)))
	if r == none {
		return none, nil
	}
	t.rev[i], t.rev[r] = r, i
	return r, t.at(r)
}
