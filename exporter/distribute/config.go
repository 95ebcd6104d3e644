package distribute

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/spanflow/spanflow/internal/yamlconf"
)

// Rule is one distribution rule: which packets go to one destination, and
// how. The YAML keys are those of the exporter's `distribute:` list.
type Rule struct {
	Name string `yaml:"name"`
	// To is the destination: iface:NAME, vxlan://HOST[:PORT]?vni=N,
	// gre://HOST[?key=N], erspan2://HOST?session=N[&index=N] or
	// erspan3://HOST?session=N.
	To string `yaml:"to"`
	// Filter is a tcpdump expression run on the frame as it would leave
	// (after strip-tunnel), on Ethernet frames.
	Filter string `yaml:"filter"`
	// Nets: when given, only packets whose innermost source or destination
	// address is in one of these prefixes.
	Nets []string `yaml:"nets"`
	// SnapLength truncates the frames sent to this many bytes (0: whole).
	SnapLength int `yaml:"snap-length"`
	// Dedup is the window within which a packet seen again (same inner IP
	// packet, TTL and header checksum aside) is not sent twice; 0: off.
	Dedup Duration `yaml:"dedup"`
	// Sample sends one matching packet in Sample (0 or 1: every one).
	Sample int `yaml:"sample"`
	// StripTunnel sends the mirrored Ethernet frame without the mirror's
	// own tunnel headers (ERSPAN, VXLAN, Geneve, GRE bridging).
	StripTunnel bool `yaml:"strip-tunnel"`
	// QueueSize is the number of frames waiting for the destination at
	// most; more are dropped and counted.
	QueueSize int `yaml:"queue-size"`
	// Rate caps the frames sent per second (0: no cap): the queue absorbs
	// bursts, then frames are dropped and counted.
	Rate int `yaml:"rate"`
}

// DefaultQueueSize is the frames a destination queues unless told.
const DefaultQueueSize = 4096

// Duration is a time.Duration written as "10ms" in YAML.
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return yamlconf.Errorf(n, "want a duration such as 10ms")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return yamlconf.Errorf(n, "%v", err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes a duration the way UnmarshalYAML reads it.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Kind of destination.
type Kind int

// Destinations.
const (
	KindInterface Kind = iota // the Ethernet frame as it is, on a local interface
	KindVXLAN                 // UDP, VXLAN header (RFC 7348)
	KindGRE                   // GRE transparent Ethernet bridging (0x6558)
	KindERSPAN2               // GRE 0x88BE with sequence number, ERSPAN type II header
	KindERSPAN3               // GRE 0x22EB with sequence number, ERSPAN type III header
)

// Destination is a parsed Rule.To.
type Destination struct {
	Kind    Kind
	Iface   string // KindInterface
	Addr    netip.AddrPort
	VNI     uint32 // VXLAN
	Key     uint32 // GRE key, when HasKey
	HasKey  bool
	Session uint16 // ERSPAN session id (0-1023)
	Index   uint32 // ERSPAN II port index (20 bits)
}

// lookupIP resolves a destination's host name (a test's stub in fuzzing).
var lookupIP = net.LookupIP

// ParseDestination reads iface:NAME or a tunnel URL.
func ParseDestination(s string) (Destination, error) {
	if name, ok := strings.CutPrefix(s, "iface:"); ok {
		if name == "" || strings.ContainsAny(name, "/ ") {
			return Destination{}, fmt.Errorf("destination %q: want iface:NAME", s)
		}
		return Destination{Kind: KindInterface, Iface: name}, nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return Destination{}, fmt.Errorf("destination %q: want iface:NAME, vxlan://HOST[:PORT]?vni=N, gre://HOST, erspan2://HOST?session=N or erspan3://HOST?session=N", s)
	}
	var d Destination
	port := 0
	switch u.Scheme {
	case "vxlan":
		d.Kind, port = KindVXLAN, 4789
	case "gre":
		d.Kind = KindGRE
	case "erspan2":
		d.Kind = KindERSPAN2
	case "erspan3":
		d.Kind = KindERSPAN3
	default:
		return Destination{}, fmt.Errorf("destination %q: unknown kind %q (iface, vxlan, gre, erspan2, erspan3)", s, u.Scheme)
	}
	host := u.Hostname()
	if p := u.Port(); p != "" {
		if d.Kind != KindVXLAN {
			return Destination{}, fmt.Errorf("destination %q: only vxlan has a port", s)
		}
		v, err := strconv.ParseUint(p, 10, 16)
		if err != nil || v == 0 {
			return Destination{}, fmt.Errorf("destination %q: bad port %q", s, p)
		}
		port = int(v)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		addrs, lerr := lookupIP(host)
		if lerr != nil || len(addrs) == 0 {
			return Destination{}, fmt.Errorf("destination %q: cannot resolve %q", s, host)
		}
		ip, _ = netip.AddrFromSlice(addrs[0])
	}
	d.Addr = netip.AddrPortFrom(ip.Unmap(), uint16(port))
	q := u.Query()
	num := func(key string, max uint64) (uint64, bool, error) {
		v := q.Get(key)
		q.Del(key)
		if v == "" {
			return 0, false, nil
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n > max {
			return 0, false, fmt.Errorf("destination %q: %s must be from 0 to %d", s, key, max)
		}
		return n, true, nil
	}
	switch d.Kind {
	case KindVXLAN:
		v, _, err := num("vni", 1<<24-1)
		if err != nil {
			return d, err
		}
		d.VNI = uint32(v)
	case KindGRE:
		v, ok, err := num("key", 1<<32-1)
		if err != nil {
			return d, err
		}
		d.Key, d.HasKey = uint32(v), ok
	case KindERSPAN2, KindERSPAN3:
		v, _, err := num("session", 1023)
		if err != nil {
			return d, err
		}
		d.Session = uint16(v)
		if d.Kind == KindERSPAN2 {
			v, _, err := num("index", 1<<20-1)
			if err != nil {
				return d, err
			}
			d.Index = uint32(v)
		}
	}
	for k := range q {
		return d, fmt.Errorf("destination %q: unknown parameter %q", s, k)
	}
	return d, nil
}

// ParseFlag reads the --distribute flag: a destination, optionally followed
// by a space and a tcpdump filter; the destination's query may also hold
// the rule's snap-length, dedup, sample, strip-tunnel, queue-size and rate.
// Example: "vxlan://10.0.0.9?vni=7&dedup=10ms&snap-length=128 tcp port 80".
func ParseFlag(s string) (Rule, error) {
	dest, filter, _ := strings.Cut(strings.TrimSpace(s), " ")
	r := Rule{Name: "distribute", Filter: strings.TrimSpace(filter)}
	base, query, _ := strings.Cut(dest, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return r, fmt.Errorf("--distribute %q: %w", s, err)
	}
	intOpt := func(key string, dst *int) error {
		if v := q.Get(key); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("--distribute: %s=%q: want a number", key, v)
			}
			*dst = n
		}
		q.Del(key)
		return nil
	}
	var errs []error
	errs = append(errs, intOpt("snap-length", &r.SnapLength), intOpt("sample", &r.Sample), intOpt("queue-size", &r.QueueSize), intOpt("rate", &r.Rate))
	if v := q.Get("dedup"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("--distribute: dedup=%q: %w", v, err))
		}
		r.Dedup = Duration(d)
	}
	q.Del("dedup")
	if q.Has("strip-tunnel") {
		r.StripTunnel = q.Get("strip-tunnel") != "false" && q.Get("strip-tunnel") != "0"
	}
	q.Del("strip-tunnel")
	r.To = base
	if len(q) > 0 {
		r.To += "?" + q.Encode()
	}
	if err := errors.Join(errs...); err != nil {
		return r, err
	}
	return r, nil
}

// Validate checks a rule, its filter compiled, without opening anything.
func (r Rule) Validate() error {
	var errs []error
	if r.To == "" {
		errs = append(errs, errors.New("no destination (to:)"))
	} else if _, err := ParseDestination(r.To); err != nil {
		errs = append(errs, err)
	}
	if _, err := r.prefixes(); err != nil {
		errs = append(errs, err)
	}
	if r.Filter != "" {
		if _, err := compile(r.Filter); err != nil {
			errs = append(errs, err)
		}
	}
	if r.SnapLength < 0 || (r.SnapLength > 0 && r.SnapLength < 14) {
		errs = append(errs, fmt.Errorf("snap-length %d: 0 (whole frames) or at least 14", r.SnapLength))
	}
	if r.Dedup < 0 || time.Duration(r.Dedup) > time.Minute {
		errs = append(errs, fmt.Errorf("dedup %s: from 0 (off) to 1m", time.Duration(r.Dedup)))
	}
	if r.Sample < 0 {
		errs = append(errs, fmt.Errorf("sample %d: 0 or 1 (every packet) or N (1 in N)", r.Sample))
	}
	if r.QueueSize < 0 || r.QueueSize > 1<<20 {
		errs = append(errs, fmt.Errorf("queue-size %d: from 1 to %d (0: %d)", r.QueueSize, 1<<20, DefaultQueueSize))
	}
	if r.Rate < 0 {
		errs = append(errs, fmt.Errorf("rate %d: frames per second, 0 for no cap", r.Rate))
	}
	// One line per problem, each naming the rule.
	for i, err := range errs {
		errs[i] = fmt.Errorf("distribute rule %s: %w", r.label(), err)
	}
	return errors.Join(errs...)
}

func (r Rule) label() string {
	if r.Name != "" {
		return r.Name
	}
	return r.To
}

func (r Rule) prefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range r.Nets {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("nets: %q is not a prefix such as 10.1.0.0/16", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// ValidateRules checks every rule and that names are unique.
func ValidateRules(rules []Rule) error {
	var errs []error
	seen := map[string]bool{}
	for i, r := range rules {
		if r.Name == "" {
			r.Name = fmt.Sprintf("rule%d", i+1)
		}
		if seen[r.Name] {
			errs = append(errs, fmt.Errorf("distribute rule %s: name given twice", r.Name))
		}
		seen[r.Name] = true
		errs = append(errs, r.Validate())
	}
	return errors.Join(errs...)
}
