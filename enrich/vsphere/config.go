package vsphere

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Configuration says which vCenter to follow and how to name projects.
type Configuration struct {
	// URL of vCenter's SDK, https://vcenter.example.com (the /sdk path is
	// added when missing). http:// works too (vcsim serves it).
	URL string
	// User and Password log in; the command line fills them from
	// SPANFLOW_VCENTER_USER / SPANFLOW_VCENTER_PASSWORD or a password file,
	// never from a flag that ps would show.
	User, Password string
	// CAFile is a PEM bundle that signs vCenter's certificate; Insecure skips
	// verification instead (it must be asked for explicitly).
	CAFile   string
	Insecure bool

	// ProjectRules name the project of a VM; the first rule that gives a
	// non-empty answer wins. See ParseProjectRule for the syntax.
	ProjectRules []string
	// VNIs gives the VXLAN/Geneve VNI of overlay port groups, by port group
	// name: vSphere does not expose it, and flows from an overlay carry it
	// instead of a VLAN.
	VNIs map[string]uint32

	// MaxWait bounds each WaitForUpdatesEx call: an idle vCenter answers
	// within it, which is how a dead connection is noticed.
	MaxWait time.Duration
	// RequestTimeout bounds every other call to vCenter.
	RequestTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the exponential backoff between
	// connection attempts.
	ReconnectMin, ReconnectMax time.Duration
	// RebuildInterval is the least time between two rebuilds of the lookup
	// snapshot, so a storm of changes costs one rebuild per interval.
	RebuildInterval time.Duration
	// TagRefresh is how often tag assignments are read again (the tagging
	// service has no change feed); used only by tag: project rules.
	TagRefresh time.Duration
	// StartWait is how long Start waits for the first inventory, so the
	// first flows are enriched; when it passes (vCenter down or slow), Start
	// returns anyway and flows pass unenriched until the load completes.
	StartWait time.Duration
}

// DefaultConfiguration returns the defaults; URL must still be set.
func DefaultConfiguration() Configuration {
	return Configuration{
		MaxWait:         30 * time.Second,
		RequestTimeout:  2 * time.Minute,
		ReconnectMin:    time.Second,
		ReconnectMax:    time.Minute,
		RebuildInterval: 500 * time.Millisecond,
		TagRefresh:      time.Minute,
	}
}

// Validate checks the configuration and returns the first problem found.
func (c Configuration) Validate() error {
	if c.URL == "" {
		return errors.New("vcenter url is empty")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("vcenter url %q: %w", c.URL, err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return fmt.Errorf("vcenter url %q: scheme must be https or http", c.URL)
	}
	if u.Host == "" {
		return fmt.Errorf("vcenter url %q: no host", c.URL)
	}
	if c.User == "" && (u.User == nil || u.User.Username() == "") {
		return errors.New("vcenter user is empty: set SPANFLOW_VCENTER_USER or --vcenter-user")
	}
	if u.Scheme == "https" && c.CAFile != "" && c.Insecure {
		return errors.New("vcenter: give either a CA file or insecure, not both")
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return fmt.Errorf("vcenter CA file: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return fmt.Errorf("vcenter CA file: %s holds no PEM certificate", c.CAFile)
		}
	}
	if _, err := c.parseRules(); err != nil {
		return err
	}
	for name, d := range map[string]time.Duration{"max wait": c.MaxWait, "request timeout": c.RequestTimeout,
		"reconnect min": c.ReconnectMin, "reconnect max": c.ReconnectMax, "tag refresh": c.TagRefresh} {
		if d <= 0 {
			return fmt.Errorf("vcenter %s must be positive, got %s", name, d)
		}
	}
	if c.MaxWait < time.Second {
		return fmt.Errorf("vcenter max wait must be at least 1s, got %s", c.MaxWait)
	}
	if c.StartWait < 0 {
		return fmt.Errorf("vcenter start wait must not be negative, got %s", c.StartWait)
	}
	if c.ReconnectMax < c.ReconnectMin {
		return errors.New("vcenter reconnect max is below reconnect min")
	}
	return nil
}

func (c Configuration) parseRules() ([]ProjectRule, error) {
	rules := make([]ProjectRule, 0, len(c.ProjectRules))
	for _, s := range c.ProjectRules {
		r, err := ParseProjectRule(s)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// RuleKind says where a project name comes from.
type RuleKind uint8

// Project rule kinds.
const (
	RuleTag       RuleKind = iota + 1 // name of the VM's tag in a category
	RuleAttribute                     // value of a custom attribute of the VM
	RuleFolder                        // name of a folder above the VM
	RulePortGroup                     // part of the port group's name
)

// ProjectRule is one parsed project rule.
type ProjectRule struct {
	Kind     RuleKind
	Name     string         // tag category or custom attribute name
	Level    int            // folder level: 1 = first folder under the datacenter's VM folder, -1 = the VM's own folder
	Pattern  *regexp.Regexp // port group rule
	original string
}

func (r ProjectRule) String() string { return r.original }

// ParseProjectRule parses one rule:
//
//	tag:CATEGORY          the VM's tag in that category (vSphere tags)
//	attribute:NAME        the VM's custom attribute NAME
//	folder:N              the N-th folder below the datacenter's VM folder (1 = top);
//	                      negative counts up from the VM (-1 = the folder holding it)
//	portgroup:REGEXP      the port group name matched by REGEXP: its first
//	                      capture group, or the whole match without one
func ParseProjectRule(s string) (ProjectRule, error) {
	kind, arg, ok := strings.Cut(s, ":")
	if !ok || arg == "" {
		return ProjectRule{}, fmt.Errorf("project rule %q: want tag:CATEGORY, attribute:NAME, folder:LEVEL or portgroup:REGEXP", s)
	}
	r := ProjectRule{original: s}
	switch kind {
	case "tag":
		r.Kind, r.Name = RuleTag, arg
	case "attribute":
		r.Kind, r.Name = RuleAttribute, arg
	case "folder":
		n, err := strconv.Atoi(arg)
		if err != nil || n == 0 {
			return ProjectRule{}, fmt.Errorf("project rule %q: folder level must be a non-zero integer", s)
		}
		r.Kind, r.Level = RuleFolder, n
	case "portgroup":
		re, err := regexp.Compile(arg)
		if err != nil {
			return ProjectRule{}, fmt.Errorf("project rule %q: %w", s, err)
		}
		r.Kind, r.Pattern = RulePortGroup, re
	default:
		return ProjectRule{}, fmt.Errorf("project rule %q: unknown kind %q (tag, attribute, folder or portgroup)", s, kind)
	}
	return r, nil
}
