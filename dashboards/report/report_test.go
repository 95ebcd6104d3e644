package report

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spanflow/spanflow/dashboards/internal/groundtruth"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/testutil"
)

// expectedLines computes the line-load rows from the records themselves.
func expectedLines(recs []flow.Record, q Query) [][]string {
	type acc struct {
		exporter, ifid        string
		bytes, packets, flows [2]uint64
		buckets               [2]map[int64]uint64
		names                 map[string]uint64
	}
	lines := map[string]*acc{}
	for i := range recs {
		r := &recs[i]
		if r.End.Before(q.From) || !r.End.Before(q.To) {
			continue
		}
		for d, ifx := range []struct {
			id   uint32
			name string
		}{{r.InIf, r.InIfName}, {r.OutIf, r.OutIfName}} {
			k := r.ObserverIP.String() + "/" + strconv.Itoa(int(ifx.id))
			a := lines[k]
			if a == nil {
				a = &acc{exporter: r.ObserverIP.String(), ifid: strconv.Itoa(int(ifx.id)), names: map[string]uint64{},
					buckets: [2]map[int64]uint64{{}, {}}}
				lines[k] = a
			}
			a.bytes[d] += r.Bytes
			a.packets[d] += r.Packets
			a.flows[d]++
			// Buckets start at the range's start, whole intervals apart.
			a.buckets[d][q.From.Add(r.End.Sub(q.From).Truncate(q.Interval)).Unix()] += r.Bytes
			if ifx.name != "" {
				a.names[ifx.name]++
			}
		}
	}
	var list []*acc
	for _, a := range lines {
		list = append(list, a)
	}
	sort.Slice(list, func(i, j int) bool {
		x, y := list[i].bytes[0]+list[i].bytes[1], list[j].bytes[0]+list[j].bytes[1]
		if x != y {
			return x > y
		}
		return list[i].exporter+list[i].ifid < list[j].exporter+list[j].ifid
	})
	span, iv := q.To.Sub(q.From).Seconds(), q.Interval.Seconds()
	r0 := func(v float64) string { return strconv.FormatInt(int64(math.Round(v)), 10) }
	var rows [][]string
	for _, a := range list {
		name, best := "", uint64(0)
		for n, c := range a.names {
			if c > best || c == best && n < name {
				name, best = n, c
			}
		}
		var peak [2]uint64
		for d := range 2 {
			for _, b := range a.buckets[d] {
				peak[d] = max(peak[d], b)
			}
		}
		rows = append(rows, []string{a.exporter, a.ifid, name,
			fmt.Sprint(a.bytes[0]), fmt.Sprint(a.bytes[1]), fmt.Sprint(a.packets[0]), fmt.Sprint(a.packets[1]),
			fmt.Sprint(a.flows[0]), fmt.Sprint(a.flows[1]),
			r0(float64(a.bytes[0]) * 8 / span), r0(float64(a.bytes[1]) * 8 / span),
			r0(float64(peak[0]) * 8 / iv), r0(float64(peak[1]) * 8 / iv)})
	}
	if q.Top > 0 && len(rows) > q.Top {
		rows = rows[:q.Top]
	}
	return rows
}

// expectedTopIP computes the Top-IP rows of the given lines from the records.
func expectedTopIP(recs []flow.Record, q Query, lines [][]string) [][]string {
	var rows [][]string
	for _, l := range lines {
		for _, role := range []string{"source", "destination"} {
			type acc struct {
				ip                    string
				bytes, packets, flows uint64
			}
			m := map[string]*acc{}
			for i := range recs {
				r := &recs[i]
				if r.End.Before(q.From) || !r.End.Before(q.To) || r.ObserverIP.String() != l[0] ||
					(strconv.Itoa(int(r.InIf)) != l[1] && strconv.Itoa(int(r.OutIf)) != l[1]) {
					continue
				}
				a := r.SrcAddr
				if role == "destination" {
					a = r.DstAddr
				}
				x := m[a.String()]
				if x == nil {
					x = &acc{ip: a.String()}
					m[a.String()] = x
				}
				x.bytes += r.Bytes
				x.packets += r.Packets
				x.flows++
			}
			var list []*acc
			for _, x := range m {
				list = append(list, x)
			}
			sort.Slice(list, func(i, j int) bool { return list[i].bytes > list[j].bytes })
			if len(list) > q.Top {
				if list[q.Top-1].bytes == list[q.Top].bytes {
					panic("tie at the cut-off: change the seed")
				}
				list = list[:q.Top]
			}
			for i, x := range list {
				rows = append(rows, []string{l[0], l[1], l[2], role, strconv.Itoa(i + 1), x.ip,
					fmt.Sprint(x.bytes), fmt.Sprint(x.packets), fmt.Sprint(x.flows)})
			}
		}
	}
	return rows
}

func readCSV(t *testing.T, b []byte) [][]string {
	t.Helper()
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatalf("report is not CSV: %v", err)
	}
	return rows
}

// TestReportsAgainstGroundTruth builds both reports on the real
// Elasticsearch from generated records and compares the CSV rows with the
// values computed from the records.
func TestReportsAgainstGroundTruth(t *testing.T) {
	url := testutil.Elasticsearch(t)
	client := groundtruth.Client(t, url)
	recs := groundtruth.Records(4000, 7)
	index := groundtruth.Index(t, client, recs)
	ctx := context.Background()

	for _, q := range []Query{
		{Index: index, From: groundtruth.Start, To: groundtruth.Start.Add(groundtruth.Span), Interval: time.Hour},
		{Index: index, From: groundtruth.Start.Add(90 * time.Minute), To: groundtruth.Start.Add(4*time.Hour + 30*time.Minute), Interval: 5 * time.Minute, Top: 4, Lines: 3},
		// A range starting off the hour, in hours: a bucket aligned to
		// the epoch would hold half an hour of flows for a whole one, and
		// the peak rate would read half the rate.
		{Index: index, From: groundtruth.Start.Add(90 * time.Minute), To: groundtruth.Start.Add(5*time.Hour + 30*time.Minute), Interval: time.Hour},
	} {
		t.Run(fmt.Sprintf("%s-%s-top%d", q.From.Format("1504"), q.To.Format("1504"), q.Top), func(t *testing.T) {
			ll, err := BuildLineLoad(ctx, client, q)
			if err != nil {
				t.Fatal(err)
			}
			out, err := Render(ll, "csv")
			if err != nil {
				t.Fatal(err)
			}
			got := readCSV(t, out)
			want := append([][]string{ll.Header()}, expectedLines(recs, q)...)
			if diff := testutil.Diff(got, want); diff != "" {
				t.Errorf("line-load CSV (-got, +want):\n%s", diff)
			}
			if len(want) < 3 {
				t.Fatalf("ground truth has %d rows: the dataset does not exercise the report", len(want))
			}

			qt := q
			if qt.Top == 0 {
				qt.Top = 5
			}
			tip, err := BuildTopIP(ctx, client, qt)
			if err != nil {
				t.Fatal(err)
			}
			out, err = Render(tip, "csv")
			if err != nil {
				t.Fatal(err)
			}
			all := expectedLines(recs, Query{From: q.From, To: q.To, Interval: q.Interval})
			if q.Lines > 0 {
				all = all[:q.Lines]
			}
			wantIP := append([][]string{tip.Header()}, expectedTopIP(recs, qt, all)...)
			if diff := testutil.Diff(readCSV(t, out), wantIP); diff != "" {
				t.Errorf("top-ip CSV (-got, +want):\n%s", diff)
			}

			md, err := Render(ll, "md")
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(md), "\n| "); n != len(want)+1 { // header, separator and data rows
				t.Errorf("markdown has %d table rows, want %d:\n%s", n, len(want), md)
			}
		})
	}
}

// TestEmptyRange reports no line when nothing was indexed in the range, and
// refuses an inverted range.
func TestEmptyRange(t *testing.T) {
	url := testutil.Elasticsearch(t)
	client := groundtruth.Client(t, url)
	index := groundtruth.Index(t, client, groundtruth.Records(50, 3))
	q := Query{Index: index, From: groundtruth.Start.Add(-48 * time.Hour), To: groundtruth.Start.Add(-24 * time.Hour), Interval: time.Hour}
	ll, err := BuildLineLoad(context.Background(), client, q)
	if err != nil || len(ll.Lines) != 0 {
		t.Errorf("empty range: %d lines, %v", len(ll.Lines), err)
	}
	for _, f := range Formats {
		if _, err := Render(ll, f); err != nil {
			t.Errorf("%s of an empty report: %v", f, err)
		}
	}
	q.From, q.To = q.To, q.From
	if _, err := BuildLineLoad(context.Background(), client, q); err == nil {
		t.Error("inverted range accepted")
	}
	// No index matches the pattern: an empty report, not an error.
	q = Query{Index: "spanflow-dashtest-none-*", From: groundtruth.Start, To: groundtruth.Start.Add(time.Hour), Interval: time.Hour}
	if ll, err := BuildLineLoad(context.Background(), client, q); err != nil || len(ll.Lines) != 0 {
		t.Errorf("no index: %d lines, %v", len(ll.Lines), err)
	}
}

// chromiumDump opens an HTML file in headless Chromium and returns the DOM
// after load and what Chromium logged, console messages included.
func chromiumDump(t *testing.T, chromium, path string) (dom, log string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--disable-extensions", "--user-data-dir="+t.TempDir(), "--enable-logging=stderr", "--v=0",
		"--virtual-time-budget=2000", "--dump-dom", "file://"+path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	return stdout.String(), stderr.String()
}

// consoleLine matches what Chromium logs for a console message or a page
// error (CSP violations included).
var consoleLine = regexp.MustCompile(`(?m)^.*(CONSOLE|Uncaught|Refused to).*$`)

// TestHTMLInChromium opens both HTML reports in Debian's headless Chromium:
// no console error, and the DOM holds the table with every row. A page with
// an inline script proves the console check sees errors.
func TestHTMLInChromium(t *testing.T) {
	chromium := testutil.Command(t, "chromium")
	url := testutil.Elasticsearch(t)
	client := groundtruth.Client(t, url)
	recs := groundtruth.Records(2000, 11)
	index := groundtruth.Index(t, client, recs)
	q := Query{Index: index, From: groundtruth.Start, To: groundtruth.Start.Add(groundtruth.Span), Interval: 15 * time.Minute, Top: 5, Lines: 4}
	dir := t.TempDir()
	for _, kind := range []string{"line-load", "top-ip"} {
		r, err := Build(context.Background(), client, kind, q)
		if err != nil {
			t.Fatal(err)
		}
		page, err := Render(r, "html")
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"http://", "https://", "<script", "<link", "@import", "url("} {
			if bytes.Contains(page, []byte(bad)) && !(bad == "http://" && bytes.Count(page, []byte(bad)) == bytes.Count(page, []byte(`xmlns="http://www.w3.org/2000/svg"`))) {
				t.Errorf("%s page contains %q: it must not load anything", kind, bad)
			}
		}
		path := filepath.Join(dir, kind+".html")
		if err := os.WriteFile(path, page, 0o644); err != nil {
			t.Fatal(err)
		}
		dom, log := chromiumDump(t, chromium, path)
		if m := consoleLine.FindAllString(log, -1); len(m) > 0 {
			t.Errorf("%s: Chromium logged console messages:\n%s", kind, strings.Join(m, "\n"))
		}
		if !strings.Contains(dom, `<table id="report">`) {
			t.Fatalf("%s: the DOM has no report table:\n%.2000s", kind, dom)
		}
		if got, want := strings.Count(dom, "<tr>"), len(r.Rows())+1; got != want || len(r.Rows()) == 0 {
			t.Errorf("%s: the DOM has %d table rows, want %d", kind, got, want)
		}
		if !strings.Contains(dom, "<svg") {
			t.Errorf("%s: no chart in the DOM", kind)
		}
		for _, row := range r.Rows()[:1] {
			if !strings.Contains(dom, "<td class=\"t\">"+row[0]+"</td>") {
				t.Errorf("%s: first row's exporter %s not shown", kind, row[0])
			}
		}
	}

	// The control: a page whose inline script the policy blocks must make
	// the check above fail.
	bad := filepath.Join(dir, "bad.html")
	os.WriteFile(bad, []byte(`<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="default-src 'none'"></head><body><script>console.log("x")</script><table id="report"></table></body></html>`), 0o644)
	if _, log := chromiumDump(t, chromium, bad); !consoleLine.MatchString(log) {
		t.Errorf("Chromium logged nothing for a blocked inline script: the console check cannot see errors\n%s", log)
	}
}

// TestRangeEnd: a schedule's ranges end on the wall clock's whole
// intervals in its time zone: a daily report covers the local day, in
// winter and in summer time.
func TestRangeEnd(t *testing.T) {
	zurich, err := time.LoadLocation("Europe/Zurich")
	if err != nil {
		t.Fatal(err)
	}
	kolkata, err := time.LoadLocation("Asia/Kolkata") // +05:30
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		now      time.Time
		interval time.Duration
		loc      *time.Location
		want     time.Time
	}{
		{time.Date(2026, 12, 7, 23, 30, 0, 0, time.UTC), 24 * time.Hour, nil, time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)},
		// 00:30 in Zurich (winter, +01:00): the day that ended at its midnight.
		{time.Date(2026, 12, 7, 23, 30, 0, 0, time.UTC), 24 * time.Hour, zurich, time.Date(2026, 12, 7, 23, 0, 0, 0, time.UTC)},
		// 22:30 in Zurich (summer, +02:00): still the day before.
		{time.Date(2026, 7, 7, 20, 30, 0, 0, time.UTC), 24 * time.Hour, zurich, time.Date(2026, 7, 6, 22, 0, 0, 0, time.UTC)},
		{time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC), 24 * time.Hour, kolkata, time.Date(2026, 12, 7, 18, 30, 0, 0, time.UTC)},
		{time.Date(2026, 12, 7, 20, 10, 0, 0, time.UTC), time.Hour, kolkata, time.Date(2026, 12, 7, 19, 30, 0, 0, time.UTC)},
		// The days of the clock changes, after them: their midnights had
		// the other offset.
		{time.Date(2026, 10, 25, 12, 0, 0, 0, time.UTC), 24 * time.Hour, zurich, time.Date(2026, 10, 24, 22, 0, 0, 0, time.UTC)},
		{time.Date(2026, 3, 29, 12, 0, 0, 0, time.UTC), 24 * time.Hour, zurich, time.Date(2026, 3, 28, 23, 0, 0, 0, time.UTC)},
	} {
		if got := RangeEnd(tc.now, tc.interval, tc.loc); !got.Equal(tc.want) {
			t.Errorf("RangeEnd(%v, %v, %v) = %v, want %v", tc.now, tc.interval, tc.loc, got.UTC(), tc.want)
		}
	}
}

// TestScheduleLocalDays: a daily schedule in a time zone reports each
// local day once, from its midnight to the next, whatever --interval and
// the time it starts at, across both clock changes (days of 23 and 25
// hours); a schedule of hours ends on whole intervals an hour apart.
func TestScheduleLocalDays(t *testing.T) {
	zurich, err := time.LoadLocation("Europe/Zurich")
	if err != nil {
		t.Fatal(err)
	}
	for _, started := range []time.Time{time.Date(2026, 10, 22, 12, 23, 0, 0, time.UTC), time.Date(2026, 3, 26, 12, 23, 0, 0, time.UTC)} {
		s := Schedule{Every: 24 * time.Hour, Delay: 2 * time.Minute, Location: zurich, Query: Query{Interval: time.Hour}}
		end := s.firstEnd(started)
		day := started.In(zurich).AddDate(0, 0, -1)
		for range 8 {
			from, lt := s.start(end).In(zurich), end.In(zurich)
			wantFrom := time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, zurich)
			if !from.Equal(wantFrom) || !lt.Equal(wantFrom.AddDate(0, 0, 1)) {
				t.Fatalf("started %v: report from %v to %v, want the day of %v", started, from, lt, wantFrom)
			}
			day = day.AddDate(0, 0, 1)
			end = s.nextEnd(end)
		}
	}
	s := Schedule{Every: time.Hour, Delay: 2 * time.Minute, Location: zurich, Query: Query{Interval: 5 * time.Minute}}
	end := s.firstEnd(time.Date(2026, 10, 24, 23, 23, 0, 0, time.UTC))
	if want := time.Date(2026, 10, 24, 23, 20, 0, 0, time.UTC); !end.Equal(want) {
		t.Fatalf("hourly schedule's first end %v, want %v", end, want)
	}
	for range 6 { // through the night of the change
		next := s.nextEnd(end)
		if next.Sub(end) != time.Hour || !s.start(next).Equal(end) {
			t.Fatalf("hourly schedule: range %v to %v after one ending %v", s.start(next), next, end)
		}
		end = next
	}
}

// TestScheduleIntoDirectory runs the schedule for two periods and finds a
// report file per period whose rows cover exactly that period.
func TestScheduleIntoDirectory(t *testing.T) {
	url := testutil.Elasticsearch(t)
	client := groundtruth.Client(t, url)
	// Records from 20 s ago to 10 s ahead, so that every scheduled range holds some.
	recs := groundtruth.Records(300, 5)
	now := time.Now().UTC()
	for i := range recs {
		d := recs[i].End.Sub(groundtruth.Start) / 720 // 6 h squeezed into 30 s
		recs[i].End = now.Add(-20*time.Second + d)
		recs[i].Start = recs[i].End.Add(-time.Second)
		recs[i].Received = recs[i].End
	}
	index := groundtruth.Index(t, client, recs)
	dir := t.TempDir()
	s := Schedule{Kind: "line-load", Format: "csv", Every: 2 * time.Second, Dir: dir, Now: time.Now,
		Query: Query{Index: index, Interval: time.Second}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Run(ctx, client); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "line-load-*.csv"))
	if len(files) < 2 {
		t.Fatalf("%d report files after 5 s of a 2 s schedule: %v", len(files), files)
	}
	rows := 0
	defer func() {
		if rows == 0 {
			t.Error("every scheduled report is empty: the test does not exercise the schedule")
		}
	}()
	rows += checkScheduled(t, files, recs)
}

// TestMailThroughSMTPServer mails a report through Python's smtpd debugging
// server (a real SMTP server printing what it receives) and finds the
// attachment intact.
func TestMailThroughSMTPServer(t *testing.T) {
	python := testutil.Command(t, "python3")
	url := testutil.Elasticsearch(t)
	client := groundtruth.Client(t, url)
	recs := groundtruth.Records(500, 9)
	index := groundtruth.Index(t, client, recs)

	// Python up to 3.11 (Debian 12) has smtpd; later ones need aiosmtpd
	// (Debian package python3-aiosmtpd). Both print what they receive.
	addr := testutil.FreeAddr(t, "tcp")
	var srv *exec.Cmd
	switch {
	case exec.Command(python, "-c", "import smtpd").Run() == nil:
		srv = exec.Command(python, "-u", "-W", "ignore", "-m", "smtpd", "-n", "-c", "DebuggingServer", addr)
	case exec.Command(python, "-c", "import aiosmtpd").Run() == nil:
		srv = exec.Command(python, "-u", "-m", "aiosmtpd", "-n", "-l", addr)
	default:
		testutil.NeedService(t, "an SMTP server", "python3 has neither smtpd (Python <= 3.11) nor aiosmtpd (python3-aiosmtpd)")
	}
	var out bytes.Buffer
	srv.Stdout, srv.Stderr = &out, &out
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	var stopOnce sync.Once
	stop := func() { stopOnce.Do(func() { srv.Process.Kill(); srv.Wait() }) }
	defer stop()
	m := &Mail{Server: addr, From: "spanflow@example.net", To: []string{"noc@example.net", "lead@example.net"}}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	s := Schedule{Kind: "top-ip", Format: "csv", Every: groundtruth.Span, Mail: m,
		Query: Query{Index: index, Interval: time.Hour, Top: 3, Lines: 2}}
	var err error
	for range 50 { // the server needs a moment to listen
		if _, err = s.Once(context.Background(), client, groundtruth.Start.Add(groundtruth.Span)); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	stop() // the server has printed the message; reading its output now is safe
	got := out.String()
	q := Query{From: groundtruth.Start, To: groundtruth.Start.Add(groundtruth.Span), Interval: time.Hour, Top: 3}
	lines := expectedLines(recs, q)[:2]
	var want bytes.Buffer
	w := csv.NewWriter(&want)
	w.Write(TopIP{}.Header())
	w.WriteAll(expectedTopIP(recs, q, lines))
	for _, s := range []string{"Subject: spanflow: Top IP per line", "To: noc@example.net, lead@example.net", `filename="top-ip-20260110T060000Z.csv"`} {
		if !strings.Contains(got, s) {
			t.Errorf("mail lacks %q:\n%.3000s", s, got)
		}
	}
	// The debugging server prints the message with b'...' lines; rebuild the
	// base64 attachment from them.
	var b64 strings.Builder
	in := false
	for _, line := range strings.Split(got, "\n") {
		line = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(line, "b'"), "'"), "'")
		switch {
		case strings.HasPrefix(line, "Content-Disposition: attachment"):
			in = true
		case in && strings.HasPrefix(line, "--spanflow-"):
			in = false
		case in && line != "":
			b64.WriteString(line)
		}
	}
	att, err := decodeBase64(b64.String())
	if err != nil || !bytes.Equal(att, want.Bytes()) {
		t.Errorf("attachment (%v):\n%s\nwant:\n%s", err, att, want.Bytes())
	}
}

func decodeBase64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }

// TestTopIPAcrossDailyIndices ranks addresses over two daily indices (two
// shards) where the busiest sources are not among either day's first 1000:
// a terms aggregation, ranked per shard, missed one and undercounted the
// other. The ground truth is summed from the records.
func TestTopIPAcrossDailyIndices(t *testing.T) {
	url := testutil.Elasticsearch(t)
	client := groundtruth.Client(t, url)
	obs := netip.MustParseAddr("10.255.0.1")
	steady, spike := netip.MustParseAddr("10.9.9.9"), netip.MustParseAddr("10.9.9.10")
	var all []flow.Record
	day := func(d int) []flow.Record {
		t0 := groundtruth.Start.Add(time.Duration(d) * 24 * time.Hour)
		rec := func(src netip.Addr, bytes uint64) flow.Record {
			return flow.Record{Kind: flow.KindIPFIX, ObserverIP: obs, InIf: 1, OutIf: 2, Proto: 17,
				Start: t0, End: t0.Add(time.Minute), Received: t0.Add(time.Minute),
				SrcAddr: src, DstAddr: netip.AddrFrom4([4]byte{10, 8, 8, byte(d)}), Bytes: bytes, Packets: 1}
		}
		var recs []flow.Record
		for i := range 1500 { // the day's own addresses, 100 bytes each
			recs = append(recs, rec(netip.AddrFrom4([4]byte{10, byte(d + 1), byte(i / 256), byte(i % 256)}), 100))
		}
		recs = append(recs, rec(steady, 60)) // 120 in all, never among a day's first 1000
		recs = append(recs, rec(spike, []uint64{150, 50}[d]))
		all = append(all, recs...)
		return recs
	}
	a, b := groundtruth.Index(t, client, day(0)), groundtruth.Index(t, client, day(1))
	q := Query{Index: a + "," + b, From: groundtruth.Start, To: groundtruth.Start.Add(48 * time.Hour), Interval: time.Hour, Top: 2}
	r, err := BuildTopIP(context.Background(), client, q)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Render(r, "csv")
	if err != nil {
		t.Fatal(err)
	}
	want := append([][]string{r.Header()}, expectedTopIP(all, q, expectedLines(all, q))...)
	if diff := testutil.Diff(readCSV(t, out), want); diff != "" {
		t.Errorf("top-ip CSV (-got, +want):\n%s", diff)
	}
	if !strings.Contains(string(out), ","+steady.String()+",120,") {
		t.Errorf("the steady source is not ranked with its 120 bytes:\n%s", out)
	}
}

// TestScheduleWaitsForLateFlows indexes each flow a while after its
// @timestamp, as the exporter's idle timeout, the collector's bulk requests
// and the index refresh make it happen, while the schedule runs: with a
// delay longer than that lateness every report equals its range's ground
// truth. Made at the very end of their range, reports lost the flows of
// their last moments for good (the next range starts there).
func TestScheduleWaitsForLateFlows(t *testing.T) {
	url := testutil.Elasticsearch(t)
	client := groundtruth.Client(t, url)
	const lateness = 400 * time.Millisecond
	recs := groundtruth.Records(40, 13)
	start := time.Now().UTC().Add(time.Second)
	for i := range recs {
		d := recs[i].End.Sub(groundtruth.Start) / 3600 // 6 h squeezed into 6 s
		recs[i].End = start.Add(d)
		recs[i].Start = recs[i].End.Add(-time.Second)
		recs[i].Received = recs[i].End
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].End.Before(recs[j].End) })
	index := groundtruth.Index(t, client, nil)
	var wg sync.WaitGroup
	var late atomic.Int64 // the most a flow was indexed after its end, checked below
	wg.Add(1)
	go func() { // the collector: each flow reaches the index lateness after it ended
		defer wg.Done()
		var enc flow.Encoder
		for i := range recs {
			time.Sleep(time.Until(recs[i].End.Add(lateness)))
			doc := enc.AppendDocument(nil, &recs[i])
			testutil.ESRequest(t, client, "POST", "/"+index+"/_doc?refresh=true", "application/json", doc)
			late.Store(max(late.Load(), int64(time.Since(recs[i].End))))
		}
	}()
	dir := t.TempDir()
	s := Schedule{Kind: "line-load", Format: "csv", Every: 2 * time.Second, Delay: time.Second, Dir: dir, Now: time.Now,
		Query: Query{Index: index, Interval: time.Second}}
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Second)
	defer cancel()
	if err := s.Run(ctx, client); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if l := time.Duration(late.Load()); l >= s.Delay {
		t.Skipf("a flow reached the index %s after its end, longer than the delay: the machine is too loaded", l)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "line-load-*.csv"))
	rows := 0
	rows += checkScheduled(t, files, recs)
	if len(files) < 3 || rows == 0 {
		t.Errorf("%d report files, %d rows: the test does not exercise the schedule", len(files), rows)
	}
}

// TestTopIPManyAddresses ranks a line with 25,000 sources and destinations
// over two indices (three pages of addresses, bytes that tie): the rows are
// those ranked from the records, ties in address order.
func TestTopIPManyAddresses(t *testing.T) {
	url := testutil.Elasticsearch(t)
	client := groundtruth.Client(t, url)
	rng := rand.New(rand.NewPCG(7, 8))
	obs := netip.MustParseAddr("192.0.2.9")
	var days [2][]flow.Record
	for i := range 25_000 {
		end := groundtruth.Start.Add(time.Duration(i%2)*24*time.Hour + time.Hour)
		days[i%2] = append(days[i%2], flow.Record{Kind: flow.KindIPFIX, ObserverIP: obs, InIf: 7, Proto: 6,
			Start: end.Add(-time.Second), End: end, Received: end,
			SrcAddr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), DstAddr: netip.AddrFrom4([4]byte{172, 16, byte(i * 7 >> 8), byte(i * 7)}),
			Bytes: 1 + rng.Uint64N(100_000), Packets: 1})
	}
	index := groundtruth.Index(t, client, days[0]) + "," + groundtruth.Index(t, client, days[1])
	q := Query{Index: index, From: groundtruth.Start, To: groundtruth.Start.Add(48 * time.Hour), Interval: time.Hour, Top: 8}
	r, err := BuildTopIP(context.Background(), client, q)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Render(r, "csv")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{r.Header()}
	all := append(days[0], days[1]...)
	for _, role := range []string{"source", "destination"} {
		sums := map[netip.Addr][3]uint64{}
		for _, rec := range all {
			a := rec.SrcAddr
			if role == "destination" {
				a = rec.DstAddr
			}
			s := sums[a]
			sums[a] = [3]uint64{s[0] + rec.Bytes, s[1] + rec.Packets, s[2] + 1}
		}
		addrs := make([]netip.Addr, 0, len(sums))
		for a := range sums {
			addrs = append(addrs, a)
		}
		sort.Slice(addrs, func(i, j int) bool {
			if x, y := sums[addrs[i]][0], sums[addrs[j]][0]; x != y {
				return x > y
			}
			return addrs[i].Less(addrs[j])
		})
		for i, a := range addrs[:q.Top] {
			s := sums[a]
			want = append(want, []string{obs.String(), "7", "", role, strconv.Itoa(i + 1), a.String(),
				fmt.Sprint(s[0]), fmt.Sprint(s[1]), fmt.Sprint(s[2])})
		}
	}
	if diff := testutil.Diff(readCSV(t, out), want); diff != "" {
		t.Errorf("top-ip CSV (-got, +want):\n%s", diff)
	}
}

// checkScheduled compares each scheduled line-load file (named by the end
// of its 2 s range) with the lines worked out from recs, and returns how
// many rows they hold.
func checkScheduled(t *testing.T, files []string, recs []flow.Record) (rows int) {
	t.Helper()
	for _, f := range files {
		end, err := time.Parse("20060102T150405Z", strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "line-load-"), ".csv"))
		if err != nil {
			t.Fatalf("file name %s: %v", f, err)
		}
		b, _ := os.ReadFile(f)
		q := Query{From: end.Add(-2 * time.Second), To: end, Interval: time.Second}
		want := append([][]string{LineLoad{}.Header()}, expectedLines(recs, q)...)
		if diff := testutil.Diff(readCSV(t, b), want); diff != "" {
			t.Errorf("%s (-got, +want):\n%s", f, diff)
		}
		rows += len(want) - 1
	}
	return rows
}
