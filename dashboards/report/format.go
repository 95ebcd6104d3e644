package report

import (
	"encoding/csv"
	"fmt"
	"html"
	"html/template"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Formats a report can be written in.
var Formats = []string{"csv", "md", "html"}

// Report is a built report of either kind.
type Report interface {
	// Kind is line-load or top-ip.
	Kind() string
	// Title says what the report is and which range it covers.
	Title() string
	// Header and Rows are the report's table: the CSV file, the Markdown and
	// HTML tables.
	Header() []string
	Rows() [][]string
	// Charts are inline SVG images for the HTML page.
	Charts() []template.HTML
	// EmptyReason says why the report has no line ("" when it has some):
	// no index matches, no flow in the range, flows without interface ids.
	EmptyReason() string
}

// EmptyReason implements Report.
func (r LineLoad) EmptyReason() string { return r.Empty }

// EmptyReason implements Report.
func (r TopIP) EmptyReason() string { return r.Empty }

// emptyText is the sentence an empty report shows in Markdown and HTML.
func emptyText(r Report) string {
	if why := r.EmptyReason(); why != "" {
		return "No line in this report: " + why + "."
	}
	return "No flows in this range."
}

// Kind implements Report.
func (LineLoad) Kind() string { return "line-load" }

// Kind implements Report.
func (TopIP) Kind() string { return "top-ip" }

func rangeText(q Query) string {
	if q.loc() == time.UTC {
		return fmt.Sprintf("%s to %s (UTC)", q.From.UTC().Format("2006-01-02 15:04"), q.To.UTC().Format("2006-01-02 15:04"))
	}
	return fmt.Sprintf("%s to %s (%s)", timeText(q, q.From), timeText(q, q.To), q.loc())
}

// timeText writes a time of the report: in UTC, or in its Location with
// the offset (the same wall time occurs twice when the clock goes back).
func timeText(q Query, t time.Time) string {
	if q.loc() == time.UTC {
		return t.UTC().Format("2006-01-02 15:04")
	}
	return t.In(q.loc()).Format("2006-01-02 15:04 -07:00")
}

// Title implements Report.
func (r LineLoad) Title() string { return "Line load, " + rangeText(r.Query) }

// Title implements Report.
func (r TopIP) Title() string { return "Top IP per line, " + rangeText(r.Query) }

func u(v uint64) string   { return strconv.FormatUint(v, 10) }
func f0(v float64) string { return strconv.FormatFloat(math.Round(v), 'f', 0, 64) }

// Header implements Report.
func (LineLoad) Header() []string {
	return []string{"exporter", "interface", "name", "in_bytes", "out_bytes", "in_packets", "out_packets",
		"in_flows", "out_flows", "in_avg_bps", "out_avg_bps", "in_peak_bps", "out_peak_bps"}
}

// Rows implements Report.
func (r LineLoad) Rows() [][]string {
	var rows [][]string
	for _, l := range r.Lines {
		rows = append(rows, []string{l.Exporter, l.Interface, l.Name, u(l.InBytes), u(l.OutBytes), u(l.InPackets), u(l.OutPackets),
			u(l.InFlows), u(l.OutFlows), f0(l.InAvgBps), f0(l.OutAvgBps), f0(l.InPeakBps), f0(l.OutPeakBps)})
	}
	return rows
}

// Header implements Report.
func (TopIP) Header() []string {
	return []string{"exporter", "interface", "name", "role", "rank", "ip", "bytes", "packets", "flows"}
}

// Rows implements Report.
func (r TopIP) Rows() [][]string {
	var rows [][]string
	for _, l := range r.Lines {
		for _, side := range []struct {
			role string
			ips  []IP
		}{{"source", l.Sources}, {"destination", l.Destinations}} {
			for _, ip := range side.ips {
				rows = append(rows, []string{l.Exporter, l.Interface, l.Name, side.role, strconv.Itoa(ip.Rank), ip.IP,
					u(ip.Bytes), u(ip.Packets), u(ip.Flows)})
			}
		}
	}
	return rows
}

// Write writes the report in format (csv, md or html).
func Write(w io.Writer, r Report, format string) error {
	switch format {
	case "csv":
		cw := csv.NewWriter(w)
		cw.Write(r.Header())
		cw.WriteAll(r.Rows())
		return cw.Error()
	case "md":
		return writeMarkdown(w, r)
	case "html":
		return writeHTML(w, r)
	}
	return fmt.Errorf("unknown report format %q: use csv, md or html", format)
}

func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

func writeMarkdown(w io.Writer, r Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", r.Title())
	if len(r.Rows()) == 0 {
		b.WriteString(emptyText(r) + "\n\n")
	}
	h := r.Header()
	b.WriteString("| " + strings.Join(h, " | ") + " |\n|")
	for range h {
		b.WriteString(" --- |")
	}
	b.WriteString("\n")
	for _, row := range r.Rows() {
		cells := make([]string, len(row))
		for i, c := range row {
			cells[i] = mdCell(c)
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// page is one HTML document with no external resource: styles inline,
// charts as inline SVG, and a content security policy that forbids loading
// anything, so a mail client or browser shows it offline as it is.
var page = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th { background: #eee; }
td.t { text-align: left; }
figure { margin: 1em 0; }
figcaption { font-size: 0.9em; color: #555; }
svg text { font-family: sans-serif; font-size: 11px; fill: #333; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p>Generated by spanflow at {{.Generated}}. Bytes are layer-3 bytes of the flows; bit rates are bytes × 8 per second.</p>
{{range .Charts}}<figure>{{.}}</figure>
{{end}}{{if not .Rows}}<p id="empty">{{.Empty}}</p>
{{end}}<table id="report">
<thead><tr>{{range .Header}}<th>{{.}}</th>{{end}}</tr></thead>
<tbody>
{{range .Rows}}<tr>{{range $i, $c := .}}<td{{if lt $i 4}} class="t"{{end}}>{{$c}}</td>{{end}}</tr>
{{end}}</tbody>
</table>
</body>
</html>
`))

func writeHTML(w io.Writer, r Report) error {
	return page.Execute(w, map[string]any{
		"Title": r.Title(), "Generated": time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		"Header": r.Header(), "Rows": r.Rows(), "Charts": r.Charts(), "Empty": emptyText(r),
	})
}

// ---- charts ----

var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

// human formats a rate or a count with SI prefixes.
func human(v float64, unit string) string {
	for _, p := range []struct {
		f float64
		s string
	}{{1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if math.Abs(v) >= p.f {
			return strconv.FormatFloat(v/p.f, 'f', 1, 64) + " " + p.s + unit
		}
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " " + unit
}

func lineLabel(l Line) string {
	s := l.Exporter + " if " + l.Interface
	if l.Name != "" {
		s += " (" + l.Name + ")"
	}
	return s
}

// barChart draws horizontal bars, one group of bars per label.
func barChart(title string, labels []string, series []string, values [][]float64, unit string) template.HTML {
	const left, width, barH, gap = 260, 420, 12, 8
	var maxV float64
	for _, vs := range values {
		for _, v := range vs {
			maxV = math.Max(maxV, v)
		}
	}
	if maxV == 0 {
		maxV = 1
	}
	groupH := barH*len(series) + gap
	h := 30 + groupH*len(labels) + 20
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" role="img" width="%d" height="%d" viewBox="0 0 %d %d">`, left+width+110, h, left+width+110, h)
	fmt.Fprintf(&b, `<title>%s</title><text x="0" y="14" style="font-weight:bold">%s</text>`, html.EscapeString(title), html.EscapeString(title))
	for si, s := range series {
		fmt.Fprintf(&b, `<rect x="%d" y="20" width="10" height="8" fill="%s"/><text x="%d" y="28">%s</text>`, left+si*90, palette[si%len(palette)], left+si*90+14, html.EscapeString(s))
	}
	for i, label := range labels {
		y := 34 + i*groupH
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`, left-6, y+barH*len(series)/2+4, html.EscapeString(label))
		for si := range series {
			v := values[i][si]
			bw := v / maxV * width
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`, left, y+si*barH, bw, barH-2, palette[si%len(palette)])
			fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`, float64(left)+bw+4, y+si*barH+barH-3, html.EscapeString(human(v, unit)))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // every text is escaped above
}

// timeChart draws one polyline per series over the report's range.
func timeChart(title string, q Query, names []string, series [][]Point) template.HTML {
	const left, top, width, height = 70, 30, 640, 200
	var maxV float64
	for _, s := range series {
		for _, p := range s {
			maxV = math.Max(maxV, p.Bps)
		}
	}
	if maxV == 0 {
		maxV = 1
	}
	span := q.To.Sub(q.From).Seconds()
	x := func(t time.Time) float64 { return left + t.Sub(q.From).Seconds()/span*width }
	y := func(v float64) float64 { return top + height - v/maxV*height }
	legendH := 14 * len(names)
	w, h := left+width+20, top+height+30+legendH
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" role="img" width="%d" height="%d" viewBox="0 0 %d %d">`, w, h, w, h)
	fmt.Fprintf(&b, `<title>%s</title><text x="0" y="14" style="font-weight:bold">%s</text>`, html.EscapeString(title), html.EscapeString(title))
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#ccc"/>`, left, top, width, height)
	for i := 0; i <= 4; i++ {
		v := maxV * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`, left-4, y(v)+4, html.EscapeString(human(v, "bit/s")))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`, left, top+height+14, html.EscapeString(timeText(q, q.From)))
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`, left+width, top+height+14, html.EscapeString(timeText(q, q.To)))
	for i, s := range series {
		color := palette[i%len(palette)]
		var pts []string
		for _, p := range s {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p.Time.Add(p.End.Sub(p.Time)/2)), y(p.Bps)))
		}
		if len(pts) > 0 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, color, strings.Join(pts, " "))
		}
		ly := top + height + 28 + 14*i
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="8" fill="%s"/><text x="%d" y="%d">%s</text>`, left, ly-8, color, left+14, ly, html.EscapeString(names[i]))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // every text is escaped above
}

// chartLines is how many lines a chart shows at most.
const chartLines = 10

// Charts implements Report: average and peak rate per line, and the
// inbound utilisation over time of the busiest lines.
func (r LineLoad) Charts() []template.HTML {
	ls := r.Lines
	if len(ls) > chartLines {
		ls = ls[:chartLines]
	}
	if len(ls) == 0 {
		return nil
	}
	var labels, names []string
	var values [][]float64
	var in, out [][]Point
	for _, l := range ls {
		labels = append(labels, lineLabel(l))
		values = append(values, []float64{l.InAvgBps, l.InPeakBps, l.OutAvgBps, l.OutPeakBps})
		names = append(names, lineLabel(l))
		in = append(in, l.In)
		out = append(out, l.Out)
	}
	return []template.HTML{
		barChart("Average and peak rate per line", labels, []string{"in avg", "in peak", "out avg", "out peak"}, values, "bit/s"),
		timeChart(fmt.Sprintf("Traffic in, per %s", r.Query.Interval), r.Query, names, in),
		timeChart(fmt.Sprintf("Traffic out, per %s", r.Query.Interval), r.Query, names, out),
	}
}

// Charts implements Report: bytes of each line's top source addresses.
func (r TopIP) Charts() []template.HTML {
	var charts []template.HTML
	for i, l := range r.Lines {
		if i == chartLines {
			break
		}
		var labels []string
		var values [][]float64
		for _, ip := range l.Sources {
			labels = append(labels, ip.IP)
			values = append(values, []float64{float64(ip.Bytes)})
		}
		if len(labels) > 0 {
			charts = append(charts, barChart("Top sources on "+lineLabel(l.Line), labels, []string{"bytes"}, values, "B"))
		}
	}
	return charts
}
