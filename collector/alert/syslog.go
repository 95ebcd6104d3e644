package alert

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spanflow/spanflow/internal/lifecycle"
	"github.com/spanflow/spanflow/internal/reporter"
)

// Syslog sends each alert change as an RFC 5424 message, over UDP (one
// datagram each) or TCP (RFC 6587 octet counting: "LEN MSG"). TCP
// reconnects with backoff and keeps the message it could not write.
type Syslog struct {
	r        *reporter.Reporter
	m        *metrics
	network  string
	addr     string
	hostname string
	q        *queue
	t        lifecycle.Tracker
	warn     *reporter.Limited
}

// syslogPEN is the private enterprise number of the structured data ID;
// 32473 is the one RFC 5612 reserves for documentation and examples.
const syslogSDID = "spanflow@32473"

// A structured data parameter's name holds at most syslogMaxName
// characters (RFC 5424, PARAM-NAME); a label's is syslogLabelPrefix and
// the label's name, so the rules file bounds label names.
const (
	syslogMaxName     = 32
	syslogLabelPrefix = "label."
)

// facility local0.
const syslogFacility = 16

// ParseSyslogTarget reads udp://HOST:PORT or tcp://HOST:PORT (HOST:PORT
// means UDP).
func ParseSyslogTarget(s string) (network, addr string, err error) {
	if !strings.Contains(s, "://") {
		s = "udp://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", "", fmt.Errorf("syslog target %q: %w", s, err)
	}
	if u.Scheme != "udp" && u.Scheme != "tcp" {
		return "", "", fmt.Errorf("syslog target %q: want udp://HOST:PORT or tcp://HOST:PORT", s)
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return "", "", fmt.Errorf("syslog target %q: %w", s, err)
	}
	return u.Scheme, u.Host, nil
}

// NewSyslog sends to target (udp://HOST:PORT or tcp://HOST:PORT).
func NewSyslog(r *reporter.Reporter, m *metrics, target string, queueSize int) (*Syslog, error) {
	network, addr, err := ParseSyslogTarget(target)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "-"
	}
	return &Syslog{r: r, m: m, network: network, addr: addr, hostname: host,
		q: newQueue(r, m, "syslog", queueSize), warn: reporter.NewLimited(r.Log, time.Minute)}, nil
}

// Name of the sink.
func (s *Syslog) Name() string { return "syslog" }

// Send queues a message.
func (s *Syslog) Send(a Alert) { s.q.put(a) }

func syslogSeverity(a *Alert) int {
	if !a.Firing() {
		return 5 // notice
	}
	switch strings.ToLower(a.Severity) {
	case "emergency":
		return 0
	case "alert":
		return 1
	case "critical", "page":
		return 2
	case "error":
		return 3
	case "warning":
		return 4
	case "info":
		return 6
	}
	return 4
}

func sdEscape(v string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`).Replace(v)
}

// Format is the RFC 5424 message of an alert.
func (s *Syslog) Format(a *Alert, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<%d>1 %s %s spanflow %d %s [%s", syslogFacility*8+syslogSeverity(a),
		now.UTC().Format("2006-01-02T15:04:05.000000Z07:00"), s.hostname, os.Getpid(), a.Status(), syslogSDID)
	params := [][2]string{{"rule", a.Rule}, {"severity", a.Severity}, {"scope", a.Scope}, {"key", a.Key},
		{"fingerprint", a.Fingerprint()}, {"startsAt", a.StartsAt.UTC().Format(time.RFC3339Nano)},
		{"value", strconv.FormatFloat(a.Value, 'g', 6, 64)}}
	if !a.Firing() {
		params = append(params, [2]string{"endsAt", a.EndsAt.UTC().Format(time.RFC3339Nano)})
	}
	if a.DiscoverURL != "" {
		params = append(params, [2]string{"discover", a.DiscoverURL})
	}
	for _, k := range sortedKeys(a.Labels) {
		params = append(params, [2]string{syslogLabelPrefix + k, a.Labels[k]})
	}
	for _, p := range params {
		fmt.Fprintf(&b, " %s=\"%s\"", p[0], sdEscape(p[1]))
	}
	b.WriteString("] ")
	msg := a.Annotations["summary"]
	if msg == "" {
		msg = a.String()
	}
	b.WriteString(strings.ReplaceAll(msg, "\n", " "))
	return b.String()
}

// Start runs the sender.
func (s *Syslog) Start() error {
	s.t.Go(func(ctx context.Context) error {
		var conn net.Conn
		defer func() {
			if conn != nil {
				conn.Close()
			}
		}()
		for {
			var a Alert
			select {
			case <-ctx.Done():
				return nil
			case a = <-s.q.ch:
			}
			backoff := 100 * time.Millisecond
			for {
				err := func() error {
					if conn == nil {
						c, err := net.DialTimeout(s.network, s.addr, 5*time.Second)
						if err != nil {
							return err
						}
						conn = c
					}
					msg := s.Format(&a, time.Now())
					if s.network == "tcp" {
						msg = strconv.Itoa(len(msg)) + " " + msg
					}
					conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
					_, err := conn.Write([]byte(msg))
					return err
				}()
				if err == nil {
					s.m.deliveredAt(s.Name(), &a, time.Now())
					s.q.done()
					break
				}
				s.m.errors.WithLabelValues(s.Name()).Inc()
				s.warn.Warn("write", "syslog delivery failed; retrying", "target", s.network+"://"+s.addr, "err", err)
				if conn != nil {
					conn.Close()
					conn = nil
				}
				select {
				case <-ctx.Done():
					s.m.dropped.WithLabelValues(s.Name()).Inc()
					return nil
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 30*time.Second)
			}
		}
	})
	return nil
}

// Stop stops the sender once what is queued is written, or after
// stopGrace.
func (s *Syslog) Stop() error {
	s.q.drain(stopGrace)
	return s.t.Stop()
}
