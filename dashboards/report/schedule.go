package report

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/spanflow/spanflow/internal/secret"
)

// Build runs the report of the given kind (line-load or top-ip).
func Build(ctx context.Context, client *elasticsearch.Client, kind string, q Query) (Report, error) {
	switch kind {
	case "line-load":
		return BuildLineLoad(ctx, client, q)
	case "top-ip":
		return BuildTopIP(ctx, client, q)
	}
	return nil, fmt.Errorf("unknown report %q: use line-load or top-ip", kind)
}

// Render writes a report into memory.
func Render(r Report, format string) ([]byte, error) {
	var b bytes.Buffer
	if err := Write(&b, r, format); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// FileName names a scheduled report file: kind, end of range, format.
func FileName(kind string, to time.Time, format string) string {
	return fmt.Sprintf("%s-%s.%s", kind, to.UTC().Format("20060102T150405Z"), format)
}

// Mail says where scheduled reports are mailed.
type Mail struct {
	Server string   // host:port of the SMTP server
	From   string   // envelope and header sender
	To     []string // recipients
	// UserFile and PasswordFile name files with the SMTP credential;
	// SPANFLOW_SMTP_USER and SPANFLOW_SMTP_PASSWORD are used when not given.
	// Without a user, no authentication is attempted.
	UserFile, PasswordFile string
}

// Validate checks the mail settings.
func (m Mail) Validate() error {
	if _, _, err := net.SplitHostPort(m.Server); err != nil {
		return fmt.Errorf("smtp server %q: want host:port", m.Server)
	}
	if m.From == "" || len(m.To) == 0 {
		return fmt.Errorf("mailing reports needs --mail-from and at least one --mail-to")
	}
	for _, a := range append([]string{m.From}, m.To...) {
		if strings.ContainsAny(a, "\r\n<>") || !strings.Contains(a, "@") {
			return fmt.Errorf("mail address %q is not an address", a)
		}
	}
	return nil
}

// Message builds a MIME mail with a short text body and the report attached.
func (m Mail) Message(subject, body, filename string, attachment []byte, now time.Time) []byte {
	var rnd [12]byte
	rand.Read(rnd[:])
	boundary := "spanflow-" + base64.RawURLEncoding.EncodeToString(rnd[:])
	ctype := map[string]string{".csv": "text/csv", ".md": "text/markdown", ".html": "text/html"}[filepath.Ext(filename)]
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMIME-Version: 1.0\r\n",
		m.From, strings.Join(m.To, ", "), mime.QEncoding.Encode("utf-8", subject), now.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=%q\r\n\r\n", boundary)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n%s\r\n", boundary, strings.ReplaceAll(body, "\n", "\r\n"))
	fmt.Fprintf(&b, "--%s\r\nContent-Type: %s; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=%q\r\n\r\n", boundary, ctype, filename)
	enc := base64.StdEncoding.EncodeToString(attachment)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return b.Bytes()
}

// Send mails the message. net/smtp upgrades to TLS when the server offers
// STARTTLS, and refuses to send a password over a plain connection to
// anything but localhost.
func (m Mail) Send(msg []byte) error {
	user, err := secret.Read(m.UserFile, "SPANFLOW_SMTP_USER")
	if err != nil {
		return err
	}
	pass, err := secret.Read(m.PasswordFile, "SPANFLOW_SMTP_PASSWORD")
	if err != nil {
		return err
	}
	var auth smtp.Auth
	if user != "" {
		host, _, _ := net.SplitHostPort(m.Server)
		auth = smtp.PlainAuth("", user, pass, host)
	}
	if err := smtp.SendMail(m.Server, auth, m.From, m.To, msg); err != nil {
		return fmt.Errorf("mail report through %s: %w", m.Server, err)
	}
	return nil
}

// Schedule produces a report every Every, each covering the Every before
// it, into Dir or by Mail.
type Schedule struct {
	Kind   string
	Format string
	Query  Query // Top, Lines, Interval, Index; the range and Location are set per run
	Every  time.Duration
	// Delay is how long after the end of its range a report is made:
	// flows reach the index some time after their @timestamp (the
	// exporter's idle timeout, the collector's bulk requests, the index's
	// refresh interval), and a report made at the end of its range would
	// miss the last of them for good (the next range starts there).
	Delay time.Duration
	// Location is the time zone whose midnights the ranges end on when
	// Every is whole days (and on whose whole Interval otherwise); UTC
	// when nil.
	Location *time.Location
	Dir      string // written here when Mail is nil
	Mail     *Mail
	Logger   *slog.Logger
	Now      func() time.Time // tests only
}

// RangeEnd is the latest time at or before t on a whole interval of the
// wall clock of loc (UTC when nil): with 24h, loc's last midnight, so
// that a daily report covers the local day. The wall clock is truncated,
// then read back in loc: on the day of a clock change, the midnight
// before it had the other offset (taking t's offset for it gave 01:00 or
// 23:00).
func RangeEnd(t time.Time, interval time.Duration, loc *time.Location) time.Time {
	if loc == nil {
		loc = time.UTC
	}
	lt := t.In(loc)
	wall := time.Date(lt.Year(), lt.Month(), lt.Day(), lt.Hour(), lt.Minute(), lt.Second(), lt.Nanosecond(), time.UTC).Truncate(interval)
	end := time.Date(wall.Year(), wall.Month(), wall.Day(), wall.Hour(), wall.Minute(), wall.Second(), wall.Nanosecond(), loc)
	if end.After(t) {
		// A wall time the clock skipped (a change at midnight): the
		// offset of t, as an approximation on or before t.
		_, off := lt.Zone()
		shift := time.Duration(off) * time.Second
		end = t.Add(shift).UTC().Truncate(interval).Add(-shift)
	}
	return end.UTC()
}

// unit is what a schedule's ranges end on a whole of: the day of
// Location when Every is whole days, else Interval.
func (s Schedule) unit() time.Duration {
	if s.Every%(24*time.Hour) == 0 {
		return 24 * time.Hour
	}
	return s.Query.Interval
}

// firstEnd is the end of the range reported at now: the latest whole unit
// at least Delay before now.
func (s Schedule) firstEnd(now time.Time) time.Time {
	return RangeEnd(now.Add(-s.Delay), s.unit(), s.Location)
}

// start is the start of the range that ends at end: Every before it, on
// a whole unit of the wall clock (a local day has 23 or 25 hours on the
// night of a clock change), where the range before ended.
func (s Schedule) start(end time.Time) time.Time {
	u := s.unit()
	return RangeEnd(end.Add(-s.Every+u/2), u, s.Location)
}

// nextEnd is the end of the range after the one that ends at end: Every
// later, on a whole unit of the wall clock, so that a daily range ends on
// the next local midnight also across a clock change (when the local day
// has 23 or 25 hours), and is never the same range again.
func (s Schedule) nextEnd(end time.Time) time.Time {
	u := s.unit()
	return RangeEnd(end.Add(s.Every+u/2), u, s.Location)
}

// Once produces the report for the range ending at end and returns where
// it went.
func (s Schedule) Once(ctx context.Context, client *elasticsearch.Client, end time.Time) (string, error) {
	q := s.Query
	q.From, q.To, q.Location = s.start(end), end, s.Location
	r, err := Build(ctx, client, s.Kind, q)
	if err != nil {
		return "", err
	}
	if why := r.EmptyReason(); why != "" && s.Logger != nil {
		s.Logger.Warn("report has no line", "report", s.Kind, "why", why)
	}
	out, err := Render(r, s.Format)
	if err != nil {
		return "", err
	}
	name := FileName(s.Kind, end, s.Format)
	if s.Mail != nil {
		body := fmt.Sprintf("%s\n\n%d rows; the report is attached (%s).\n", r.Title(), len(r.Rows()), name)
		if why := r.EmptyReason(); why != "" {
			body = fmt.Sprintf("%s\n\nNo line in this report: %s.\n", r.Title(), why)
		}
		if err := s.Mail.Send(s.Mail.Message("spanflow: "+r.Title(), body, name, out, end)); err != nil {
			return "", err
		}
		return "mail to " + strings.Join(s.Mail.To, ", "), nil
	}
	path := filepath.Join(s.Dir, name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		return "", fmt.Errorf("write report: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write report: %w", err)
	}
	return path, nil
}

// Run produces a report now and then every Every until ctx ends. A run that
// fails is logged and the next one is still made; Run returns nil when ctx
// ends.
func (s Schedule) Run(ctx context.Context, client *elasticsearch.Client) error {
	if s.Every < time.Minute && s.Now == nil {
		return fmt.Errorf("--every %s: schedule reports at most once a minute", s.Every)
	}
	if s.Mail == nil {
		if err := os.MkdirAll(s.Dir, 0o755); err != nil {
			return fmt.Errorf("report directory: %w", err)
		}
	} else if err := s.Mail.Validate(); err != nil {
		return err
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	logger := s.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// Ranges end on a whole unit, so consecutive reports tile time.
	end := s.firstEnd(now())
	for {
		where, err := s.Once(ctx, client, end)
		if err != nil {
			logger.Error("report failed; next run as scheduled", "report", s.Kind, "error", err)
		} else {
			logger.Info("report written", "report", s.Kind, "to", where, "from", s.start(end), "until", end)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Until(s.nextEnd(end).Add(s.Delay))):
		}
		// After a sleep longer than asked (a suspended host), the
		// ranges missed are skipped: the latest one is reported.
		next, latest := s.nextEnd(end), s.firstEnd(now())
		if latest.After(next) {
			next = latest
		}
		end = next
	}
}
