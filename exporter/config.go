package exporter

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/spanflow/spanflow/exporter/capture"
	"github.com/spanflow/spanflow/exporter/distribute"
	"github.com/spanflow/spanflow/exporter/ipfix"
	"github.com/spanflow/spanflow/exporter/meter"
	"github.com/spanflow/spanflow/exporter/ring"
	"github.com/spanflow/spanflow/exporter/transport"
	"github.com/spanflow/spanflow/internal/secret"
	"github.com/spanflow/spanflow/internal/yamlconf"
)

// Configuration of the exporter. The YAML keys are the command's flag names.
type Configuration struct {
	Pcap                    string     `yaml:"pcap"`
	PcapRate                int        `yaml:"pcap-rate"` // IPFIX messages a second when reading Pcap; 0: no bound
	Interfaces              StringList `yaml:"interface"`
	Filter                  string     `yaml:"filter"`
	RingSize                int        `yaml:"ring-size"` // MiB
	Fanout                  int        `yaml:"fanout"`
	Collectors              []string   `yaml:"collector"`
	CAFile                  string     `yaml:"ca-file"`
	CertFile                string     `yaml:"cert-file"`
	KeyFile                 string     `yaml:"key-file"`
	QueueSize               int        `yaml:"queue-size"`
	MetricsListen           string     `yaml:"metrics-listen"`
	ActiveTimeout           Duration   `yaml:"active-timeout"`
	IdleTimeout             Duration   `yaml:"idle-timeout"`
	ActiveTimeoutFast       Duration   `yaml:"active-timeout-fast"`
	ActiveTimeoutFastFor    StringList `yaml:"active-timeout-fast-for"`
	ObservationDomain       uint32     `yaml:"observation-domain"`
	MaxFlows                int        `yaml:"max-flows"`
	MTU                     int        `yaml:"mtu"`
	TemplateRefreshInterval Duration   `yaml:"template-refresh"`
	TemplateRefreshMessages int        `yaml:"template-refresh-messages"`
	// The packet ring (exporter/ring): frames kept on disk beside metering.
	PacketRing         string `yaml:"packet-ring"`
	PacketRingSize     string `yaml:"packet-ring-size"`
	PacketRingMinFree  string `yaml:"packet-ring-min-free"`
	PacketRingSnapLen  int    `yaml:"packet-ring-snaplen"`
	PacketRingCompress string `yaml:"packet-ring-compress"`
	PacketRingFilter   string `yaml:"packet-ring-filter"`
	// PacketRingHeadersOnly keeps each frame up to the end of its
	// innermost transport header (payment networks: no payload on disk).
	PacketRingHeadersOnly bool `yaml:"packet-ring-headers-only"`
	// Queries of the ring over HTTP(S), off unless listen is set.
	PacketRingListen       string `yaml:"packet-ring-listen"`
	PacketRingTokenFile    string `yaml:"packet-ring-token-file"`
	PacketRingCertFile     string `yaml:"packet-ring-cert-file"`
	PacketRingKeyFile      string `yaml:"packet-ring-key-file"`
	PacketRingClientCAFile string `yaml:"packet-ring-client-ca-file"`
	// ProbeName and PacketRingURL are sent in IPFIX (identity options
	// record) so that flow documents name the probe whose ring holds their
	// packets; with packet-ring-listen they default to the host name and
	// the listen address.
	ProbeName     string `yaml:"probe-name"`
	PacketRingURL string `yaml:"packet-ring-url"`
	// Distribute is the distribution rules (the file's list; --distribute
	// gives one).
	Distribute []distribute.Rule `yaml:"distribute"`
}

// RingServer is the configuration of the ring's query server (Listen ""
// when off); the token is read from its file, else from
// SPANFLOW_PACKET_RING_TOKEN.
func (c Configuration) RingServer() (ring.ServerConfiguration, error) {
	if c.PacketRingListen == "" {
		return ring.ServerConfiguration{}, nil
	}
	if c.PacketRing == "" {
		return ring.ServerConfiguration{}, errors.New("--packet-ring-listen serves the packet ring: give --packet-ring DIR")
	}
	token, err := secret.Read(c.PacketRingTokenFile, "SPANFLOW_PACKET_RING_TOKEN")
	if err != nil {
		return ring.ServerConfiguration{}, fmt.Errorf("packet-ring-token-file: %w", err)
	}
	s := ring.ServerConfiguration{Listen: c.PacketRingListen, Token: token, CertFile: c.PacketRingCertFile, KeyFile: c.PacketRingKeyFile, ClientCAFile: c.PacketRingClientCAFile}
	return s, s.Validate()
}

// Duration is a time.Duration written as "60s" or "1m30s" in YAML.
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	// yamlconf.Errorf lets the decoder go on and report every wrong key,
	// not only the first.
	var s string
	if err := n.Decode(&s); err != nil {
		return yamlconf.Errorf(n, "want a duration such as 60s")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return yamlconf.Errorf(n, "%v", err)
	}
	*d = Duration(v)
	return nil
}

// DefaultConfiguration returns the defaults of every setting.
func DefaultConfiguration() Configuration {
	m, e := meter.DefaultConfiguration(), ipfix.DefaultConfiguration()
	return Configuration{
		PcapRate:                DefaultPcapRate,
		RingSize:                capture.DefaultRingSize >> 20,
		Fanout:                  1,
		QueueSize:               transport.DefaultQueueSize,
		ActiveTimeout:           Duration(m.ActiveTimeout),
		IdleTimeout:             Duration(m.IdleTimeout),
		MaxFlows:                m.MaxFlows,
		MTU:                     e.MTU,
		TemplateRefreshInterval: Duration(e.TemplateRefreshInterval),
		TemplateRefreshMessages: e.TemplateRefreshMessages,
		PacketRingSize:          "10GiB",
		PacketRingMinFree:       "1GiB",
		PacketRingCompress:      "zstd",
		Distribute:              []distribute.Rule{}, // as an init file reads back
	}
}

// Ring is the packet ring's configuration; ok is false when there is none.
func (c Configuration) Ring() (cfg ring.Configuration, ok bool, err error) {
	if c.PacketRing == "" {
		return cfg, false, nil
	}
	var errs []error
	size, err := ParseSize(c.PacketRingSize)
	if err != nil {
		errs = append(errs, fmt.Errorf("packet-ring-size: %w", err))
	}
	free, err := ParseSize(c.PacketRingMinFree)
	if err != nil {
		errs = append(errs, fmt.Errorf("packet-ring-min-free: %w", err))
	}
	codec, err := ring.ParseCodec(c.PacketRingCompress)
	if err != nil {
		errs = append(errs, fmt.Errorf("packet-ring-compress: %w", err))
	}
	cfg = ring.Configuration{Dir: c.PacketRing, Size: size, MinFree: free, SnapLen: c.PacketRingSnapLen, Codec: codec}
	if len(errs) == 0 {
		errs = append(errs, cfg.Validate())
	}
	return cfg, true, errors.Join(errs...)
}

// ParseSize reads a size in bytes written with a unit: 500MiB, 10GiB,
// 2TiB (or MB, GB, TB: powers of 1000; a bare number is MiB).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}, {"", 1 << 20}}
	for _, u := range units {
		num, ok := strings.CutSuffix(t, u.suffix)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil || v < 0 || v*float64(u.mult) > 1<<62 {
			break
		}
		return int64(v * float64(u.mult)), nil
	}
	return 0, fmt.Errorf("size %q: want a number with a unit, such as 500MiB or 10GiB", s)
}

// LoadFile reads a YAML configuration over c; unknown keys are errors. A
// file that cannot be read or is not YAML gives one error; otherwise every
// unknown key and wrong value gives a *yamlconf.Error ("line N: ..."),
// joined with errors.Join, and c holds every other key of the file.
func (c *Configuration) LoadFile(path string) error {
	return yamlconf.Load(path, c)
}

func (c Configuration) meter() meter.Configuration {
	m := meter.Configuration{ActiveTimeout: time.Duration(c.ActiveTimeout), IdleTimeout: time.Duration(c.IdleTimeout), MaxFlows: c.MaxFlows,
		FastActiveTimeout: time.Duration(c.ActiveTimeoutFast)}
	for _, s := range c.ActiveTimeoutFastFor {
		if sel, err := meter.ParseSelector(s); err == nil {
			m.Fast = append(m.Fast, sel)
		}
	}
	return m
}

// fastSelectorErrors are the errors of the active-timeout-fast-for
// selectors, which meter() leaves out.
func (c Configuration) fastSelectorErrors() []error {
	var errs []error
	for _, s := range c.ActiveTimeoutFastFor {
		if _, err := meter.ParseSelector(s); err != nil {
			errs = append(errs, fmt.Errorf("active-timeout-fast-for: %w", err))
		}
	}
	return errs
}

func (c Configuration) ipfix(ifs []ipfix.Interface) ipfix.Configuration {
	name, url := c.Identity()
	return ipfix.Configuration{ObservationDomain: c.ObservationDomain, MTU: c.MTU,
		TemplateRefreshInterval: time.Duration(c.TemplateRefreshInterval), TemplateRefreshMessages: c.TemplateRefreshMessages,
		ProbeName: name, PacketsURL: url, Interfaces: ifs,
		// Every record of a live capture has its interface's observation
		// point: the TCP and plain templates keep it.
		ObservationPoints: len(c.Interfaces) > 0}
}

// captureInterfaces are the live capture's interfaces that exist now, with
// their index; one that does not is left out (opening it says why).
func captureInterfaces(c Configuration) []ipfix.Interface {
	lives, err := c.Live()
	if err != nil {
		return nil
	}
	var out []ipfix.Interface
	for _, l := range lives {
		if len(out) == ipfix.MaxInterfaces {
			break
		}
		if i, err := net.InterfaceByName(l.Interface); err == nil && i.Index > 0 && len(i.Name) <= 64 {
			out = append(out, ipfix.Interface{Index: uint32(i.Index), Name: i.Name})
		}
	}
	return out
}

// Identity is the probe name and packet ring URL the exporter sends: the
// settings, else, when the ring is served, the host name and
// scheme://host:port of packet-ring-listen (the host name standing for an
// unspecified address).
func (c Configuration) Identity() (name, url string) {
	name, url = c.ProbeName, c.PacketRingURL
	if c.PacketRingListen == "" {
		return name, url
	}
	host, _ := os.Hostname()
	if name == "" {
		name = host
	}
	if url == "" {
		h, port, err := net.SplitHostPort(c.PacketRingListen)
		if err != nil {
			return name, url
		}
		if a, err := netip.ParseAddr(h); h == "" || (err == nil && a.IsUnspecified()) {
			h = host
		}
		scheme := "http"
		if c.PacketRingCertFile != "" {
			scheme = "https"
		}
		url = scheme + "://" + net.JoinHostPort(h, port)
	}
	return name, url
}

func (c Configuration) transportConfiguration() transport.Configuration {
	return transport.Configuration{Collectors: c.Collectors, CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile, QueueSize: c.QueueSize}
}

// FirstObservationPoint is the observation point id of the first
// interface when none is given: ERSPAN session ids take 0 to 1023.
const FirstObservationPoint = 1024

// Live is the configuration of each interface's live capture.
func (c Configuration) Live() ([]capture.LiveConfiguration, error) {
	var out []capture.LiveConfiguration
	seen := map[string]bool{}
	for i, spec := range c.Interfaces {
		name, id := spec, FirstObservationPoint+i
		if n, v, ok := strings.Cut(spec, "="); ok {
			p, err := strconv.ParseUint(v, 10, 16)
			if err != nil || p == 0 {
				return nil, fmt.Errorf("interface %q: want NAME or NAME=ID with ID from 1 to 65535", spec)
			}
			name, id = n, int(p)
		}
		if name == "" {
			return nil, fmt.Errorf("interface %q: missing name", spec)
		}
		if seen[name] {
			return nil, fmt.Errorf("interface %s: given twice", name)
		}
		seen[name] = true
		out = append(out, capture.LiveConfiguration{Interface: name, Filter: c.Filter, RingSize: c.RingSize << 20, ObservationPoint: uint16(id)})
	}
	return out, nil
}

// StringList is a YAML list of strings that may be written as one string.
type StringList []string

// UnmarshalYAML reads a string or a list of strings.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var s string
		if err := n.Decode(&s); err != nil {
			return yamlconf.Errorf(n, "want a name or a list of names")
		}
		*l = StringList{s}
		return nil
	}
	var s []string
	if err := n.Decode(&s); err != nil {
		return yamlconf.Errorf(n, "want a name or a list of names")
	}
	*l = s
	return nil
}

// SettingError is a problem with one setting, named by its key (the flag
// name), so that `exporter check` can point at its line. Its text is the
// problem's own, which names the setting.
type SettingError struct {
	Key string
	Err error
}

func (e *SettingError) Error() string { return e.Err.Error() }
func (e *SettingError) Unwrap() error { return e.Err }

// keys are the YAML keys of the configuration, longest first.
var keys = func() []string {
	var out []string
	t := reflect.TypeOf(Configuration{})
	for i := range t.NumField() {
		if k, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); k != "" {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}()

// settingErrors keys each problem err holds by the setting its text starts
// with ("mtu 100: ...", "template refresh interval 1ms: ..."), else by
// fallback.
func settingErrors(fallback string, err error) []error {
	var out []error
	for _, e := range yamlconf.Unjoin(err) {
		var se *SettingError
		if errors.As(e, &se) {
			out = append(out, e)
			continue
		}
		key := fallback
		head, _, _ := strings.Cut(strings.TrimPrefix(e.Error(), "--"), ":")
		head = strings.ToLower(strings.ReplaceAll(head, " ", "-"))
		for _, k := range keys {
			if rest, ok := strings.CutPrefix(head, k); ok && (rest == "" || rest[0] == '-' || rest[0] == '"') {
				key = k
				break
			}
		}
		out = append(out, &SettingError{Key: key, Err: e})
	}
	return out
}

// Validate checks every setting; the error names each wrong one, each a
// *SettingError.
func (c Configuration) Validate() error {
	var errs []error
	add := func(key string, err error) { errs = append(errs, settingErrors(key, err)...) }
	switch {
	case c.Pcap == "" && len(c.Interfaces) == 0:
		add("interface", errors.New("no capture: set interface (--interface IFACE) or pcap (--pcap FILE)"))
	case c.Pcap != "" && len(c.Interfaces) > 0:
		add("pcap", errors.New("interface and pcap are both set: give one source only (a source given by flag replaces the file's)"))
	case len(c.Interfaces) > 0:
		if _, err := c.Live(); err != nil {
			add("interface", err)
		}
		if c.Fanout < 1 || c.Fanout > 64 {
			add("fanout", fmt.Errorf("fanout %d: must be from 1 to 64 workers", c.Fanout))
		}
		if c.RingSize < 1 || c.RingSize > 4096 {
			add("ring-size", fmt.Errorf("ring-size %d MiB: must be from 1 to 4096", c.RingSize))
		}
	}
	if c.PcapRate < 0 {
		add("pcap-rate", fmt.Errorf("pcap-rate %d: messages a second, 0 for no bound", c.PcapRate))
	}
	switch {
	case c.Filter != "" && len(c.Interfaces) == 0:
		add("filter", errors.New("filter applies to a live capture: set interface (--interface IFACE)"))
	case c.Filter != "":
		// As the live capture compiles it at start.
		if _, err := capture.CompileFilterFor(c.Filter, 1); err != nil {
			add("filter", err)
		}
	}
	if _, _, err := c.Ring(); err != nil {
		add("packet-ring", err)
	}
	switch {
	case c.PacketRing == "" && c.PacketRingFilter != "":
		add("packet-ring-filter", errors.New("packet-ring-filter applies to the packet ring: set packet-ring (--packet-ring DIR)"))
	case c.PacketRingFilter != "":
		if _, err := ring.NewFilter(c.PacketRingFilter); err != nil {
			add("packet-ring-filter", fmt.Errorf("packet-ring-filter: %w", err))
		}
	}
	if _, err := c.RingServer(); err != nil {
		add("packet-ring-listen", err)
	}
	if u := c.PacketRingURL; u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		add("packet-ring-url", fmt.Errorf("packet-ring-url %q: want http://HOST:PORT or https://HOST:PORT, as analysts reach the probe", u))
	}
	add("mtu", c.ipfix(nil).Validate())
	add("active-timeout-fast-for", errors.Join(c.fastSelectorErrors()...))
	if len(c.ActiveTimeoutFastFor) == 0 || len(c.meter().Fast) > 0 {
		add("active-timeout", c.meter().Validate())
	}
	add("collector", c.transportConfiguration().Validate())
	add("distribute", distribute.ValidateRules(c.Distribute))
	return errors.Join(errs...)
}

// MarshalYAML writes a duration the way UnmarshalYAML reads it.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// DefaultMetricsListen is where a live exporter serves its metrics unless
// told otherwise.
const DefaultMetricsListen = "127.0.0.1:9108"

// MetricsAddr is the address to serve metrics on, or "" for none: the
// default address for a live capture, none for a file unless given.
func (c Configuration) MetricsAddr() string {
	switch {
	case c.MetricsListen == "off":
		return ""
	case c.MetricsListen != "":
		return c.MetricsListen
	case len(c.Interfaces) > 0:
		return DefaultMetricsListen
	}
	return ""
}
