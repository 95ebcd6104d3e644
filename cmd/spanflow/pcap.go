package main

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spanflow/spanflow/exporter/ring"
	"github.com/spanflow/spanflow/internal/numfmt"
	"github.com/spanflow/spanflow/internal/secret"
)

func pcapCommand() *cli.Command {
	return &cli.Command{
		Name:  "pcap",
		Usage: "read the packets an exporter keeps in its packet ring (--packet-ring) back as pcap",
		Description: "The exporter run with --packet-ring DIR keeps the frames it captures in segment files under DIR,\n" +
			"with an index of the flows in each block. 'pcap query' writes one flow's or one time window's\n" +
			"frames as a pcap that Wireshark and tshark read; 'pcap list' shows the segments. See docs/retrospection.md.",
		Subcommands: []*cli.Command{pcapQueryCommand(), pcapListCommand(), pcapPinCommand(), pcapUnpinCommand()},
	}
}

func pcapQueryCommand() *cli.Command {
	return &cli.Command{
		Name:  "query",
		Usage: "write the frames of a flow, a time window or a filter from a packet ring as pcap",
		Description: "Frames come out in time order. --flow takes the network.community_id of a flow document or a\n" +
			"5-tuple, and reads only the blocks whose index holds that flow; --filter is a tcpdump filter run on\n" +
			"every frame of the window. Times: RFC 3339 (2026-12-05T02:13:00Z), 'YYYY-MM-DD HH:MM:SS' (UTC),\n" +
			"Unix seconds, or a duration before now (-15m). With several --exporter, a probe that fails is named\n" +
			"on a line of its own, the others' packets are written and the exit status is 3 (partial).\n" +
			"Example: spanflow pcap query --ring /var/lib/spanflow/ring --from -1h --flow '1:LQU9qZlK+B5F3KDmev6m5PMibrg=' -o pay.pcap",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "ring", Usage: "the packet ring's `DIR` (the exporter's --packet-ring) on this host"},
			&cli.StringSliceFlag{Name: "exporter", Usage: "query the ring an exporter serves (its --packet-ring-listen) at `URL`, https://probe:9109; repeat for several: their packets are merged by time"},
			&cli.StringFlag{Name: "token-file", Usage: "`FILE` holding the exporters' query token (else SPANFLOW_PACKET_RING_TOKEN)"},
			&cli.StringFlag{Name: "ca-file", Usage: "PEM `FILE` of the CAs the exporters' certificates chain to (system CAs when empty)"},
			&cli.StringFlag{Name: "cert-file", Usage: "PEM `FILE` of a client certificate for exporters that take one (give key-file too)"},
			&cli.StringFlag{Name: "key-file", Usage: "PEM `FILE` of the key of cert-file"},
			&cli.StringFlag{Name: "from", Usage: "first `TIME` of the window (default: the oldest frame)"},
			&cli.StringFlag{Name: "to", Usage: "end `TIME` of the window, not included (default: now)"},
			&cli.StringFlag{Name: "flow", Usage: "the flow's community id (`ID`, 1:...) or 5-tuple 'tcp 10.1.2.3:51000 10.4.5.6:443' (both directions; inner flow of tunnels)"},
			&cli.StringFlag{Name: "filter", Usage: "tcpdump filter `EXPR` the frames must pass, e.g. 'host 10.1.2.3 and port 443' (on the frames as mirrored, tunnel headers included)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "-", Usage: "write to `FILE` ('-': standard output)"},
			&cli.BoolFlag{Name: "pcapng", Usage: "write pcapng (one interface per link type and observation point) instead of pcap"},
			&cli.DurationFlag{Name: "timeout", Value: time.Minute, Usage: "how long each exporter may take to connect and start its answer: past it, that exporter has failed"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("unexpected argument %q: options are flags (see --help)", c.Args().First())
			}
			now := time.Now()
			var q ring.Query
			var err error
			if s := c.String("from"); s != "" {
				if q.From, err = parseTime(s, now); err != nil {
					return fmt.Errorf("--from: %w", err)
				}
			}
			if s := c.String("to"); s != "" {
				if q.To, err = parseTime(s, now); err != nil {
					return fmt.Errorf("--to: %w", err)
				}
			}
			if q.From != 0 && q.To != 0 && q.To <= q.From {
				return errors.New("--to must come after --from")
			}
			if s := c.String("flow"); s != "" {
				if q.Key, _, err = ring.ParseFlow(s); err != nil {
					return err
				}
			}
			var filter *ring.Filter
			if s := c.String("filter"); s != "" {
				if filter, err = ring.NewFilter(s); err != nil {
					return err
				}
				q.Match = filter.Match
			}
			warn := func(s string) { fmt.Fprintf(c.App.ErrWriter, "spanflow pcap: warning: %s\n", s) }
			start := time.Now()
			var pkts []ring.Packet
			var st ring.QueryStats
			switch {
			case c.String("ring") == "" && len(c.StringSlice("exporter")) == 0:
				return errors.New("no packet ring: give --ring DIR or --exporter URL")
			case c.String("ring") != "":
				if pkts, st, err = ring.Search(c.String("ring"), q, warn); err != nil {
					return err
				}
			}
			var failed int
			if urls := c.StringSlice("exporter"); len(urls) > 0 {
				remote, errs, err := fetchRemote(c, urls, q, warn)
				if err != nil {
					return err
				}
				for _, err := range errs {
					if err != nil {
						failed++
						if len(urls) > 1 || c.String("ring") != "" {
							fmt.Fprintf(c.App.ErrWriter, "spanflow pcap: failed: %s\n", oneLineError(err))
						}
					}
				}
				if failed == len(urls) && c.String("ring") == "" {
					// Nothing answered: no capture is written, as if
					// nothing matched.
					if failed == 1 {
						return errs[0]
					}
					if !slices.ContainsFunc(errs, func(err error) bool { return !errors.Is(err, ring.ErrGone) }) {
						return fmt.Errorf("no exporter holds that time: %w on each of the %d", ring.ErrGone, failed)
					}
					return fmt.Errorf("none of the %d exporters answered", failed)
				}
				pkts = append(pkts, remote...)
				slices.SortStableFunc(pkts, func(a, b ring.Packet) int { return cmp.Compare(a.Time, b.Time) })
			}
			if filter != nil && filter.Err != nil {
				warn(fmt.Sprintf("the filter does not apply to some frames, which are left out: %v", filter.Err))
			}
			if !c.Bool("pcapng") {
				// Before the output file is made: an error must not leave
				// an empty capture behind, as if nothing matched.
				for _, p := range pkts {
					if p.LinkType != pkts[0].LinkType {
						return fmt.Errorf("the frames have link types %d and %d, which one pcap file cannot hold: give --pcapng", pkts[0].LinkType, p.LinkType)
					}
				}
			}
			var out io.Writer = c.App.Writer
			name := c.String("output")
			var f *os.File
			if name != "-" {
				if f, err = os.Create(name); err != nil {
					return err
				}
				out = f
			}
			if c.Bool("pcapng") {
				err = ring.WritePcapng(out, pkts)
			} else {
				err = ring.WritePcap(out, pkts)
			}
			if f != nil {
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
			if err != nil {
				return fmt.Errorf("write %s: %w", name, err)
			}
			// The blocks read are the local ring's: exporters asked over
			// HTTP read their own.
			from := ""
			if c.String("ring") != "" {
				from = fmt.Sprintf("; %d of %d blocks of the ring read (%s)", st.BlocksRead, st.Blocks, numfmt.Count(uint64(st.BytesRead), "byte", ""))
			}
			if n := len(c.StringSlice("exporter")); n > 0 {
				from += fmt.Sprintf("; %d of %s answered", n-failed, numfmt.Count(uint64(n), "exporter", ""))
			}
			fmt.Fprintf(c.App.ErrWriter, "spanflow pcap: %s written%s in %s\n",
				numfmt.Count(uint64(len(pkts)), "packet", ""), from, time.Since(start).Round(time.Millisecond))
			if failed > 0 {
				return cli.Exit(fmt.Sprintf("partial answer: %d of %d exporters failed (named above); the output holds the packets of the others", failed, len(c.StringSlice("exporter"))), exitPartial)
			}
			return nil
		},
	}
}

func pcapListCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "show the segments of a packet ring: time ranges, sizes, packets, pins, damage",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "ring", Required: true, Usage: "the packet ring's `DIR` (the exporter's --packet-ring)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("unexpected argument %q: options are flags (see --help)", c.Args().First())
			}
			segs, truncated, err := ring.List(c.String("ring"), func(string) {})
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "SEGMENT\tFIRST\tLAST\tBYTES\tPACKETS\tBLOCKS\tCOMPRESSION\tINDEX\tPINNED\tDAMAGE")
			var total int64
			for _, s := range segs {
				total += s.Size
				ratio, index := "-", "-"
				if s.Size > 0 && s.RawBytes > 0 {
					ratio = fmt.Sprintf("%.2fx", float64(s.RawBytes)/float64(s.Size-s.IndexBytes))
					index = numfmt.Percent(100 * float64(s.IndexBytes) / float64(s.Size))
				}
				damage := s.Damage
				if damage == "" {
					damage = "-"
				}
				pin := "-"
				if s.Pinned {
					pin = "yes"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", strings.TrimSuffix(baseName(s.Path), ".seg"), formatTime(s.First), formatTime(s.Last), s.Size, s.Packets, s.Blocks, ratio, index, pin, damage)
			}
			w.Flush()
			fmt.Fprintf(c.App.Writer, "%s, %s", numfmt.Count(uint64(len(segs)), "segment", ""), numfmt.Count(uint64(total), "byte", ""))
			if truncated != 0 {
				fmt.Fprintf(c.App.Writer, "; packets up to %s were removed to keep the ring within its size", formatTime(truncated))
			}
			fmt.Fprintln(c.App.Writer)
			pins, err := ring.Pins(c.String("ring"))
			for _, p := range pins {
				fmt.Fprintf(c.App.Writer, "pin %s: %s to %s\n", p.Name, formatTime(p.From), formatTime(p.To))
			}
			return err
		},
	}
}

func pcapPinCommand() *cli.Command {
	return &cli.Command{
		Name:  "pin",
		Usage: "keep the segments holding a time window past retention, until unpinned",
		Description: "The exporter's retention passes pinned segments by (they still count in the ring's size: when\n" +
			"every segment is pinned, new frames are dropped and counted). Example, an incident at 02:13:\n" +
			"spanflow pcap pin --ring /var/lib/spanflow/ring --from '2026-12-05 02:10:00' --to '2026-12-05 02:20:00' --name payment-0213",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "ring", Required: true, Usage: "the packet ring's `DIR`"},
			&cli.StringFlag{Name: "from", Required: true, Usage: "first `TIME` to keep (as pcap query reads times)"},
			&cli.StringFlag{Name: "to", Required: true, Usage: "end `TIME` of the window"},
			&cli.StringFlag{Name: "name", Required: true, Usage: "one-word `NAME` of the pin (a ticket, an alert): printable characters, no white space, at most 255 bytes; the same name replaces the pin"},
		},
		Action: func(c *cli.Context) error {
			now := time.Now()
			from, err := parseTime(c.String("from"), now)
			if err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			to, err := parseTime(c.String("to"), now)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			return ring.AddPin(c.String("ring"), ring.Pin{From: from, To: to, Name: c.String("name")})
		},
	}
}

func pcapUnpinCommand() *cli.Command {
	return &cli.Command{
		Name:  "unpin",
		Usage: "remove a pin: its segments go with retention like the others",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "ring", Required: true, Usage: "the packet ring's `DIR`"},
			&cli.StringFlag{Name: "name", Required: true, Usage: "the pin's `NAME`"},
		},
		Action: func(c *cli.Context) error { return ring.RemovePin(c.String("ring"), c.String("name")) },
	}
}

// exitPartial is the exit status of a query whose output misses the
// packets of some exporters that failed (docs/retrospection.md).
const exitPartial = 3

// maxFetches is how many exporters are queried at once.
const maxFetches = 8

// fetchRemote runs the query on every exporter given, maxFetches at a
// time, so that the slowest probe, not their sum, sets how long it takes.
// The packets of those that answered come back in one list, in the order
// of urls, to be sorted by time; errs[i] says why urls[i] failed (naming
// it). err is
// for what stops every fetch (the token, the TLS files).
func fetchRemote(c *cli.Context, urls []string, q ring.Query, warn func(string)) (pkts []ring.Packet, errs []error, err error) {
	token, err := secret.Read(c.String("token-file"), "SPANFLOW_PACKET_RING_TOKEN")
	if err != nil {
		return nil, nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if f := c.String("ca-file"); f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, err
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("ca-file %s: no PEM certificate", f)
		}
	}
	if cf, kf := c.String("cert-file"), c.String("key-file"); cf != "" || kf != "" {
		cert, err := tls.LoadX509KeyPair(cf, kf)
		if err != nil {
			return nil, nil, fmt.Errorf("client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	wait := c.Duration("timeout")
	if wait <= 0 {
		return nil, nil, errors.New("--timeout must be positive")
	}
	// The exporter builds its whole answer before it sends the header:
	// --timeout bounds connecting and that search. The transfer that
	// follows has the server's own bound (a minute and 2 s per MiB, 9.5
	// minutes for the largest answer), plus a minute of slack.
	tr := &http.Transport{
		TLSClientConfig:       tc,
		DialContext:           (&net.Dialer{Timeout: wait}).DialContext,
		TLSHandshakeTimeout:   wait,
		ResponseHeaderTimeout: wait,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: wait + 11*time.Minute}
	type answer struct {
		pkts     []ring.Packet
		warnings []string
		err      error
	}
	answers := make([]answer, len(urls))
	turns := make(chan struct{}, maxFetches)
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			turns <- struct{}{}
			defer func() { <-turns }()
			a := &answers[i]
			rm := ring.Remote{URL: u, Token: token, Client: client}
			a.pkts, a.err = rm.Fetch(c.Context, q.From, q.To, c.String("flow"), c.String("filter"), func(s string) { a.warnings = append(a.warnings, s) })
			// Every error names the exporter once; a url.Error repeats
			// the whole query's URL.
			var ue *url.Error
			if errors.As(a.err, &ue) && ue.Timeout() {
				a.err = fmt.Errorf("exporter %s: no answer within %s (--timeout)", u, wait)
			} else if errors.As(a.err, &ue) {
				a.err = fmt.Errorf("exporter %s: %w", u, ue.Err)
			}
		}()
	}
	wg.Wait()
	errs = make([]error, len(urls))
	for i, a := range answers {
		for _, s := range a.warnings {
			warn(s)
		}
		errs[i] = a.err
		pkts = append(pkts, a.pkts...)
	}
	return pkts, errs, nil
}

func baseName(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

func formatTime(ns int64) string {
	if ns == 0 {
		return "-"
	}
	return time.Unix(0, ns).UTC().Format("2006-01-02T15:04:05.000000Z")
}

// parseTime reads a query's time: RFC 3339, "YYYY-MM-DD HH:MM:SS" (UTC),
// Unix seconds (with a fraction), or a negative duration before now.
func parseTime(s string, now time.Time) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "now" {
		return now.UnixNano(), nil
	}
	if strings.HasPrefix(s, "-") {
		if d, err := time.ParseDuration(s); err == nil {
			return now.Add(d).UnixNano(), nil
		}
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UnixNano(), nil
		}
	}
	if sec, frac, _ := strings.Cut(s, "."); len(frac) <= 9 {
		v, err1 := strconv.ParseInt(sec, 10, 64)
		f, err2 := strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
		if err1 == nil && err2 == nil && v > 0 && v < 1<<33 {
			return v*1e9 + f, nil
		}
	}
	return 0, fmt.Errorf("time %q: want RFC 3339 (2026-12-05T02:13:00Z), 'YYYY-MM-DD HH:MM:SS' (UTC), Unix seconds or -DURATION", s)
}
