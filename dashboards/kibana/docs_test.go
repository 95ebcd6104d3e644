package kibana

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spanflow/spanflow/internal/testutil"
)

// The panel reference in docs/dashboards.md is generated from spec.go, so
// the documentation says what the saved objects do; regenerate it with
// go test ./dashboards/kibana -run TestDashboardsDoc -update.

const (
	docBegin = "<!-- panels:begin (generated from dashboards/kibana/spec.go) -->"
	docEnd   = "<!-- panels:end -->"
)

var visNames = map[string]string{
	"lnsXY": "XY chart", "lnsDatatable": "table", "lnsPie": "donut", "lnsHeatmap": "heatmap", "lnsMetric": "metric",
}

func describeMetric(c Column) string {
	var s string
	switch c.Op {
	case opCount:
		s = "count of documents"
	case opSum:
		s = "sum of `" + c.Field + "`"
	case opMax:
		s = "max of `" + c.Field + "`"
	case opAverage:
		s = "average of `" + c.Field + "`"
	case opUniqueCount:
		s = "distinct values of `" + c.Field + "`"
	case opPercentile:
		s = fmt.Sprintf("%dth percentile of `%s`", c.Percentile, c.Field)
	case opFormula:
		s = fmt.Sprintf("formula `sum(%s) * %d`", c.Field, c.Multiplier)
	}
	if c.TimeScale != "" {
		s += ", per second"
	}
	return s
}

func describeRank(c Column, byID map[string]Column) string {
	if m := customRank.FindStringSubmatch(c.OrderBy); m != nil {
		if m[1] == opCount {
			return "document count"
		}
		return "sum of `" + m[2] + "`"
	}
	if o, ok := byID[c.OrderBy]; ok {
		return describeMetric(o)
	}
	return "value"
}

func describeBucket(c Column, byID map[string]Column) string {
	switch c.Op {
	case opDateHistogram:
		return "date histogram on `" + c.Field + "` (automatic interval)"
	case opTerms:
		fields := "`" + strings.Join(append([]string{c.Field}, c.Secondary...), "` × `") + "`"
		agg := "terms"
		if len(c.Secondary) > 0 {
			agg = "multi_terms"
		}
		return fmt.Sprintf("top %d of %s (%s, ranked by %s)", c.Size, fields, agg, describeRank(c, byID))
	case opFilters:
		var fs []string
		for _, f := range c.Filters {
			fs = append(fs, fmt.Sprintf("%s = `%s`", f.Label, f.KQL))
		}
		return "filters: " + strings.Join(fs, "; ")
	}
	return c.Op
}

// DescribeDashboards renders the generated part of docs/dashboards.md.
func describeDashboards(ds []Dashboard) string {
	var b strings.Builder
	b.WriteString(docBegin + "\n")
	for _, d := range ds {
		fmt.Fprintf(&b, "\n### %s\n\n%s Saved object id `%s`.\n\n", d.Title, d.Description, DashboardID(d.Slug))
		b.WriteString("| panel | shows | documents | buckets (outer first) | metrics |\n| --- | --- | --- | --- | --- |\n")
		for _, p := range d.Panels {
			byID := map[string]Column{}
			for _, c := range p.Columns {
				byID[c.ID] = c
			}
			var buckets, metrics []string
			for _, c := range p.Columns {
				if c.Op == opDateHistogram || c.Op == opTerms || c.Op == opFilters {
					buckets = append(buckets, describeBucket(c, byID))
				} else {
					metrics = append(metrics, c.Label+": "+describeMetric(c))
				}
			}
			docs := "all"
			if p.KQL != "" {
				docs = "`" + p.KQL + "`"
			}
			if len(buckets) == 0 {
				buckets = []string{"none"}
			}
			fmt.Fprintf(&b, "| **%s** (%s) | %s | %s | %s | %s |\n", p.Title, visNames[p.Vis], p.Description, docs,
				strings.Join(buckets, ", then "), strings.Join(metrics, "; "))
		}
	}
	b.WriteString("\n" + docEnd)
	return b.String()
}

func TestDashboardsDoc(t *testing.T) {
	path := filepath.Join(testutil.ModuleRoot(), "docs", "dashboards.md")
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	i, j := strings.Index(s, docBegin), strings.Index(s, docEnd)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the generated panel section markers", path)
	}
	want := s[:i] + describeDashboards(Dashboards()) + s[j+len(docEnd):]
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if want != s {
		t.Errorf("%s is not what spec.go describes: run go test ./dashboards/kibana -run TestDashboardsDoc -update", path)
	}
}
