package meter

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Selector chooses flows by their key, for the fast active timeout: every
// term given must match (a term matches when either address, or either
// port, is one of its values). Written as in a tcpdump filter, with
// comma-separated alternatives: "net 10.20.0.0/16 port 443,5432",
// "proto udp vlan 300", "vni 5001", or a bare address or prefix.
type Selector struct {
	Text     string
	Nets     []netip.Prefix
	Ports    []uint16
	Protos   []uint8
	VLANs    []uint16
	Segments []uint32
}

var protoNames = map[string]uint8{"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "icmp6": 58, "sctp": 132}

// ParseSelector reads a selector; the error names the wrong word.
func ParseSelector(s string) (Selector, error) {
	sel := Selector{Text: s}
	words := strings.Fields(s)
	if len(words) == 0 {
		return sel, fmt.Errorf("selector %q: empty; want terms such as \"net 10.20.0.0/16 port 443\"", s)
	}
	for i := 0; i < len(words); i++ {
		w := words[i]
		if p, err := parsePrefix(w); err == nil {
			sel.Nets = append(sel.Nets, p)
			continue
		}
		if i+1 >= len(words) {
			return sel, fmt.Errorf("selector %q: %q wants a value (net, port, proto, vlan or vni, then values separated by commas)", s, w)
		}
		i++
		for _, v := range strings.Split(words[i], ",") {
			var err error
			switch w {
			case "net", "host":
				var p netip.Prefix
				if p, err = parsePrefix(v); err == nil {
					sel.Nets = append(sel.Nets, p)
				}
			case "port":
				var n uint64
				if n, err = strconv.ParseUint(v, 10, 16); err == nil {
					sel.Ports = append(sel.Ports, uint16(n))
				}
			case "proto":
				n, ok := protoNames[v]
				if !ok {
					var x uint64
					x, err = strconv.ParseUint(v, 10, 8)
					n = uint8(x)
				}
				if err == nil {
					sel.Protos = append(sel.Protos, n)
				}
			case "vlan":
				var n uint64
				if n, err = strconv.ParseUint(v, 10, 12); err == nil {
					sel.VLANs = append(sel.VLANs, uint16(n))
				}
			case "vni", "segment":
				var n uint64
				if n, err = strconv.ParseUint(v, 10, 32); err == nil {
					sel.Segments = append(sel.Segments, uint32(n))
				}
			default:
				return sel, fmt.Errorf("selector %q: unknown term %q (want net, port, proto, vlan or vni, or an address or prefix)", s, w)
			}
			if err != nil {
				return sel, fmt.Errorf("selector %q: %s %q: not a valid value", s, w, v)
			}
		}
	}
	return sel, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// match reports whether the flow of k is selected.
func (s *Selector) match(k *key) bool {
	if len(s.Nets) > 0 {
		var src, dst netip.Addr
		if k.v6 {
			src, dst = netip.AddrFrom16(k.src), netip.AddrFrom16(k.dst)
		} else {
			src, dst = netip.AddrFrom4([4]byte(k.src[:4])), netip.AddrFrom4([4]byte(k.dst[:4]))
		}
		ok := false
		for _, p := range s.Nets {
			if p.Contains(src) || p.Contains(dst) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(s.Ports) > 0 {
		ok := false
		for _, p := range s.Ports {
			if !isICMP(k) && (k.sport == p || k.dport == p) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(s.Protos) > 0 && !contains(s.Protos, k.proto) {
		return false
	}
	if len(s.VLANs) > 0 && !contains(s.VLANs, k.vlan) && (k.ivlan == 0 || !contains(s.VLANs, k.ivlan)) {
		return false
	}
	if len(s.Segments) > 0 && !contains(s.Segments, k.segment) {
		return false
	}
	return true
}

func contains[T comparable](l []T, v T) bool {
	for _, x := range l {
		if x == v {
			return true
		}
	}
	return false
}
